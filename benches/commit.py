"""Storage Commitment's cost: 1,000 x 0.5 MB pushed with ``store --commit`` into ``fastpush
serve`` against the same push without, alternating, in one run (issue 20's target: <= 1.1x the
time). Writes benches/results/commit.md.

    python benches/commit.py [--files 1000] [--pairs 3]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fastpush.synthetic import write_study

RESULTS = Path(__file__).parent / "results" / "commit.md"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_port(port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {port}")


def _cpu(pid: int) -> float:
    """CPU seconds (user + system) process ``pid`` has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _push(data: Path, port: int, commit: bool, server: int) -> tuple[float, float, float]:
    """Wall seconds, the sender's and the server's CPU seconds of one store run."""
    command = [sys.executable, "-m", "fastpush", "store", "-q", "127.0.0.1", str(port), str(data)]
    if commit:
        command += ["--commit", "--commit-timeout", "120"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    server_before = _cpu(server)
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"store exited {done.returncode}: {done.stdout}{done.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return seconds, cpu, _cpu(server) - server_before


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--pairs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fastpush-commit-", dir="/dev/shm") as work:
        data = Path(work, "data")
        write_study(data, count=args.files, pixel_bytes=512 * 1024)
        gigabytes = sum(p.stat().st_size for p in data.iterdir()) / 1e9
        port = _free_port()
        out = Path(work, "out")
        serve = subprocess.Popen(
            [sys.executable, "-m", "fastpush", "serve", str(port), "-od", str(out), "-q"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            _wait_port(port)
            _push(data, port, False, serve.pid)  # warm the page cache and the server
            plain: list[tuple[float, float, float]] = []
            committed: list[tuple[float, float, float]] = []
            for _ in range(args.pairs):
                plain.append(_push(data, port, False, serve.pid))
                committed.append(_push(data, port, True, serve.pid))
        finally:
            serve.terminate()
            serve.wait(10)
            shutil.rmtree(out, ignore_errors=True)
    ratios = [c[0] / p[0] for p, c in zip(plain, committed, strict=True)]
    median = statistics.median(ratios)
    total = sum(c[0] for c in committed) / sum(p[0] for p in plain)
    lines = [
        "# Storage Commitment: store --commit into fastpush serve (issue 20)",
        "",
        f"{args.files} x 0.5 MB ({gigabytes:.2f} GB) from /dev/shm, one association, into "
        "`fastpush serve -od` on tmpfs, on the 2-core VM; plain and --commit alternating, "
        f"{args.pairs} pairs after a warm-up run. Target: --commit <= 1.1x the time without.",
        "",
        "| pair | without s | with --commit s | ratio | sender CPU s/GB without | with "
        "| server CPU s/GB without | with |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for index, (p, c) in enumerate(zip(plain, committed, strict=True), 1):
        lines.append(
            f"| {index} | {p[0]:.2f} | {c[0]:.2f} | {c[0] / p[0]:.3f} | "
            f"{p[1] / gigabytes:.2f} | {c[1] / gigabytes:.2f} | "
            f"{p[2] / gigabytes:.2f} | {c[2] / gigabytes:.2f} |"
        )
    verdict = "meets" if median <= 1.1 else "misses"
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    lines += [
        "",
        f"Median ratio {median:.3f}x: {verdict} the 1.1x target (load average at the end: {load}); "
        f"all runs together {total:.3f}x.",
        "",
    ]
    RESULTS.write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
