"""What a command shows while it runs, and how Ctrl-C ends it.

A push (``store``, ``demo``): a live progress bar on a terminal or periodic lines elsewhere,
one line per file that was not stored, the report line of each result (``report``), the
closing summary; the first Ctrl-C finishes the files in flight, the second aborts. A server
(``serve``, ``route``): a status line, rewritten in place on a terminal; the first Ctrl-C
stops accepting, the second cuts what runs.
"""

from __future__ import annotations

import logging
import re
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import FrameType, TracebackType
from typing import IO, TYPE_CHECKING, Any, Protocol

from ..send.failure import Failure
from ..send.results import Outcome, Result
from ..wire.dimse import describe
from . import report as reports
from .options import EXIT_FAILURE, EXIT_INCOMPLETE, EXIT_INTERRUPTED, EXIT_OK

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

log = logging.getLogger(__name__)

_LINE_EVERY = 10.0  # seconds between progress lines when not on a terminal
# Numbers, but for element tags like (7FE0,0010), which name the kind of failure.
_NUMBERS = re.compile(r"(\([0-9A-Fa-f]{4},[0-9A-Fa-f]{4}\))|\d+")


@dataclass
class Tally:
    """Counts of a push, for the summary and the exit code."""

    total_files: int
    total_bytes: int
    resumed: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)
    done_bytes: int = 0
    sent_bytes: int = 0
    association_failed: bool = False
    interrupted: bool = False  # by Ctrl-C
    started: float = field(default_factory=time.perf_counter)

    def add(self, result: Result) -> None:
        self.outcomes[result.outcome.value] += 1
        self.done_bytes += result.bytes
        if result.ok:
            self.sent_bytes += result.bytes
        elif result.outcome is Outcome.FAILED:
            self.failures[_failure_kind(result)] += 1
            self.association_failed |= result.failure is Failure.ASSOCIATION

    @property
    def done_files(self) -> int:
        return sum(self.outcomes.values())

    @property
    def not_ok(self) -> int:
        return self.outcomes[Outcome.FAILED.value] + self.outcomes[Outcome.SKIPPED.value]


def _failure_kind(result: Result) -> str:
    """What the summary groups a failure under: the status, or the reason with its numbers
    left out, so that files failing the same way share one line."""
    if result.status is not None:
        return describe(result.status)
    reason = result.reason.removeprefix("not sent: ")
    return _NUMBERS.sub(lambda m: m.group(1) or "N", reason)


class Reporter:
    """Consumes results: report line, progress, per-file line; a context manager."""

    def __init__(
        self, tally: Tally, report: IO[str] | None, *, quiet: bool, live: bool | None = None
    ) -> None:
        self.tally = tally
        self.report = report
        self.quiet = quiet
        live = sys.stderr.isatty() if live is None else live
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        if live and not quiet:
            # rich costs a noticeable share of a short run's start-up: only load it for a bar.
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

            self._progress = Progress(
                BarColumn(),
                TextColumn("{task.fields[files]}"),
                TextColumn("{task.fields[mb]}"),
                TextColumn("{task.fields[rate]}"),
                TimeRemainingColumn(),
                TextColumn("{task.fields[failed]}"),
                console=Console(file=sys.stderr),
                transient=True,
            )
        self._last_line = time.perf_counter()

    def __enter__(self) -> Reporter:
        if self._progress is not None:
            self._progress.start()
            fields: dict[str, Any] = self._fields()
            self._task = self._progress.add_task(
                "push", total=self.tally.total_bytes or 1, **fields
            )
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._progress is not None:
            self._progress.stop()

    def say(self, message: str) -> None:
        """A line for the user that does not tear the progress bar."""
        if self._progress is not None:
            self._progress.console.print(message, markup=False, highlight=False)
        else:
            # One write per line: a log line from another thread cannot land inside it.
            sys.stderr.write(message + "\n")
            sys.stderr.flush()

    def add(self, result: Result) -> None:
        self.tally.add(result)
        if self.report is not None:
            reports.write(self.report, result)
        if result.outcome is not Outcome.STORED and not self.quiet:
            status = f" [0x{result.status:04X}]" if result.status is not None else ""
            self.say(f"{result.outcome.value}: {result.path}{status}: {result.reason}")
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, completed=self.tally.done_bytes, **self._fields())
        elif not self.quiet and time.perf_counter() - self._last_line >= _LINE_EVERY:
            self._last_line = time.perf_counter()
            fields = self._fields()
            self.say(
                f"progress: {fields['files']}, {fields['mb']}, {fields['rate']}, {fields['failed']}"
            )

    def _fields(self) -> dict[str, Any]:
        t = self.tally
        seconds = max(time.perf_counter() - t.started, 1e-9)
        return {
            "files": f"{t.done_files}/{t.total_files} files",
            "mb": f"{t.done_bytes / 1e6:.1f}/{t.total_bytes / 1e6:.1f} MB",
            "rate": f"{t.sent_bytes / 1e6 / seconds:.1f} MB/s",
            "failed": f"{t.not_ok} not stored",
        }


def summary(tally: Tally, out: IO[str]) -> None:
    """The closing lines: what was sent, how fast, and what became of every file."""
    seconds = time.perf_counter() - tally.started
    sent = tally.outcomes[Outcome.STORED.value] + tally.outcomes[Outcome.WARNING.value]
    mb = tally.sent_bytes / 1e6
    rate = mb / seconds if seconds > 0 else 0.0
    print(f"Sent {sent} objects ({mb:.1f} MB) in {seconds:.2f} s ({rate:.1f} MB/s)", file=out)
    print(", ".join(f"{o.value}: {tally.outcomes[o.value]}" for o in Outcome), file=out)
    if tally.resumed:
        print(f"already stored (resumed): {tally.resumed}", file=out)
    for kind, count in tally.failures.most_common():
        print(f"  failed with {kind}: {count}", file=out)


# A push


class Pushing(Protocol):
    """What the CLI needs of a push, local (``Push``) or on a cluster (``DistributedPush``)."""

    total_files: int
    total_bytes: int
    resumed: int

    def __next__(self) -> Result: ...

    def __iter__(self) -> Iterator[Result]: ...

    def cancel(self, abort: bool = False) -> None: ...


def run_push(push: Pushing, report: IO[str] | None, quiet: bool) -> Tally:
    """Run a push to its end with the reporter; the first Ctrl-C finishes the files in flight
    and releases, the second aborts at once."""
    tally = Tally(push.total_files, push.total_bytes, push.resumed)
    with Reporter(tally, report, quiet=quiet) as reporter:

        def on_sigint(signum: int, frame: FrameType | None) -> None:
            abort = tally.interrupted
            tally.interrupted = True
            reporter.say(
                "Aborting the associations now."
                if abort
                else "Interrupted: finishing the files in flight, then releasing "
                "(Ctrl-C again to abort)."
            )
            # Releasing waits for the peer: not in a signal handler.
            threading.Thread(target=push.cancel, kwargs={"abort": abort}, daemon=True).start()

        previous = signal.signal(signal.SIGINT, on_sigint)
        try:
            for result in push:
                reporter.add(result)
        finally:
            signal.signal(signal.SIGINT, previous)
    return tally


def finish(tally: Tally) -> int:
    """Print the summary; return the exit code."""
    summary(tally, sys.stdout)
    if tally.interrupted:
        return EXIT_INTERRUPTED
    if tally.association_failed:
        return EXIT_FAILURE
    return EXIT_INCOMPLETE if tally.not_ok else EXIT_OK


# A server


class LiveLine:
    """A status line on stderr, ``text(seconds since start)``: rewritten in place on a
    terminal, a line every 10 s elsewhere."""

    def __init__(self, text: Callable[[float], str], quiet: bool) -> None:
        self.text = text
        self.tty = sys.stderr.isatty()
        self.interval = 0.5 if self.tty else 10.0
        self.started = time.perf_counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fastpush-live", daemon=True)
        if not quiet:
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            text = self.text(time.perf_counter() - self.started)
            sys.stderr.write(f"\r\x1b[K{text}" if self.tty else f"{text}\n")
            sys.stderr.flush()

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
            if self.tty:
                sys.stderr.write("\r\x1b[K")


def until_interrupted(
    serve: Callable[[], None], stop: Callable[[bool], None], live: LiveLine, finishing: str
) -> int:
    """Run ``serve()`` until Ctrl-C: the first calls ``stop(False)`` (``finishing`` says what
    still runs), the second ``stop(True)``. Closes ``live``; returns the exit code."""
    code = EXIT_OK
    try:
        serve()
    except KeyboardInterrupt:
        if live.tty:
            sys.stderr.write("\n")  # below the live line
        # A log record, so that --log-json keeps stderr one JSON object a line.
        log.warning("Stopping: %s (Ctrl-C again to cut them)", finishing)
        try:
            stop(False)
        except KeyboardInterrupt:
            stop(True)
            code = EXIT_INTERRUPTED
    finally:
        live.close()
    return code


def raise_descriptor_limit() -> None:
    """Raise the soft limit on open files to the hard one: a server holds a descriptor per
    connection, and a soft limit of 1024 (a common default) is reached long before memory."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == hard:
        return
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError) as exc:  # e.g. a hard limit above what the kernel allows
        log.debug("Open files limit stays %d (hard %d): %s", soft, hard, exc)
        return
    log.debug("Open files limit raised from %d to %d", soft, hard)
