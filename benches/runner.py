"""Run one process to completion (or a deadline) and measure it the way the kernel sees it.

Wall time runs from just before the spawn to the moment the process is reaped, so interpreter
start-up and imports count: that is what a user of each tool waits for. Peak RSS comes from
``wait4``'s rusage (``ru_maxrss``, KiB on Linux) of that very process, not from sampling, so a
short spike cannot be missed.
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

__all__ = ["Finished", "run_timed", "stop_pid"]


@dataclass(frozen=True)
class Finished:
    """How one process ended."""

    command: tuple[str, ...]
    returncode: int | None
    """Exit code (negative: killed by that signal); ``None`` when we killed it at the deadline."""
    seconds: float
    peak_rss_kib: int
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
    with log_path.open("wb") as log:
        started = time.perf_counter()
        # A session of its own, so a stalled sender is killed with any helper it spawned.
        proc = subprocess.Popen(
            list(command),
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
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    # Reaped here, not by Popen: record the code so Popen never waits for the PID again.
    proc.returncode = os.waitstatus_to_exitcode(status)
    return Finished(
        command=tuple(command),
        returncode=proc.returncode if exited else None,
        seconds=seconds,
        peak_rss_kib=usage.ru_maxrss,
        log_path=log_path,
    )


def stop_pid(proc: subprocess.Popen[bytes], *, grace: float = 10.0) -> None:
    """Stop a server we started: SIGTERM by PID, SIGKILL if it is still there after ``grace``."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=grace)
