"""Study completion: a study is complete when no file of it arrived for ``stable`` seconds.

The router tells :class:`Studies` of each file it routes (``arrived``) and of each file it
finds waiting at start-up, so after a restart a study whose files wait completes ``stable``
seconds after the router started unless more of it arrive. One timer thread waits on a
condition for the earliest deadline: every study has the same ``stable`` time, so the study
heard of longest ago is always the next to complete, and the open studies are kept in that
order (a dict, each arrival moving its study to the end). The hooks run in the timer thread,
outside the lock, so they may ask ``complete`` or take locks that do: ``on_complete(study)``
while the study still counts as open (its journal line comes before any of its files is
forwarded by a destination that waits for whole studies), then ``on_ready()`` once it counts as
complete (to wake those destinations).

A study that gets files after it completed opens again and completes again, counting the files
since. What completion starts (the journal line, the hook, the destinations forwarding whole
studies) is the router's business.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ..dataset.header import BufferSource, Unreadable, inflated_head, read_top_uids
from ..uids import EXPLICIT_VR_BE, IMPLICIT_VR_LE

log = logging.getLogger(__name__)

_STUDY_UID = 0x0020_000D
_SERIES_UID = 0x0020_000E
_WANTED = {
    _STUDY_UID: "Study Instance UID (0020,000D)",
    _SERIES_UID: "Series Instance UID (0020,000E)",
}


@dataclass(frozen=True)
class Study:
    """A study that completed: what ``on_study_complete`` gets."""

    study_instance_uid: str
    """Its Study Instance UID (after a restart, as its spool folder names it)."""
    series: int
    """The series its files belong to (those whose Series Instance UID was read)."""
    instances: int
    """Its files received since it opened (or found waiting at start-up)."""
    calling_aes: tuple[str, ...]
    """The AE titles that sent them, in the order first seen."""
    first: float
    """When its first file arrived (seconds since the epoch)."""
    last: float
    """When its last file arrived."""
    key: str = ""
    """Its spool folder name (``Entry.study``)."""


@dataclass(eq=False)
class _Open:
    key: str
    uid: str
    first: float
    last: float = 0.0
    deadline: float = 0.0
    instances: int = 0
    series: set[str] = field(default_factory=set)
    calling_aes: dict[str, None] = field(default_factory=dict)

    def study(self) -> Study:
        return Study(
            self.uid,
            len(self.series),
            self.instances,
            tuple(self.calling_aes),
            self.first,
            self.last,
            self.key,
        )


class Studies:
    """The open studies of a router; ``on_complete(study)`` is called once each completes, then
    ``on_ready()``. Thread-safe."""

    def __init__(
        self,
        stable: float,
        on_complete: Callable[[Study], None],
        on_ready: Callable[[], None],
    ) -> None:
        if not stable > 0:
            raise ValueError("study_stable must be more than 0 seconds")
        self.stable = stable
        self._on_complete = on_complete
        self._on_ready = on_ready
        self._cond = threading.Condition()
        self._open: dict[str, _Open] = {}
        self._completing: set[str] = set()
        self.completed = 0
        """Studies completed so far (a study that completes again counts again)."""
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="fastpush-studies", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop the timer: open studies stay open (their files wait for the next run)."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join()

    def arrived(self, key: str, uid: str = "", series: str = "", calling_ae: str = "") -> None:
        """A file of the study whose spool folder is ``key`` (UID ``uid``, default the key)
        arrived now, in ``series`` from ``calling_ae`` (either empty when unknown)."""
        now = time.time()
        with self._cond:
            study = self._open.pop(key, None)
            if study is None:
                study = _Open(key, uid or key, now)
            study.last, study.deadline = now, time.monotonic() + self.stable
            study.instances += 1
            if series:
                study.series.add(series)
            if calling_ae:
                study.calling_aes[calling_ae] = None
            self._open[key] = study  # the latest deadline goes last
            if len(self._open) == 1:
                self._cond.notify()

    def complete(self, key: str) -> bool:
        """Whether the study whose spool folder is ``key`` is not waiting for more files."""
        with self._cond:
            return key not in self._open and key not in self._completing

    @property
    def waiting(self) -> int:
        """Studies open (waiting for their stable time)."""
        return len(self._open)

    def _run(self) -> None:
        while True:
            with self._cond:
                due = self._due()
                if due is None:
                    return
            for study in due:
                log.info(
                    "Study %s complete: %d series, %d files",
                    study.uid,
                    len(study.series),
                    study.instances,
                )
                try:
                    self._on_complete(study.study())
                except Exception:  # the next studies still complete
                    log.exception("Completing study %s failed", study.uid)
            with self._cond:
                self._completing.difference_update(study.key for study in due)
                self.completed += len(due)
            self._on_ready()

    def _due(self) -> list[_Open] | None:
        """Wait for the studies whose deadline passed and take them (None: stopping)."""
        while not self._stopping:
            if not self._open:
                self._cond.wait()
                continue
            left = next(iter(self._open.values())).deadline - time.monotonic()
            if left > 0:
                self._cond.wait(left)
                continue
            now = time.monotonic()
            due = []
            for key, study in list(self._open.items()):
                if study.deadline > now:
                    break
                due.append(self._open.pop(key))
                self._completing.add(key)
            return due
        return None


def study_and_series(head: bytes, transfer_syntax: str) -> tuple[str, str]:
    """The Study and Series Instance UIDs ('' when absent or unreadable) from the first bytes
    of a received dataset (as received: deflated ones are inflated here)."""
    try:
        found = read_top_uids(
            BufferSource(inflated_head(head, transfer_syntax)),
            0,
            _WANTED,
            implicit=transfer_syntax == IMPLICIT_VR_LE,
            little=transfer_syntax != EXPLICIT_VR_BE,
        )
    except Unreadable:  # a truncated or odd head only means "not known"
        return "", ""
    return found.get(_STUDY_UID, ""), found.get(_SERIES_UID, "")
