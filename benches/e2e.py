"""End-to-end, side by side: the same data, the same sink, every sender, one run.

    python benches/e2e.py [--quick] [--files 1000] [--file-size 524288] [--big-size 1073741824]
                          [--only NAME ...] [--data DIR] [--timeout S] [--json FILE]

Pushes (a) a study of many ~0.5 MB files and (b) one large file over loopback with fastpush
(Rust engine), fastpush (Python engine), pynetdicom, DCMTK storescu and, where installed,
dicom-rs dicom-storescu, each into a fresh DCMTK ``storescp --ignore`` with Nagle off, the same
as shipped (Nagle on), and Orthanc (study only). Prints a markdown report on stdout (progress on
stderr), writes the raw numbers as JSON and PNG charts beside it (``charts.py``). Refuses a
debug build of the Rust extension: its numbers would mean nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, MRImageStorage
from report import (
    BIG,
    STUDY,
    Run,
    markdown_table,
    parallel_targets_table,
    targets_table,
    tls_targets_table,
)
from runner import TIME, run_timed
from senders import (
    DICOM_RS,
    DICOM_STORESCU,
    PARALLEL_SENDERS,
    SENDERS,
    STORESCU,
    TLS_SENDERS,
    Data,
    Sender,
    sender_env,
)
from sinks import OPENSSL, ORTHANC, PARALLEL_SINKS, SINKS, STORESCP, TLS_SINK, Sink, start_sink

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
HOST = "127.0.0.1"

# Which sinks each dataset goes into. The big file also goes into the as-shipped storescp: a
# single large message barely meets Nagle, and it shows that the RSS and speed hold there too.
# storescp-implicit accepts Implicit VR LE only: every sender converts Explicit -> Implicit.
SINKS_FOR = {
    STUDY: SINKS,
    BIG: ("storescp-nodelay", "storescp-shipped", "storescp-implicit"),
}


@dataclass(frozen=True)
class Suite:
    """Which senders push which datasets into which sinks."""

    senders: dict[str, Sender]
    sinks_for: dict[str, tuple[str, ...]]

    @property
    def sinks(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(s for sinks in self.sinks_for.values() for s in sinks))


SUITES = {
    # Issue 2: the four senders, one association each; and dicom-rs's where it is installed.
    "basic": Suite(
        {**SENDERS, **({DICOM_RS.name: DICOM_RS} if DICOM_STORESCU.exists() else {})}, SINKS_FOR
    ),
    # Issue 3: the study with 1, 2, 4 and 8 associations into sinks that serve them in parallel.
    "parallel": Suite(PARALLEL_SENDERS, {STUDY: PARALLEL_SINKS}),
    # Issue 5: both datasets over DICOM TLS, fastpush beside storescu.
    "tls": Suite(TLS_SENDERS, {STUDY: (TLS_SINK,), BIG: (TLS_SINK,)}),
}

_ISSUES = {"basic": "issues 2 and 4", "parallel": "issue 3", "tls": "issue 5"}

FULL = {"files": 1000, "file_size": 512 * 1024, "big_size": 1 << 30, "timeout": 300.0}
QUICK = {"files": 100, "file_size": 64 * 1024, "big_size": 64 << 20, "timeout": 60.0}


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--suite",
        choices=SUITES,
        default="basic",
        help="basic: the four senders (default); parallel: 1-8 associations; tls: over TLS",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke-test sizes: 100 files of 64 KiB, a 64 MiB big file",
    )
    parser.add_argument("--files", type=int, help="files in the study (default 1000)")
    parser.add_argument(
        "--file-size",
        type=int,
        metavar="BYTES",
        help="pixel bytes per study file (default 524288; ~1 KB of header more)",
    )
    parser.add_argument(
        "--big-size", type=int, metavar="BYTES", help="size of the big file (default 1073741824)"
    )
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="NAME[,NAME]",
        help="restrict to these senders/sinks/datasets, e.g. --only rust,storescu "
        "--only nodelay --only study (names or their last part)",
    )
    parser.add_argument(
        "--data",
        type=Path,
        metavar="DIR",
        help="generate the data here, or reuse what an earlier run left",
    )
    parser.add_argument(
        "--timeout", type=float, metavar="S", help="per run (default 300; 60 with --quick)"
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        metavar="N",
        help="runs per cell, median reported (default 3)",
    )
    parser.add_argument(
        "--repeat-budget",
        type=float,
        default=20.0,
        metavar="S",
        help="no further repetition once a cell has taken S seconds (default 20)",
    )
    parser.add_argument(
        "--json",
        type=Path,
        metavar="FILE",
        help="raw numbers (default benches/results/e2e[-quick].json)",
    )
    args = parser.parse_args(argv)
    defaults = QUICK if args.quick else FULL
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.json is None:
        suffix = ("" if args.suite == "basic" else f"-{args.suite}") + ("-quick" * args.quick)
        args.json = RESULTS / f"e2e{suffix}.json"
    return args


def _require_release_build() -> str:
    """The extension's version; exit if it is missing or a debug build."""
    try:
        from fastpush import _core
    except ImportError as exc:
        sys.exit(f"fastpush._core is not importable ({exc}): build it with scripts/bench.sh")
    if _core.BUILD_PROFILE != "release":
        sys.exit(
            f"fastpush._core is a {_core.BUILD_PROFILE} build: benchmarks need a release "
            "build (pip install -e . --no-build-isolation, or scripts/bench.sh)"
        )
    return _core.__version__


# --------------------------------------------------------------------------------------------
# selection


def _matches(token: str, name: str) -> bool:
    return token == name or token in name.split("-")


def _selected(suite: Suite, only: Sequence[str], sender: str, sink: str, dataset: str) -> bool:
    """Within each kind (senders, sinks, datasets) named in ``only``, one name must match."""
    tokens = [t for item in only for t in item.split(",") if t]
    kinds = ((suite.senders, sender), (suite.sinks, sink), ((STUDY, BIG), dataset))
    for names, value in kinds:
        mine = [t for t in tokens if any(_matches(t, n) for n in names)]
        if mine and not any(_matches(t, value) for t in mine):
            return False
    return True


def _require_tools(plan: Sequence[tuple[Data, str, Sender]]) -> None:
    """Exit with the fix if a binary some selected run needs is missing."""
    needed = {TIME: "time", STORESCU: "dcmtk", STORESCP: "dcmtk"}
    if any(sink == "orthanc" for _, sink, _ in plan):
        needed[ORTHANC] = "orthanc"
    if any(sink == TLS_SINK for _, sink, _ in plan):
        needed[OPENSSL] = "openssl"
    missing = sorted({package for path, package in needed.items() if not Path(path).exists()})
    if missing:
        sys.exit(
            f"missing {', '.join(missing)}: apt-get install -y {' '.join(missing)} "
            "(or run scripts/bench.sh)"
        )


def _check_only(suite: Suite, only: Sequence[str]) -> None:
    known = [*suite.senders, *suite.sinks, STUDY, BIG]
    for token in (t for item in only for t in item.split(",") if t):
        if not any(_matches(token, name) for name in known):
            sys.exit(f"--only {token}: matches none of {', '.join(known)}")


def _wanted(suite: Suite, only: Sequence[str], dataset: str) -> bool:
    """Whether any selected run uses ``dataset`` (so it is not generated for nothing)."""
    return any(
        _selected(suite, only, sender, sink, dataset)
        for sink in suite.sinks_for.get(dataset, ())
        for sender in suite.senders
    )


def _plan(
    suite: Suite, datasets: Sequence[Data], only: Sequence[str]
) -> list[tuple[Data, str, Sender]]:
    return [
        (data, sink, sender)
        for data in datasets
        for sink in suite.sinks_for[data.name]
        for sender in suite.senders.values()
        if _selected(suite, only, sender.name, sink, data.name)
    ]


# --------------------------------------------------------------------------------------------
# data


def _study(root: Path, files: int, file_size: int) -> Data:
    """A study of CT and MR images in Explicit VR LE; generated once, reused if complete."""
    from fastpush.synthetic import write_study

    folder = root / f"study-{files}x{file_size}"
    done = root / f"{folder.name}.complete"  # beside, not inside: senders are given the folder
    if not done.exists():
        shutil.rmtree(folder, ignore_errors=True)
        print(f"generating {files} files of {file_size} pixel bytes in {folder}", file=sys.stderr)
        write_study(
            folder,
            count=files,
            pixel_bytes=file_size,
            sop_classes=(CTImageStorage, MRImageStorage),
            transfer_syntaxes=(ExplicitVRLittleEndian,),
            seed=1,
        )
        done.touch()
    paths = sorted(p for p in folder.iterdir() if p.is_file())
    return Data(STUDY, folder, len(paths), sum(p.stat().st_size for p in paths))


def _big(root: Path, size: int) -> Data:
    from fastpush.synthetic import write_large_file

    path = root / f"big-{size}.dcm"
    done = root / f"{path.name}.complete"
    if not done.exists():
        print(f"generating a {size / 1e6:,.0f} MB file {path}", file=sys.stderr)
        write_large_file(path, size, transfer_syntax=ExplicitVRLittleEndian)
        done.touch()
    return Data(BIG, path, 1, path.stat().st_size)


def _datasets(root: Path, args: argparse.Namespace) -> list[Data]:
    """The datasets some selected run uses, generated (or found) under ``root``."""
    suite = SUITES[args.suite]
    datasets = []
    if _wanted(suite, args.only, STUDY):
        datasets.append(_study(root, args.files, args.file_size))
    if _wanted(suite, args.only, BIG):
        datasets.append(_big(root, args.big_size))
    return datasets


def _warm_page_cache(data: Data) -> None:
    """Read every file once, so the first sender does not pay for the disk and the others not."""
    paths = sorted(data.path.iterdir()) if data.is_folder else [data.path]
    for path in paths:
        with path.open("rb") as f:
            while f.read(8 << 20):
                pass


def _size_label(size: int) -> str:
    return f"{size / (1 << 30):g} GiB" if size >= 1 << 30 else f"{size / (1 << 20):g} MiB"


# --------------------------------------------------------------------------------------------
# running


def _execute(data: Data, sink_name: str, sender: Sender, workdir: Path, timeout: float) -> Run:
    """Start a fresh sink, run the sender against it, check the outcome, stop the sink."""

    def result(
        seconds: float, rss: int, status: str, reason: str | None = None, cpu: float = 0.0
    ) -> Run:
        return Run(
            sender.name,
            sink_name,
            data.name,
            data.files,
            data.bytes,
            seconds,
            rss,
            status,
            reason,
            cpu_seconds=cpu,
        )

    # Flush dirty pages first: writeback of an earlier run's files (Orthanc's storage) must not
    # compete with this run for the disk and the two cores.
    os.sync()
    try:
        sink = start_sink(sink_name, workdir)
    except RuntimeError as exc:
        return result(0.0, 0, "FAILED", f"sink did not start: {exc}")
    try:
        run = _measure(data, sink, sender, workdir, timeout, result)
    finally:
        sink_cpu = sink.stop()
    return replace(run, sink_cpu_seconds=sink_cpu)


def _measure(
    data: Data,
    sink: Sink,
    sender: Sender,
    workdir: Path,
    timeout: float,
    result: Callable[..., Run],
) -> Run:
    """Run the sender against a started sink and check the outcome."""
    sink_name = sink.name
    command = sender.command(data, HOST, sink.port, sink.aet, sink.ca)
    finished = run_timed(
        command,
        timeout=timeout,
        log_path=workdir / f"{sender.name}.log",
        env=sender_env(sender),
        cwd=workdir,
    )
    rss = finished.peak_rss_kib
    if finished.timed_out:
        tail = finished.output(600).strip().replace("\n", " | ") or "(no output)"
        return result(
            finished.seconds,
            rss,
            "TIMEOUT",
            f"killed after {timeout:.0f} s (a stall?); last output: {tail}",
        )
    reason = sender.verify(finished, data.files)
    if reason is None and sink.proc.poll() is not None:
        reason = f"the sink exited with {sink.proc.returncode} during the run"
    stored = sink.stored_count() if reason is None else None
    if stored is not None and stored != data.files:
        reason = f"the sender said all stored, but {sink_name} holds {stored} of {data.files}"
    if reason is not None:
        return result(finished.seconds, rss, "FAILED", reason)
    return result(finished.seconds, rss, "ok", cpu=finished.cpu_seconds)


def _progress(index: int, total: int, run: Run) -> None:
    what = f"[{index}/{total}] {run.sender} -> {run.sink}, {run.dataset}"
    if run.ok:
        tries = ", ".join(f"{s:.2f}" for s in run.samples)
        print(
            f"{what}: {run.seconds:.2f} s (of {tries}), {run.mb_per_s:,.1f} MB/s, "
            f"{run.files_per_s:,.1f} files/s, peak RSS {run.peak_rss_mb:,.1f} MB",
            file=sys.stderr,
        )
    else:
        print(f"{what}: {run.status}: {run.reason}", file=sys.stderr)


@contextmanager
def _data_root(data: Path | None) -> Iterator[Path]:
    if data is not None:
        data.mkdir(parents=True, exist_ok=True)
        yield data
        return
    with tempfile.TemporaryDirectory(prefix="fastpush-bench-data-") as tmp:
        yield Path(tmp)


def _repeated(
    data: Data, sink: str, sender: Sender, workdir: Path, args: argparse.Namespace
) -> Run:
    """Run one cell up to ``--repeat`` times; keep the median time and the highest peak RSS.

    Repetitions stop once the cell has used ``--repeat-budget`` seconds: the slow cells are the
    ones stalled ~40 ms per file by Nagle, steady enough that one run says it all, while a run of
    a second or two moves with the scheduler and the sink and needs a median.
    """
    tries: list[Run] = []
    while len(tries) < args.repeat and sum(t.seconds for t in tries) < args.repeat_budget:
        # A directory per try: sink logs and Orthanc's storage, removed as soon as it is done,
        # so a full run never holds more than one extra copy of the study on disk.
        try_dir = workdir / f"try-{len(tries)}"
        run = _execute(data, sink, sender, try_dir, args.timeout)
        shutil.rmtree(try_dir, ignore_errors=True)
        if not run.ok:
            return replace(run, samples=tuple(t.seconds for t in [*tries, run]))
        tries.append(run)
    median = sorted(tries, key=lambda t: t.seconds)[(len(tries) - 1) // 2]
    return replace(
        median,
        samples=tuple(t.seconds for t in tries),
        peak_rss_kib=max(t.peak_rss_kib for t in tries),
    )


def _run_all(plan: Sequence[tuple[Data, str, Sender]], args: argparse.Namespace) -> list[Run]:
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="fastpush-bench-runs-") as tmp:
        for index, (data, sink, sender) in enumerate(plan, start=1):
            run = _repeated(data, sink, sender, Path(tmp) / f"cell-{index:02d}", args)
            _progress(index, len(plan), run)
            runs.append(run)
    return runs


# --------------------------------------------------------------------------------------------
# the record


def _first_line(command: Sequence[str]) -> str:
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unknown ({exc})"
    return next((line.strip() for line in out.splitlines() if line.strip()), "unknown")


def _proc_value(path: str, key: str) -> str:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(key):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _machine(version: str, load_before: str) -> dict[str, Any]:
    import pydicom
    import pynetdicom

    commit = _first_line(["git", "-C", str(HERE.parent), "rev-parse", "--short", "HEAD"])
    return {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "host": platform.node(),
        "cpu": f"{_proc_value('/proc/cpuinfo', 'model name')} x {os.cpu_count()}",
        "memory": _proc_value("/proc/meminfo", "MemTotal"),
        "kernel": platform.release(),
        # Everything shares the cores with the sink; a busy machine shows up here first.
        "load average (1, 5, 15 min) before / after": f"{load_before} / {_load()}",
        "python": platform.python_version(),
        "fastpush": f"{version} (release build), commit {commit}",
        "dcmtk": _first_line([STORESCU, "--version"]).strip("$ "),
        "orthanc": _first_line([ORTHANC, "--version"]),
        "pynetdicom": pynetdicom.__version__,
        "pydicom": pydicom.__version__,
    }


def _markdown(
    machine: dict[str, Any], datasets: Sequence[Data], runs: Sequence[Run], args: argparse.Namespace
) -> str:
    big_label = _size_label(args.big_size)
    described = {
        STUDY: "CT and MR images, Explicit VR Little Endian",
        BIG: f"one {big_label} multi-frame image, Explicit VR Little Endian",
    }
    lines = [f"# fastpush end-to-end benchmark{' (--quick)' if args.quick else ''}", ""]
    lines += [f"- {key}: {value}" for key, value in machine.items()]
    lines += [
        f"- dataset `{d.name}`: {d.files} files, {d.bytes / 1e6:,.1f} MB, {described[d.name]}"
        for d in datasets
    ]
    parallel = args.suite == "parallel"
    if args.suite == "tls":
        lines += [
            "- sink: DCMTK `storescp +tls KEY CERT -ic --ignore -dhl` with `TCP_NODELAY=1` "
            "(storescp-tls), a fresh self-signed RSA 2048 certificate per run, which every "
            "sender verifies. Each run starts a fresh sink.",
            "- senders: `python -m fastpush store --engine rust|python --tls-ca CERT`; "
            "`/usr/bin/storescu +tla +cf CERT` (`+sd` for the study) with `TCP_NODELAY=1`.",
        ]
    elif parallel:
        lines += [
            "- sinks: DCMTK `storescp --fork --ignore -dhl` (a process per association) with "
            "`TCP_NODELAY=1` (storescp-fork-nodelay) and without it (storescp-fork-shipped, "
            "Nagle on); Orthanc. Each run starts a fresh sink.",
            "- senders: `python -m fastpush store --engine rust --associations N` for N = 1, 2, "
            "4, 8; `/usr/bin/storescu +sd` (one association) with `TCP_NODELAY=1`.",
        ]
    else:
        lines += [
            "- sinks: DCMTK `storescp --ignore -dhl` with `TCP_NODELAY=1` (storescp-nodelay) "
            "and without it (storescp-shipped, Nagle on); the same with `+xi` and "
            "`TCP_NODELAY=1` (storescp-implicit: Implicit VR LE only, so every sender converts "
            "Explicit -> Implicit on the way); Orthanc (study only). Each run starts a fresh "
            "sink.",
            "- senders: `python -m fastpush store --engine rust|python`; pynetdicom with one "
            "association and `STORE_SEND_CHUNKED_DATASET` (benches/pynetdicom_send.py); "
            "`/usr/bin/storescu` (`+sd` for the study) with `TCP_NODELAY=1`, its best mode; "
            "dicom-rs `dicom-storescu --fail-first` given every file (it takes no folder).",
        ]
    lines += [
        "- seconds: from spawn to exit of the sender process (start-up included); peak RSS: "
        "its `ru_maxrss` from `wait4`, taken by `/usr/bin/time` so the harness's own memory "
        "does not leak into it (floor ~1 MB). Each cell runs up to "
        f"{args.repeat} times (fewer once it has taken {args.repeat_budget:g} s); the median "
        "time and the highest peak RSS are shown.",
        "",
        markdown_table(runs),
        "",
        f"## Targets ({_ISSUES[args.suite]}), ratios within this run",
        "",
        parallel_targets_table(runs)
        if parallel
        else tls_targets_table(runs, big_label)
        if args.suite == "tls"
        else targets_table(runs, big_label),
    ]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    version = _require_release_build()
    load_before = _load()
    suite = SUITES[args.suite]
    _check_only(suite, args.only)
    with _data_root(args.data) as root:
        datasets = _datasets(root, args)
        plan = _plan(suite, datasets, args.only)
        _require_tools(plan)
        for data in {d.name: d for d, _, _ in plan}.values():
            _warm_page_cache(data)
        runs = _run_all(plan, args)
    machine = _machine(version, load_before)
    print(_markdown(machine, datasets, runs, args), end="")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    raw = {
        "machine": machine,
        "args": {k: str(v) for k, v in vars(args).items()},
        "runs": [run.to_json() for run in runs],
    }
    args.json.write_text(json.dumps(raw, indent=2) + "\n")
    print(f"raw numbers: {args.json}", file=sys.stderr)
    from charts import after_run, e2e_charts  # matplotlib: the bench extra

    after_run(e2e_charts, args.json)
    return 0 if all(run.ok for run in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
