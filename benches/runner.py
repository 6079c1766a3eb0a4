"""Run one process to completion (or a deadline) and measure it the way the kernel sees it.

Wall time runs from just before the spawn to the moment the process is reaped, so interpreter
start-up and imports count: that is what a user of each tool waits for. Peak RSS is the
``ru_maxrss`` (KiB on Linux) that ``wait4`` reports for the process, not a sample, so a short spike
cannot be missed.

That ``wait4`` is GNU time's, not ours: Linux folds the high-water RSS of the memory image a
process had *before* ``exec`` into its ``ru_maxrss``, and a child forked (or vforked) from this
harness starts with the harness's ~70 MB image. ``/usr/bin/time`` is a ~1 MB process, so a sender
it starts carries a floor of ~1 MB instead of the harness's size.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["TIME", "Finished", "run_timed", "stop_pid"]

TIME = "/usr/bin/time"


@dataclass(frozen=True)
class Finished:
    """How one process ended."""

    command: tuple[str, ...]
    returncode: int | None
    """Exit code (negative: killed by that signal); ``None`` when we killed it at the deadline."""
    seconds: float
    peak_rss_kib: int
    cpu_seconds: float
    """User + system CPU of the process (and the children it waited for), from ``wait4``."""
    log_path: Path

    @property
    def timed_out(self) -> bool:
        return self.returncode is None

    def output(self, tail: int = 4000) -> str:
        """The last ``tail`` characters of what the process wrote (stdout and stderr together)."""
        text = self.log_path.read_text(errors="replace")
        return text[-tail:]


def _wait_until_exit(pid: int, timeout: float) -> bool:
    """Block until ``pid`` exits or ``timeout`` passes; true if it exited.

    A pidfd becomes readable when the process exits, so this blocks in ``poll`` instead of
    sleeping in a loop; the process stays a zombie for ``wait4`` to collect its rusage.
    """
    fd = os.pidfd_open(pid)
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        return bool(poller.poll(max(0, int(timeout * 1000))))
    finally:
        os.close(fd)


def run_timed(
    command: Sequence[str],
    *,
    timeout: float,
    log_path: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Finished:
    """Run ``command``, its output in ``log_path``; kill it (its whole session) at ``timeout``."""
    rss_path = log_path.with_suffix(".maxrss")
    wrapped = [TIME, "--quiet", "--format", "%M %U %S", "--output", str(rss_path), "--", *command]
    with log_path.open("wb") as log:
        started = time.perf_counter()
        # A session of its own, so a stalled sender is killed with any helper it spawned.
        proc = subprocess.Popen(
            wrapped,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,
        )
    exited = _wait_until_exit(proc.pid, timeout)
    if not exited:
        os.killpg(proc.pid, signal.SIGKILL)
    # Our own ru_maxrss would be the harness's size (see the module docstring); time's is the one.
    _, status, _ = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    # Reaped here, not by Popen: record the code so Popen never waits for the PID again.
    proc.returncode = os.waitstatus_to_exitcode(status)
    rss, cpu = _read_time(rss_path) if exited else (0, 0.0)
    return Finished(
        command=tuple(command),
        returncode=proc.returncode if exited else None,
        seconds=seconds,
        peak_rss_kib=rss,
        cpu_seconds=cpu,
        log_path=log_path,
    )


def _read_time(path: Path) -> tuple[int, float]:
    """The KiB and the user and system seconds GNU time wrote: its last line (earlier ones note
    a non-zero exit or a signal)."""
    try:
        kib, user, system = path.read_text().splitlines()[-1].split()
        return int(kib), float(user) + float(system)
    except (OSError, IndexError, ValueError):
        return 0, 0.0


def stop_pid(proc: subprocess.Popen[bytes], *, grace: float = 10.0) -> float:
    """Stop a server we started: SIGTERM by PID, SIGKILL if it is still there after ``grace``.
    Returns the user + system CPU seconds it used in its life (0 if it was already reaped)."""
    if proc.returncode is not None:
        return 0.0
    proc.terminate()
    if not _wait_until_exit(proc.pid, grace):
        proc.kill()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_utime + usage.ru_stime
