"""The router suite (issues 11, 17): DCMTK storescu → a router → ``storescp``.

Routers, each a fresh process per run: ``fastpush route`` with its spool on tmpfs or on the
VM's disk (``--durability fsync``, the default, or ``os``), and as a new user starts it (no
``--associations 1``), the same written by hand with a pynetdicom AE receiving and
``fastpush.StoreClient`` forwarding, and a pynetdicom-only router (``route_baselines.py``).
Sinks: ``storescp --ignore`` and ``storescp +B`` writing to tmpfs. Data: 1,000 x 0.5 MB and one
1 GiB file.

Per run: end-to-end seconds from the moment storescu is started (its first byte) to the last
file the destination answered (the router's journal), files/s and MB/s over that; router CPU
counted one way: the process's utime+stime from ``/proc/PID/stat`` (every thread, those that
ended too) at the end minus the same when its port opened (its start-up, reported apart), per
GB; its peak RSS (``VmHWM``). "vs direct": the run's files/s over storescu straight into the
same sink, in the same invocation.

    python benches/route.py [--data DIR] [--repeat 1] [--only ROUTER] [--dataset study|big]
                            [--sink ignore|+B] [--out FILE]
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
from typing import IO

import deid
from e2e import _big, _require_release_build, _study, _warm_page_cache
from receive import TMPFS, _cpu_seconds, _peak_rss_mb, _sender_timed, _wait_port
from report import Rates
from senders import SENDERS, Data
from sinks import STORESCP, free_port

HERE = Path(__file__).resolve().parent
PYTHON = sys.executable
GB = 1e9

# The VM's disk (/dev/shm is tmpfs): where a spool meets real fsyncs.
DISK = Path("/var/tmp")

# (port, destination port, spool folder) -> (argv, journal)
Command = Callable[[int, int, Path], tuple[list[str], Path]]


@dataclass(frozen=True)
class Spooling:
    """A router's command and where its spool lives."""

    command: Command
    folder: Path = TMPFS


def _fastpush_route(*extra: str, defaults: bool = False) -> Command:
    def command(port: int, dest: int, spool: Path) -> tuple[list[str], Path]:
        argv = [PYTHON, "-m", "fastpush", "route", str(port), "--to", "127.0.0.1", str(dest)]
        argv += ["--spool", str(spool)]
        if not defaults:
            # storescp serves one association at a time: one association to it.
            argv += ["--associations", "1", "-q"]
        return argv + list(extra), spool / "journal.jsonl"

    return command


def _fastpush_route_edits(edits: str) -> Command:
    """``fastpush route --config`` with one destination carrying ``edits`` (TOML; ``{key}``
    is a key file written beside the config, in the spool folder)."""

    def command(port: int, dest: int, spool: Path) -> tuple[list[str], Path]:
        key, config = spool / "deid.key", spool / "router.toml"
        key.write_text(os.urandom(32).hex())
        config.write_text(
            f'[destinations.sink]\nhost = "127.0.0.1"\nport = {dest}\n'
            + edits.replace("{key}", str(key))
            + "\n"
        )
        argv = [PYTHON, "-m", "fastpush", "route", str(port), "--config", str(config)]
        argv += ["--spool", str(spool), "--associations", "1", "-q"]
        return argv, spool / "journal.jsonl"

    return command


# As benches/deid.py's forwarding row: ten elements set and every UID mapped.
TEN_EDITS = (
    "edits = ["
    + ", ".join(f'{{ set = "{k}", value = "{v}" }}' for k, v in deid.TEN_EDITS)
    + ', { map_uids = true, key_file = "{key}" }]'
)
DEIDENTIFY = 'deidentify = { profile = "basic", key_file = "{key}" }'


def _baseline(kind: str) -> Command:
    def command(port: int, dest: int, spool: Path) -> tuple[list[str], Path]:
        journal = spool / "journal.jsonl"
        script = str(HERE / "route_baselines.py")
        return [PYTHON, script, kind, str(port), str(dest), str(journal)], journal

    return command


DIRECT = "none (storescu -> storescp)"
OURS = "fastpush-route"
ROUTERS: dict[str, Spooling | None] = {
    DIRECT: None,
    OURS: Spooling(_fastpush_route()),
    "fastpush-route, as started by default": Spooling(_fastpush_route(defaults=True)),
    "fastpush-route, 10 edits + UID map": Spooling(_fastpush_route_edits(TEN_EDITS)),
    "fastpush-route, de-identified": Spooling(_fastpush_route_edits(DEIDENTIFY)),
    "fastpush-route, disk": Spooling(_fastpush_route(), DISK),
    "fastpush-route, disk, --durability os": Spooling(_fastpush_route("--durability", "os"), DISK),
    # Store-and-forward only: what cut-through (a large file sent on while it arrives) saves.
    "fastpush-route, --cut-through 0": Spooling(_fastpush_route("--cut-through", "0")),
    "pynetdicom+fastpush": Spooling(_baseline("fastpush")),
    "pynetdicom": Spooling(_baseline("pynetdicom")),
}
# The baselines take minutes: compared on the first sink only.
BASELINES = ("pynetdicom+fastpush", "pynetdicom")
# sink name -> storescp arguments (before the port), given its output folder
SINKS: dict[str, Callable[[Path], list[str]]] = {
    "ignore": lambda out: ["--ignore"],
    "+B": lambda out: ["+B", "+uf", "-od", str(out)],
}


@dataclass
class Run(Rates):
    dataset: str
    sink: str
    router: str
    files: int
    bytes: int
    seconds: float
    cpu: float
    startup_cpu: float
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


def _storescp(sink: str, port: int, out: Path, log: IO[bytes]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [STORESCP, *SINKS[sink](out), "-dhl", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "TCP_NODELAY": "1"},
        start_new_session=True,
    )


def _direct(data: Data, sink_name: str, workdir: Path, timeout: float) -> Run:
    """storescu straight into storescp: the ceiling of any router between them."""
    dest = free_port()
    out = Path(tempfile.mkdtemp(prefix="sink-", dir=TMPFS))
    with (workdir / "storescp.log").open("wb") as log:
        sink = _storescp(sink_name, dest, out, log)
        try:
            _wait_port(dest, sink)
            finished, _cpu, _rss = _sender_timed(SENDERS["storescu"], data, dest, workdir, timeout)
            reason = SENDERS["storescu"].verify(finished, data.files)
        finally:
            _stop(sink)
            shutil.rmtree(out, ignore_errors=True)
    status = "ok" if reason is None else f"storescu: {reason}"
    nan = float("nan")
    seconds = finished.seconds
    return Run(data.name, sink_name, DIRECT, data.files, data.bytes, seconds, nan, nan, nan, status)


def _execute(data: Data, sink_name: str, name: str, workdir: Path, timeout: float) -> Run:
    spooling = ROUTERS[name]
    if spooling is None:
        return _direct(data, sink_name, workdir, timeout)
    dest, port = free_port(), free_port()
    spool = Path(tempfile.mkdtemp(prefix="route-", dir=spooling.folder))
    out = Path(tempfile.mkdtemp(prefix="sink-", dir=TMPFS))
    logs = [(workdir / f"{n}.log").open("wb") for n in ("storescp", "router")]
    sink = _storescp(sink_name, dest, out, logs[0])
    argv, journal = spooling.command(port, dest, spool)
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
        return Run(
            data.name, sink_name, name, data.files, data.bytes, seconds, cpu, before, rss, status
        )
    finally:
        _stop(router)
        _stop(sink)
        for log in logs:
            log.close()
        shutil.rmtree(spool, ignore_errors=True)
        shutil.rmtree(out, ignore_errors=True)


def _median(runs: list[Run]) -> Run:
    ok = [r for r in runs if r.status == "ok"] or runs
    best = sorted(ok, key=lambda r: r.seconds)[len(ok) // 2]
    best.rss_mb = max(r.rss_mb for r in runs)
    best.cpu = statistics.median(r.cpu for r in ok)
    best.startup_cpu = statistics.median(r.startup_cpu for r in ok)
    return best


def _markdown(runs: list[Run]) -> str:
    rows = [
        "| dataset | sink | router | s | files/s | MB/s | vs direct | router CPU s/GB "
        "| start-up CPU s | peak RSS MB | status |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    direct = {(r.dataset, r.sink): r for r in runs if r.router == DIRECT}
    for r in runs:
        base = direct.get((r.dataset, r.sink))
        ratio = f"{base.seconds / r.seconds:.2f}x" if base is not None else "-"
        rows.append(
            f"| {r.dataset} | {r.sink} | {r.router} | {r.seconds:.2f} | {r.files_s:,.1f} "
            f"| {r.mb_s:,.0f} | {ratio} | {r.cpu_per_gb:.2f} | {r.startup_cpu:.2f} "
            f"| {r.rss_mb:.0f} | {r.status} |"
        )
    return "\n".join([*rows, "", *_targets(runs)]) + "\n"


def _targets(runs: list[Run]) -> list[str]:
    """Issue 17's targets, each with the number measured in this run."""
    rows = ["| target | measured | met |", "|---|---|---|"]
    cell = {(r.dataset, r.sink, r.router): r for r in runs}
    wanted = (
        (OURS, 0.8, "spool on tmpfs"),
        ("fastpush-route, disk", 0.6, "spool on disk, fsync"),
        ("fastpush-route, disk, --durability os", 0.8, "spool on disk, --durability os"),
    )
    for dataset, sink in sorted({(r.dataset, r.sink) for r in runs}):
        base = cell.get((dataset, sink, DIRECT))
        for router, floor, label in wanted:
            ours = cell.get((dataset, sink, router))
            if base is None or ours is None:
                continue
            ratio = base.seconds / ours.seconds
            met = "yes" if ratio >= floor else "**no**"
            rows.append(
                f"| {dataset} → {sink}, {label}: ≥ {floor}x direct | {ratio:.2f}x | {met} |"
            )
        ours = cell.get((dataset, sink, OURS))
        if ours is not None:
            met = "yes" if ours.cpu_per_gb <= 1.5 else "**no**"
            rows.append(
                f"| {dataset} → {sink}: router CPU ≤ 1.5 s/GB | {ours.cpu_per_gb:.2f} | {met} |"
            )
    for dataset in sorted({r.dataset for r in runs}):
        pair = [cell.get((dataset, sink, OURS)) for sink in SINKS]
        if all(pair):
            low, high = sorted(r.cpu_per_gb for r in pair if r is not None)
            met = "yes" if high <= 1.2 * low else "**no**"
            rows.append(
                f"| {dataset}: router CPU within 20% across sinks | {high / low - 1:.0%} | {met} |"
            )
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "fastpush-bench")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--only", action="append", default=[], metavar="ROUTER")
    parser.add_argument("--dataset", action="append", default=[], choices=["study", "big"])
    parser.add_argument("--sink", action="append", default=[], choices=list(SINKS))
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
            for sink in args.sink or list(SINKS):
                for name in ROUTERS:
                    if args.only and name not in args.only:
                        continue
                    if name in BASELINES and sink != next(iter(SINKS)):
                        continue
                    tries = []
                    for n in range(args.repeat):
                        workdir = Path(tmp) / f"{data.name}-{len(runs)}-{n}"
                        workdir.mkdir()
                        tries.append(_execute(data, sink, name, workdir, args.timeout))
                        line = f"{data.name} {sink} {name}: {tries[-1]}"
                        print(line, file=sys.stderr, flush=True)
                    runs.append(_median(tries))
    table = f"fastpush {version}, median of {args.repeat}\n\n" + _markdown(runs)
    print(table)
    if args.out is not None:
        with args.out.open("a") as out:
            out.write(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
