"""What the CLI shows and writes while a push runs: the JSON Lines report (flushed per
result, so a crash loses nothing that already happened), a live progress bar on a terminal or
periodic lines elsewhere, one line per file that was not stored, and the closing summary.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any

from ..send.failure import Failure
from ..send.push import resolved
from ..send.results import Outcome, Result
from ..wire.dimse import describe

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

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
            line = result.to_json()
            if result.path is not None:
                line["path"] = resolved(result.path)
            self.report.write(json.dumps(line) + "\n")
            self.report.flush()
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
