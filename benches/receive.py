"""The receive suite (issue 10): two senders into several receivers, CPU of both sides.

Senders: DCMTK ``storescu`` (``TCP_NODELAY=1``) and fastpush (Rust engine). Receivers, each a
fresh process on a free loopback port per run: ``fastpush serve --ignore``, ``storescp --ignore``
(``TCP_NODELAY=1``), a pynetdicom SCP whose handler drops the dataset; then the same writing
files to a tmpfs folder (``fastpush serve -od``, ``storescp +B -od``, pynetdicom writing
``event.encoded_dataset()``); and raw loopback TCP (``sendfile`` into a 4 MiB ``recv_into``)
for the physical limit. dicom-rs (``$CARGO_HOME/bin``, see ``ensure_dicom_rs`` in scripts/lib.sh):
``dicom-storescp`` receives from both senders into the tmpfs folder, and ``dicom-storescu`` sends
into ``fastpush serve --ignore``, ``storescp --ignore`` and ``dicom-storescp``; its rows are
left out when the binaries are missing.

Per run: wall time of the sender (spawn to reap), MB/s and files/s, the sender's user+sys CPU
and peak RSS (``/usr/bin/time``), the receiver's user+sys CPU over the sender's lifetime
(``/proc/PID/stat``, every thread) and its peak RSS (``VmHWM``), both CPUs per GB received.

    python benches/receive.py [--quick] [--repeat 3] [--only fastpush-ignore] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from e2e import _big, _require_release_build, _study, _warm_page_cache
from report import Rates
from runner import Finished, run_timed
from senders import (
    CARGO_BIN,
    DICOM_RS,
    DICOM_STORESCU,
    SENDERS,
    Data,
    Sender,
    exit_status,
    sender_env,
)
from sinks import STORESCP, free_port

HERE = Path(__file__).resolve().parent
TICKS = os.sysconf("SC_CLK_TCK")
GB = 1e9
TMPFS = Path("/dev/shm")
PYTHON = sys.executable
DICOM_STORESCP = CARGO_BIN / "dicom-storescp"

Command = Callable[[int, Path], list[str]]


@dataclass(frozen=True)
class Receiver:
    name: str
    command: Command
    env: dict[str, str]
    writes: bool = False


def _serve(*extra: str) -> Command:
    return lambda port, out: [PYTHON, "-m", "fastpush", "serve", str(port), "-q", *extra]


RECEIVERS = {
    r.name: r
    for r in (
        Receiver("fastpush-ignore", _serve("--ignore"), {}),
        Receiver(
            "storescp-ignore",
            lambda port, out: [STORESCP, "--ignore", "-dhl", str(port)],
            {"TCP_NODELAY": "1"},
        ),
        Receiver(
            "pynetdicom-ignore",
            lambda port, out: [PYTHON, str(HERE / "pynetdicom_scp.py"), str(port)],
            {},
        ),
        Receiver(
            "dicom-rs-files",
            lambda port, out: [
                str(DICOM_STORESCP),
                "-p",
                str(port),
                "-o",
                str(out),
                "--promiscuous",
            ],
            {},
            writes=True,
        ),
        Receiver(
            "fastpush-files",
            lambda port, out: [*_serve("-od", str(out))(port, out)],
            {},
            writes=True,
        ),
        Receiver(
            "storescp-files",
            lambda port, out: [STORESCP, "+B", "-dhl", "-od", str(out), str(port)],
            {"TCP_NODELAY": "1"},
            writes=True,
        ),
        Receiver(
            "pynetdicom-files",
            lambda port, out: [
                PYTHON,
                str(HERE / "pynetdicom_scp.py"),
                str(port),
                "--od",
                str(out),
            ],
            {},
            writes=True,
        ),
        Receiver(
            "tcp", lambda port, out: [PYTHON, str(HERE / "tcp_pair.py"), "sink", str(port)], {}
        ),
    )
}


def _tcp_command(data: Data, host: str, port: int, aet: str, ca: Path | None) -> list[str]:
    return [PYTHON, str(HERE / "tcp_pair.py"), "send", str(port), str(data.path)]


TCP_SENDER = Sender("tcp-send", _tcp_command, exit_status)
DICOM_SENDERS = ("storescu", "fastpush-rust")
# Where dicom-storescu sends: the two --ignore receivers the issue compares, and dicom-rs's own.
DICOM_RS_RECEIVERS = ("fastpush-ignore", "storescp-ignore", "dicom-rs-files")


@dataclass
class Run(Rates):
    dataset: str
    sender: str
    receiver: str
    files: int
    bytes: int
    seconds: float
    sender_cpu: float
    receiver_cpu: float
    sender_rss_mb: float
    receiver_rss_mb: float
    status: str
    reason: str | None = None
    receiver_cpu_low: float | None = None
    receiver_cpu_high: float | None = None
    """The range of ``receiver_cpu`` over the runs of a median cell."""


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime: fields 14 and 15


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _wait_port(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"receiver exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _sender_timed(
    sender: Sender, data: Data, port: int, workdir: Path, timeout: float
) -> tuple[Finished, float, float]:
    """Run the sender under /usr/bin/time: (finished, user+sys seconds, peak RSS MB)."""
    command = sender.command(data, "127.0.0.1", port, "ANY-SCP", None)
    finished = run_timed(
        command, timeout=timeout, log_path=workdir / "sender.log", env=sender_env(sender)
    )
    return finished, finished.cpu_seconds, finished.peak_rss_kib / 1024


def _stored(out: Path) -> int:
    return sum(1 for p in out.rglob("*") if p.is_file() and not p.name.startswith("."))


def _execute(data: Data, sender: Sender, receiver: Receiver, workdir: Path, timeout: float) -> Run:
    port = free_port()
    out = Path(tempfile.mkdtemp(prefix="recv-", dir=TMPFS))
    env = {**{k: v for k, v in os.environ.items() if k != "TCP_NODELAY"}, **receiver.env}
    log = (workdir / f"{receiver.name}.log").open("wb")
    proc = subprocess.Popen(
        receiver.command(port, out),
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=out,
        start_new_session=True,
    )
    try:
        _wait_port(port, proc)
        before = _cpu_seconds(proc.pid)
        finished, sender_cpu, sender_rss = _sender_timed(sender, data, port, workdir, timeout)
        receiver_cpu = _cpu_seconds(proc.pid) - before
        receiver_rss = _peak_rss_mb(proc.pid)
        reason = sender.verify(finished, data.files)
        if reason is None and receiver.writes and _stored(out) != data.files:
            reason = f"{_stored(out)} files written of {data.files}"
        status = "timeout" if finished.timed_out else ("ok" if reason is None else "failed")
        return Run(
            data.name,
            sender.name,
            receiver.name,
            data.files,
            data.bytes,
            finished.seconds,
            sender_cpu,
            receiver_cpu,
            sender_rss,
            receiver_rss,
            status,
            reason,
        )
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
        shutil.rmtree(out, ignore_errors=True)


def _plan(datasets: Sequence[Data], only: Sequence[str]) -> list[tuple[Data, Sender, Receiver]]:
    plan = []
    for data in datasets:
        for receiver in RECEIVERS.values():
            if receiver.name == "dicom-rs-files" and not DICOM_STORESCP.exists():
                continue
            if receiver.name == "tcp":
                if not data.is_folder:
                    plan.append((data, TCP_SENDER, receiver))
                continue
            for name in DICOM_SENDERS:
                plan.append((data, SENDERS[name], receiver))
            if receiver.name in DICOM_RS_RECEIVERS and DICOM_STORESCU.exists():
                plan.append((data, DICOM_RS, receiver))
    return [
        step
        for step in plan
        if not only
        or any(token in f"{step[0].name}/{step[1].name}/{step[2].name}" for token in only)
    ]


def _median_run(runs: list[Run]) -> Run:
    ok = [r for r in runs if r.status == "ok"] or runs
    by_time = sorted(ok, key=lambda r: r.seconds)
    middle = by_time[len(by_time) // 2]
    return Run(
        **{
            **asdict(middle),
            "sender_cpu": statistics.median(r.sender_cpu for r in ok),
            "receiver_cpu": statistics.median(r.receiver_cpu for r in ok),
            "receiver_cpu_low": min(r.receiver_cpu for r in ok),
            "receiver_cpu_high": max(r.receiver_cpu for r in ok),
            "receiver_rss_mb": max(r.receiver_rss_mb for r in ok),
        }
    )


def _find(runs: list[Run], dataset: str, sender: str, receiver: str) -> Run | None:
    return next(
        (r for r in runs if (r.dataset, r.sender, r.receiver) == (dataset, sender, receiver)),
        None,
    )


def _targets(runs: list[Run], big: str, study: str) -> list[tuple[str, str, bool | None]]:
    """(target, measured, met) for each target of issue 10 this run can judge."""
    out: list[tuple[str, str, bool | None]] = []

    def ratio(
        name: str, a: Run | None, b: Run | None, value: Callable[[Run], float], goal: float
    ) -> None:
        if a is None or b is None or "ok" not in (a.status,) or b.status != "ok":
            out.append((name, "not measured", None))
            return
        r = value(a) / value(b)
        out.append((name, f"{r:.2f}x", r >= goal))

    def mbs(r: Run) -> float:
        return r.mb_s

    fp, scu = "fastpush-rust", "storescu"
    ratio(
        f"{big}: fastpush -> fastpush serve --ignore ≥ 1.7x MB/s of storescu -> storescp --ignore",
        _find(runs, big, fp, "fastpush-ignore"),
        _find(runs, big, scu, "storescp-ignore"),
        mbs,
        1.7,
    )
    ratio(
        f"{big}: fastpush -> fastpush serve --ignore ≥ 0.7x raw loopback TCP",
        _find(runs, big, fp, "fastpush-ignore"),
        _find(runs, big, "tcp-send", "tcp"),
        mbs,
        0.7,
    )
    ratio(
        f"{study}: fastpush -> fastpush serve --ignore ≥ 1.5x files/s of storescu -> "
        "storescp --ignore",
        _find(runs, study, fp, "fastpush-ignore"),
        _find(runs, study, scu, "storescp-ignore"),
        lambda r: r.files_s,
        1.5,
    )
    for dataset in (big, study):
        for sender in (scu, fp):
            ours = _find(runs, dataset, sender, "fastpush-ignore")
            theirs = _find(runs, dataset, sender, "storescp-ignore")
            if ours and theirs and ours.status == theirs.status == "ok":
                r = (ours.receiver_cpu / ours.bytes) / (theirs.receiver_cpu / theirs.bytes)
                out.append(
                    (
                        f"{dataset}, sender {sender}: receiver CPU s/GB ≤ 0.6x storescp's",
                        f"{r:.2f}x",
                        r <= 0.6,
                    )
                )
    peak = _find(runs, big, fp, "fastpush-ignore")
    if peak is not None:
        out.append(
            (
                f"{big}: fastpush serve peak RSS < 100 MB",
                f"{peak.receiver_rss_mb:.0f} MB",
                peak.receiver_rss_mb < 100,
            )
        )
    for dataset in (big, study):
        ratio(
            f"{dataset} to tmpfs: fastpush -> fastpush serve -od ≥ 1.3x MB/s of storescu -> "
            "storescp +B -od",
            _find(runs, dataset, fp, "fastpush-files"),
            _find(runs, dataset, scu, "storescp-files"),
            mbs,
            1.3,
        )
        for sink in ("ignore", "files"):
            for sender in (scu, fp):
                ratio(
                    f"{dataset}, sender {sender}: fastpush serve ({sink}) ≥ 10x MB/s of the "
                    "pynetdicom SCP",
                    _find(runs, dataset, sender, f"fastpush-{sink}"),
                    _find(runs, dataset, sender, f"pynetdicom-{sink}"),
                    mbs,
                    10,
                )
    return out


def _markdown(runs: list[Run], targets: list[tuple[str, str, bool | None]], header: str) -> str:
    lines = [
        header,
        "",
        "| dataset | sender | receiver | MB/s | files/s | sender CPU s/GB | "
        "receiver CPU s/GB (range) | receiver peak RSS MB | status |",
        "|" + "---|" * 9,
    ]
    for r in runs:
        gb = r.bytes / GB
        spread = ""
        if r.receiver_cpu_low is not None and r.receiver_cpu_high is not None:
            spread = f" ({r.receiver_cpu_low / gb:.2f}-{r.receiver_cpu_high / gb:.2f})"
        lines.append(
            f"| {r.dataset} | {r.sender} | {r.receiver} | {r.mb_s:,.0f} | {r.files_s:,.1f} | "
            f"{r.sender_cpu / gb:.2f} | {r.receiver_cpu / gb:.2f}{spread} | "
            f"{r.receiver_rss_mb:.0f} | "
            f"{r.status}{'' if r.reason is None else ': ' + r.reason} |"
        )
    lines += ["", "| target | measured | met |", "|---|---|---|"]
    for name, measured, met in targets:
        verdict = "n/a" if met is None else ("yes" if met else "**no**")
        lines.append(f"| {name} | {measured} | {verdict} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="64 MiB file, 100 files")
    parser.add_argument("--repeat", type=int, default=1, help="runs per cell (median)")
    parser.add_argument(
        "--only", action="append", default=[], help="dataset/sender/receiver substring"
    )
    parser.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "fastpush-bench")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--timeout", type=float, default=600.0)
    args = parser.parse_args(argv)
    profile = _require_release_build()
    args.data.mkdir(parents=True, exist_ok=True)
    files, file_size, big_size = (
        (100, 512_000, 64 << 20) if args.quick else (1000, 512_000, 1 << 30)
    )
    datasets = [_big(args.data, big_size), _study(args.data, files, file_size)]
    plan = _plan(datasets, args.only)
    results: dict[tuple[str, str, str], list[Run]] = {}
    with tempfile.TemporaryDirectory(prefix="fastpush-receive-") as work:
        for repeat in range(args.repeat):
            for index, (data, sender, receiver) in enumerate(plan, 1):
                _warm_page_cache(data)
                run = _execute(data, sender, receiver, Path(work), args.timeout)
                results.setdefault((data.name, sender.name, receiver.name), []).append(run)
                print(
                    f"[{repeat + 1}/{args.repeat} {index}/{len(plan)}] {data.name} "
                    f"{sender.name} -> {receiver.name}: {run.mb_s:,.0f} MB/s, "
                    f"{run.files_s:,.1f} files/s, "
                    f"CPU s/GB sender {run.sender_cpu / (run.bytes / GB):.2f} receiver "
                    f"{run.receiver_cpu / (run.bytes / GB):.2f}, RSS {run.receiver_rss_mb:.0f} MB, "
                    f"{run.status}{'' if run.reason is None else ' (' + run.reason + ')'}",
                    file=sys.stderr,
                    flush=True,
                )
    runs = [_median_run(cell) for cell in results.values()]
    targets = _targets(runs, datasets[0].name, datasets[1].name)
    header = (
        f"receive suite, {time.strftime('%Y-%m-%d %H:%M')}, build {profile}, "
        f"{args.repeat} run(s) per cell (median), big = {big_size / (1 << 20):g} MiB, "
        f"study = {files} x {file_size / 1e6:g} MB pixel data"
    )
    text = _markdown(runs, targets, header)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    suffix = "-quick" if args.quick else ""
    (args.out / f"receive{suffix}.json").write_text(
        json.dumps([asdict(r) for r in runs], indent=1) + "\n"
    )
    (args.out / f"receive{suffix}.txt").write_text(text)
    from charts import after_run, receive_charts  # matplotlib: the bench extra

    after_run(receive_charts, args.out / f"receive{suffix}.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
