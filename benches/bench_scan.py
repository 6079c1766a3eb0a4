"""Micro-benchmarks: describing 1,000 files (the scan before a push), this tree vs a baseline.

    python -m pytest benches/bench_scan.py --benchmark-only

The baseline is ``python/fastpush/scan.py`` as it was at ``FASTPUSH_SCAN_BASELINE`` (a git
revision, default the commit before the scan read the dataset's own UIDs), loaded from git into a
module of its own, so that both are timed in the same run on the same warm files:

- ``ct``: 1,000 synthetic CT files (Explicit VR Little Endian, 64 KiB of pixels) on disk;
- ``junk``: 1,000 files that are not DICOM (text, JPEG-like, zeros, random bytes), which must be
  turned away from their first bytes;
- ``memory``: the same CT files as bytes (``describe_buffer``): the parsing alone, no I/O.

Not collected by the default ``pytest`` run. On a busy machine, ``python benches/bench_scan.py``
alternates baseline and current run by run, so that both see the same load, and prints min and
median of each.
"""

from __future__ import annotations

import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from fastpush.dataset import scan
from fastpush.synthetic import write_study

BASELINE = os.environ.get("FASTPUSH_SCAN_BASELINE", "acb960a")
FILES = 1000


def _baseline() -> types.ModuleType:
    root = Path(__file__).resolve().parents[1]
    try:
        source = subprocess.run(
            ["git", "show", f"{BASELINE}:python/fastpush/scan.py"],
            cwd=root,
            capture_output=True,
            check=True,
            text=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"baseline scan.py at {BASELINE} is not available: {exc}")
    module = types.ModuleType("fastpush_scan_baseline")
    sys.modules[module.__name__] = module  # dataclasses look their module up
    exec(compile(source, f"{BASELINE}:scan.py", "exec"), module.__dict__)
    return module


SCANS: dict[str, Callable[[], types.ModuleType]] = {"current": lambda: scan, "baseline": _baseline}


def _write_ct(folder: Path) -> list[str]:
    paths = write_study(folder, count=FILES, sop_classes=["1.2.840.10008.5.1.4.1.1.2"])
    return [str(p) for p in paths]


@pytest.fixture(scope="module")
def ct_files(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    return _write_ct(tmp_path_factory.mktemp("ct"))


@pytest.fixture(scope="module")
def junk_files(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    return _write_junk(tmp_path_factory.mktemp("junk"))


def _write_junk(folder: Path) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(0)
    makers = [
        lambda: b"Just some notes, not an image.\n" * 40,
        lambda: b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + rng.randbytes(20_000),
        lambda: bytes(4096),
        lambda: rng.randbytes(65_536),
    ]
    paths = []
    for index in range(FILES):
        path = folder / f"file{index:04d}.dcm"  # the extension must not matter
        path.write_bytes(makers[index % len(makers)]())
        paths.append(str(path))
    return paths


@pytest.mark.parametrize("version", list(SCANS))
@pytest.mark.parametrize(
    ("files", "kind"), [("ct_files", "item"), ("junk_files", "Skip")], ids=["ct", "junk"]
)
def test_scan(
    benchmark: Any, version: str, files: str, kind: str, request: pytest.FixtureRequest
) -> None:
    module = SCANS[version]()
    paths: list[str] = request.getfixturevalue(files)
    benchmark.group = f"scan {FILES} {files.replace('_files', '')} files"
    results = benchmark(lambda: [module.read_file(path) for path in paths])
    assert all(_kind(result) == kind for result in results)


@pytest.mark.parametrize("version", list(SCANS))
def test_describe_in_memory(benchmark: Any, version: str, ct_files: list[str]) -> None:
    module = SCANS[version]()
    datasets = [Path(path).read_bytes() for path in ct_files]
    benchmark.group = f"describe {FILES} CT files in memory"
    items = benchmark(lambda: [module.describe_buffer(data) for data in datasets])
    assert all(_kind(item) == "item" for item in items)


def _kind(result: object) -> str:
    """The baseline's item class was Item, today's is Item."""
    return "Skip" if type(result).__name__ == "Skip" else "item"


def _interleaved(rounds: int = 40) -> None:
    modules = {"baseline": _baseline(), "current": scan}
    with tempfile.TemporaryDirectory() as tmp:
        ct, junk = _write_ct(Path(tmp, "ct")), _write_junk(Path(tmp, "junk"))
        memory = [Path(path).read_bytes() for path in ct]
        cases: dict[str, Callable[[types.ModuleType], object]] = {
            f"scan {FILES} CT files": lambda m: [m.read_file(p) for p in ct],
            f"scan {FILES} non-DICOM files": lambda m: [m.read_file(p) for p in junk],
            f"describe {FILES} CT files in memory": lambda m: [
                m.describe_buffer(x) for x in memory
            ],
        }
        times: dict[tuple[str, str], list[float]] = {}
        for _ in range(rounds):
            for case, run in cases.items():
                for version, module in modules.items():
                    start = time.perf_counter()
                    run(module)
                    times.setdefault((case, version), []).append(time.perf_counter() - start)
    for (case, version), values in times.items():
        low, mid = min(values) * 1e3, statistics.median(values) * 1e3
        print(f"{case:38} {version:9} min {low:6.2f} ms  median {mid:6.2f} ms")


if __name__ == "__main__":
    _interleaved()
