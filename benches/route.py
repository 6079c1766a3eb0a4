"""The router suite (issue 11): DCMTK storescu → a router → ``storescp --ignore``.

Routers, each a fresh process per run: ``fastpush route`` (spool on tmpfs, fsync'd), the same
written by hand with a pynetdicom AE receiving and ``fastpush.StoreClient`` forwarding, and a
pynetdicom-only router (``route_baselines.py``). Data: 1,000 x 0.5 MB and one 1 GiB file.

Per run: end-to-end seconds from the moment storescu is started (its first byte) to the last
file the destination answered (the router's journal), files/s and MB/s over that; the router's
user+sys CPU over the run (``/proc/PID/stat``, every thread, its start-up excluded) per GB; its
peak RSS (``VmHWM``).

    python benches/route.py [--data DIR] [--repeat 1] [--only ROUTER] [--dataset study|big]
                            [--out FILE]

A row with no router (storescu straight into storescp) shows the ceiling of any router.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from e2e import _big, _require_release_build, _study, _warm_page_cache
from receive import TMPFS, _cpu_seconds, _peak_rss_mb, _sender_timed, _wait_port
from report import Rates
from senders import SENDERS, Data
from sinks import STORESCP, free_port

HERE = Path(__file__).resolve().parent
PYTHON = sys.executable
GB = 1e9

# (port, destination port, spool folder) -> (argv, journal)
Command = Callable[[int, int, Path], tuple[list[str], Path]]


def _fastpush_route(port: int, dest: int, spool: Path) -> tuple[list[str], Path]:
    # storescp serves one association at a time: one association to it.
    argv = [PYTHON, "-m", "fastpush", "route", str(port), "--to", "127.0.0.1", str(dest)]
    argv += ["--spool", str(spool), "--associations", "1", "-q"]
    return argv, spool / "journal.jsonl"


def _baseline(kind: str) -> Command:
    def command(port: int, dest: int, spool: Path) -> tuple[list[str], Path]:
        journal = spool / "journal.jsonl"
        script = str(HERE / "route_baselines.py")
        return [PYTHON, script, kind, str(port), str(dest), str(journal)], journal

    return command


DIRECT = "none (storescu -> storescp)"
ROUTERS: dict[str, Command | None] = {
    DIRECT: None,
    "fastpush-route": _fastpush_route,
    "pynetdicom+fastpush": _baseline("fastpush"),
    "pynetdicom": _baseline("pynetdicom"),
}


@dataclass
class Run(Rates):
    dataset: str
    router: str
    files: int
    bytes: int
    seconds: float
    cpu: float
    rss_mb: float
    status: str

    @property
    def cpu_per_gb(self) -> float:
        return self.cpu / (self.bytes / GB)


def _forwarded(journal: Path, expected: int, timeout: float) -> tuple[float | None, str]:
    """The time of the last file forwarded once ``expected`` were (None: timed out)."""
    deadline = time.monotonic() + timeout
    while True:
        times, failed = [], 0
        if journal.exists():
            for line in journal.read_text().splitlines():
                event = json.loads(line)
                if event["step"] == "forwarded":
                    times.append(event["time"])
                failed += event["step"] == "failed"
        if len(times) + failed >= expected:
            return max(times, default=None), "ok" if not failed else f"{failed} failed"
        if time.monotonic() > deadline:
            return None, f"timeout: {len(times)} of {expected} forwarded"
        time.sleep(0.05)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _direct(data: Data, workdir: Path, timeout: float) -> Run:
    """storescu straight into storescp: the ceiling of any router between them."""
    dest = free_port()
    env = {**os.environ, "TCP_NODELAY": "1"}
    with (workdir / "storescp.log").open("wb") as log:
        sink = subprocess.Popen(
            [STORESCP, "--ignore", "-dhl", str(dest)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        try:
            _wait_port(dest, sink)
            finished, _cpu, _rss = _sender_timed(SENDERS["storescu"], data, dest, workdir, timeout)
            reason = SENDERS["storescu"].verify(finished, data.files)
        finally:
            _stop(sink)
    status = "ok" if reason is None else f"storescu: {reason}"
    nan = float("nan")
    return Run(data.name, DIRECT, data.files, data.bytes, finished.seconds, nan, nan, status)


def _execute(data: Data, name: str, workdir: Path, timeout: float) -> Run:
    if name == DIRECT:
        return _direct(data, workdir, timeout)
    dest, port = free_port(), free_port()
    spool = Path(tempfile.mkdtemp(prefix="route-", dir=TMPFS))
    env = {**os.environ, "TCP_NODELAY": "1"}
    logs = [(workdir / f"{n}.log").open("wb") for n in ("storescp", name)]
    sink = subprocess.Popen(
        [STORESCP, "--ignore", "-dhl", str(dest)],
        stdout=logs[0],
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    command = ROUTERS[name]
    assert command is not None
    argv, journal = command(port, dest, spool)
    router = subprocess.Popen(
        argv, stdout=logs[1], stderr=subprocess.STDOUT, cwd=HERE, start_new_session=True
    )
    try:
        _wait_port(dest, sink)
        _wait_port(port, router)
        before = _cpu_seconds(router.pid)
        started = time.time()
        finished, _cpu, _rss = _sender_timed(SENDERS["storescu"], data, port, workdir, timeout)
        reason = SENDERS["storescu"].verify(finished, data.files)
        last, status = _forwarded(journal, data.files, timeout)
        cpu = _cpu_seconds(router.pid) - before
        rss = _peak_rss_mb(router.pid)
        if reason is not None:
            status = f"storescu: {reason}"
        seconds = (last - started) if last is not None else float("nan")
        return Run(data.name, name, data.files, data.bytes, seconds, cpu, rss, status)
    finally:
        _stop(router)
        _stop(sink)
        for log in logs:
            log.close()
        shutil.rmtree(spool, ignore_errors=True)


def _median(runs: list[Run]) -> Run:
    ok = [r for r in runs if r.status == "ok"] or runs
    best = sorted(ok, key=lambda r: r.seconds)[len(ok) // 2]
    best.rss_mb = max(r.rss_mb for r in runs)
    best.cpu = statistics.median(r.cpu for r in ok)
    return best


def _markdown(runs: list[Run]) -> str:
    rows = [
        "| dataset | router | s | files/s | MB/s | router CPU s/GB | router peak RSS MB | status |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        rows.append(
            f"| {r.dataset} | {r.router} | {r.seconds:.2f} | {r.files_s:,.1f} | {r.mb_s:,.0f} "
            f"| {r.cpu_per_gb:.2f} | {r.rss_mb:.0f} | {r.status} |"
        )
    rows += ["", "| target | measured | met |", "|---|---|---|"]
    for dataset in sorted({r.dataset for r in runs}):
        cell = {r.router: r for r in runs if r.dataset == dataset}
        ours = cell.get("fastpush-route")
        if ours is None:
            continue
        for other, factor in (("pynetdicom+fastpush", 10), ("pynetdicom", 20)):
            if other in cell:
                ratio = cell[other].seconds / ours.seconds
                met = "yes" if ratio >= factor else "**no**"
                rows.append(
                    f"| {dataset}: ≥ {factor}x {other} (files/s, MB/s) | {ratio:.1f}x | {met} |"
                )
        if ours.files == 1:
            met = "yes" if ours.rss_mb < 150 else "**no**"
            rows.append(
                f"| {dataset}: fastpush route peak RSS < 150 MB | {ours.rss_mb:.0f} MB | {met} |"
            )
    return "\n".join(rows) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "fastpush-bench")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--only", action="append", default=[], metavar="ROUTER")
    parser.add_argument("--dataset", action="append", default=[], choices=["study", "big"])
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--out", type=Path, help="append the table to this file")
    args = parser.parse_args(argv)
    version = _require_release_build()
    args.data.mkdir(parents=True, exist_ok=True)
    datasets = [_study(args.data, 1000, 512_000), _big(args.data, 1 << 30)]
    runs = []
    with tempfile.TemporaryDirectory(prefix="fastpush-route-bench-") as tmp:
        for data in datasets:
            if args.dataset and data.name not in args.dataset:
                continue
            _warm_page_cache(data)
            for name in ROUTERS:
                if args.only and name not in args.only:
                    continue
                tries = []
                for n in range(args.repeat):
                    workdir = Path(tmp) / f"{data.name}-{len(runs)}-{n}"
                    workdir.mkdir()
                    tries.append(_execute(data, name, workdir, args.timeout))
                    print(f"{data.name} {name}: {tries[-1]}", file=sys.stderr, flush=True)
                runs.append(_median(tries))
    table = f"fastpush {version}, median of {args.repeat}\n\n" + _markdown(runs)
    print(table)
    if args.out is not None:
        with args.out.open("a") as out:
            out.write(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
