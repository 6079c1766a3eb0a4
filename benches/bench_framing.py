"""Micro-benchmarks: framing one C-STORE message into P-DATA-TF PDUs in memory, Rust vs Python.

    python -m pytest benches/bench_framing.py --benchmark-only

No socket is involved: this is the cost of building the PDU headers and copying the payload for
a 512 KiB and a 16 MiB dataset, from a bytes object and from a file region, at the default peer
maximum (16384) and with no limit (0). Not collected by the default ``pytest`` run (testpaths
stop at tests/): benchmarks are never timed tests.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydicom.uid import CTImageStorage, generate_uid

from fastpush.transport import pure as pytransport
from fastpush.wire.dimse import store_rq

try:
    from fastpush import _core
except ImportError:  # the Python engine is still measured
    _core = None  # type: ignore[assignment]

Framer = Callable[[int, bytes, Any, int], bytes]

SIZES = {"512KiB": 512 * 1024, "16MiB": 16 * 1024 * 1024}
COMMAND = store_rq(1, CTImageStorage, generate_uid(entropy_srcs=["fastpush", "bench"]))
CONTEXT_ID = 1


def _framer(engine: str) -> Framer:
    if engine == "python":
        return pytransport.frame_message
    if _core is None:
        pytest.skip("fastpush._core is not built")
    if _core.BUILD_PROFILE != "release":
        pytest.skip(f"fastpush._core is a {_core.BUILD_PROFILE} build: numbers would mislead")
    framer: Framer = _core.frame_message
    return framer


@pytest.fixture(scope="module", params=list(SIZES))
def payload(request: pytest.FixtureRequest) -> bytes:
    # Random bytes: nothing downstream may profit from compressible or zero pages.
    size: int = SIZES[request.param]
    return random.Random(size).randbytes(size)


@pytest.fixture(scope="module")
def payload_file(payload: bytes, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, int, int]:
    """The payload in a file after a 132-byte stand-in preamble: an unaligned file region."""
    path = tmp_path_factory.mktemp("framing") / f"dataset-{len(payload)}.bin"
    path.write_bytes(b"\0" * 132 + payload)
    return (str(path), 132, len(payload))


@pytest.mark.parametrize("max_pdu", [16384, 0])
@pytest.mark.parametrize("source", ["bytes", "file"])
@pytest.mark.parametrize("engine", ["rust", "python"])
def test_frame_message(
    benchmark: Any,
    engine: str,
    source: str,
    max_pdu: int,
    payload: bytes,
    payload_file: tuple[str, int, int],
) -> None:
    frame = _framer(engine)
    dataset: bytes | tuple[str, int, int] = payload if source == "bytes" else payload_file
    size = next(name for name, n in SIZES.items() if n == len(payload))
    benchmark.group = f"{size}, max_pdu {max_pdu}"
    benchmark.extra_info["MB"] = len(payload) / 1e6
    framed = benchmark(frame, CONTEXT_ID, COMMAND, dataset, max_pdu)
    # A sanity check, not a test: every payload byte made it out, plus some PDU overhead.
    assert len(COMMAND) + len(payload) < len(framed) < (len(COMMAND) + len(payload)) * 1.01


def test_engines_agree(payload: bytes) -> None:
    """Both engines frame the same bytes, so the timings above compare like with like."""
    rust = _framer("rust")
    for max_pdu in (16384, 0):
        expected = pytransport.frame_message(CONTEXT_ID, COMMAND, payload, max_pdu)
        assert rust(CONTEXT_ID, COMMAND, payload, max_pdu) == expected


def test_frame_file_region_agrees(payload_file: tuple[str, int, int]) -> None:
    rust = _framer("rust")
    path, offset, length = payload_file
    data = Path(path).read_bytes()[offset : offset + length]
    assert rust(CONTEXT_ID, COMMAND, payload_file, 0) == rust(CONTEXT_ID, COMMAND, data, 0)
