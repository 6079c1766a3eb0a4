"""What happened to each file in the router: ``RouteEvent`` and the JSONL journal of them.

The journal is for people and tools following a file through the router; durability rests on
the spool's folders, not on it. Each line is written whole with one ``write`` (a killed router
leaves complete lines). A write the disk refuses (full, failing) is never its caller's error: a
forwarded file stays forwarded whatever its journal line does. The line waits in memory, in
order, and goes out before the next one once the disk takes writes again.

A journal over ``max_bytes`` is rotated before the line that would pass it, between two whole
writes under the journal's lock: ``journal.jsonl`` becomes ``journal.jsonl.1``, ``.1`` becomes
``.2``... and the oldest past ``keep`` goes, so every file holds whole lines only.
"""

from __future__ import annotations

import contextlib
import enum
import json
import logging
import math
import os
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from json.encoder import encode_basestring_ascii as _text
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
# One encoder for every line: json.dumps with separators builds a new one per call.
_ENCODE = json.JSONEncoder(separators=(",", ":")).encode

MAX_PENDING = 100_000
"""Lines kept in memory while the journal cannot be written (~30 MB at most)."""
MAX_BYTES = 100 * 10**6
"""The size past which the journal is rotated, by default (~300,000 lines)."""
KEEP = 5
"""Rotated journals kept (``journal.jsonl.1`` the newest)."""


class Step(str, enum.Enum):
    """What happened to a file in the router: the ``step`` of a ``RouteEvent``."""

    RECEIVED = "received"
    """Spooled and queued for ``destination`` (one event per destination)."""
    DROPPED = "dropped"
    """``on_receive`` or the rules chose no destination: removed."""
    REFUSED = "refused"
    """Answered 0xA700 without being received: the spool is over its limit."""
    FORWARDED = "forwarded"
    COMMITTED = "committed"
    """``destination`` committed to keeping it (a destination with ``commit``): it leaves the
    spool."""
    RETRYING = "retrying"
    """A transient failure: it stays queued and goes again after a delay."""
    FAILED = "failed"
    """Refused for good by ``destination``: moved to ``failed/<destination>/``."""
    RECOVERED = "recovered"
    """Found in a queue at start-up, left by an earlier run."""
    # Operations (issue 19): changes someone asked for, ``by`` says who (an address).
    HELD = "held"
    """``destination`` is held: files keep spooling for it, nothing is sent."""
    RELEASED = "released"
    """``destination`` forwards again."""
    REQUEUED = "requeued"
    """A failed file moved back into ``destination``'s queue, to be tried again."""
    REMOVED = "removed"
    """A queued or failed file removed from ``destination``'s folders, never to be sent."""
    STUDY_COMPLETE = "study_complete"
    """No file of the study arrived for the router's ``study_stable`` seconds
    (``sop_instance_uid``: the Study Instance UID; ``series``, ``instances``: its counts;
    ``calling_ae``: who sent it, comma-separated when several did)."""

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class RouteEvent:
    """One step of one file's way through the router."""

    step: Step
    """What happened."""
    sop_instance_uid: str
    """The file's SOP Instance UID."""
    destination: str | None = None
    """The destination's name, for a step that concerns one."""
    path: str | None = None
    """The file's path in the spool (queued or failed), when it has one."""
    sop_class_uid: str | None = None
    """The file's SOP Class UID, when known."""
    calling_ae: str | None = None
    """The AE title of the sender it came from, when known."""
    status: int | None = None
    """The DIMSE status answered: by the destination (forwarded, failed) or by the router
    (refused)."""
    reason: str = ""
    """Why, in words, for a step that is not a success."""
    bytes: int = 0
    """The file's size in bytes."""
    maybe_duplicate: bool = False
    """The destination may hold it already (a response was lost, or an earlier run sent it)."""
    time: float = field(default_factory=time.time)
    """When it happened (seconds since the epoch)."""
    by: str = ""
    """Who asked for an operation (``held``, ``requeued``...): their address; else empty."""
    rule: str = ""
    """The routing rule that sent a file to ``destination`` or dropped it (its name, else
    ``rules[N]``; ``unmatched`` for the policy of files no rule matched); empty without
    rules."""
    series: int = 0
    """``study_complete``: the study's series (0 in other steps)."""
    instances: int = 0
    """``study_complete``: the study's files received since it was last complete."""
    edits: str = ""
    """``forwarded``: the edits and de-identification the copy sent carried (``set
    InstitutionName, mapuids, deidentify basic``); empty for a destination without them."""

    def to_json(self) -> dict[str, Any]:
        data = dict(vars(self))  # flat fields: asdict()'s deep copy costs per file
        data["step"] = self.step.value
        if not self.by:
            del data["by"]  # only operations carry it
        if not self.rule:
            del data["rule"]  # only routing by rules does
        if not self.edits:
            del data["edits"]  # only destinations with edits do
        if not self.instances:
            del data["series"], data["instances"]  # only study_complete does
        return data


def _line(event: RouteEvent) -> bytes:
    """The journal's line for ``event``: its ``to_json`` as compact JSON, and a newline. Built
    field by field, without the dict: the router writes two lines for every file."""
    e = event
    text = (
        f'{{"step":{_text(e.step.value)},"sop_instance_uid":{_json(e.sop_instance_uid)},'
        f'"destination":{_json(e.destination)},"path":{_json(e.path)},'
        f'"sop_class_uid":{_json(e.sop_class_uid)},"calling_ae":{_json(e.calling_ae)},'
        f'"status":{_json(e.status)},"reason":{_json(e.reason)},"bytes":{_json(e.bytes)},'
        f'"maybe_duplicate":{_json(e.maybe_duplicate)},"time":{_json(e.time)}'
    )
    if e.by:
        text += f',"by":{_json(e.by)}'
    if e.rule:
        text += f',"rule":{_json(e.rule)}'
    if e.instances:
        text += f',"series":{_json(e.series)},"instances":{_json(e.instances)}'
    if e.edits:
        text += f',"edits":{_json(e.edits)}'
    return (text + "}\n").encode()


def _json(value: object) -> str:
    """``value`` as the journal's encoder writes it; the types of an event's fields without
    its dispatch, anything else through it."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return str(_text(value))
    if isinstance(value, int):
        return int.__repr__(value)
    if isinstance(value, float) and math.isfinite(value):
        return float.__repr__(value)
    return _ENCODE(value)


class Journal:
    """Appends events to a JSONL file; thread-safe.

    ``write`` never raises: a line the disk refuses is kept (up to ``max_pending`` lines, then
    newer ones are dropped and counted in ``lost``) and written before the next line, or at
    ``close``. A refused write is logged once until the journal is written again; ``failures``
    counts them. A partial line left by a short write is cut off, so the file holds whole lines.
    Past ``max_bytes`` (None: never) it is rotated, ``keep`` rotated files kept.
    """

    def __init__(
        self,
        path: Path,
        *,
        max_pending: int = MAX_PENDING,
        max_bytes: int | None = MAX_BYTES,
        keep: int = KEEP,
    ) -> None:
        if max_bytes is not None and max_bytes <= 0:
            raise ValueError("max_bytes must be more than 0")
        if keep < 1:
            raise ValueError("keep must be at least 1")
        self.path = path
        self.max_pending = max_pending
        self.max_bytes = max_bytes
        self.keep = keep
        self.failures = 0
        self.lost = 0
        self._lock = threading.Lock()
        self._pending: deque[bytes] = deque()
        self._failing = False
        self._fd = self._open()
        self._size = os.fstat(self._fd).st_size

    def _open(self) -> int:
        return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)

    @property
    def pending(self) -> int:
        """Lines waiting in memory for the disk."""
        return len(self._pending)

    def write(self, event: RouteEvent) -> None:
        line = _line(event)
        with self._lock:
            if self._fd < 0:
                return
            if len(self._pending) >= self.max_pending:
                self.lost += 1
                return
            self._pending.append(line)
            self._flush()

    def flush(self) -> bool:
        """Try to write the lines waiting; whether none is left."""
        with self._lock:
            return self._fd < 0 or self._flush()

    def _flush(self) -> bool:
        while self._pending:
            line = self._pending[0]
            if (
                self.max_bytes is not None
                and self._size
                and self._size + len(line) > self.max_bytes
            ):
                self._rotate()
            try:
                written = os.write(self._fd, line)
                if written < len(line):
                    # O_APPEND: the fragment is the file's last bytes; the retry rewrites it.
                    os.ftruncate(self._fd, os.fstat(self._fd).st_size - written)
                    raise OSError(f"short write ({written} of {len(line)} bytes)")
            except OSError as exc:
                self.failures += 1
                if not self._failing:
                    self._failing = True
                    log.error(
                        "Cannot write the journal %s: %s; its lines wait in memory (%d now)",
                        self.path,
                        exc,
                        len(self._pending),
                    )
                return False
            self._size += written
            self._pending.popleft()
        if self._failing:
            self._failing = False
            log.warning(
                "Journal %s written again (%d writes had failed, %d lines lost)",
                self.path,
                self.failures,
                self.lost,
            )
        return True

    def _rotate(self) -> None:
        """Shift the rotated files by one and start a new journal (the lock held). A rename
        the disk refuses leaves the lines going on into the current file, rotated again only
        after another ``max_bytes``."""
        try:
            for n in range(self.keep - 1, 0, -1):
                older = self.path.with_name(f"{self.path.name}.{n}")
                if older.exists():
                    os.replace(older, self.path.with_name(f"{self.path.name}.{n + 1}"))
            os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
            fd = self._open()
        except OSError as exc:
            log.error("Cannot rotate the journal %s: %s; it goes on growing", self.path, exc)
            self._size = 0
            return
        os.close(self._fd)
        self._fd, self._size = fd, 0

    def close(self) -> None:
        with self._lock:
            if self._fd < 0:
                return
            self._flush()
            if self._pending or self.lost:
                log.error(
                    "Journal %s closed with %d lines never written",
                    self.path,
                    len(self._pending) + self.lost,
                )
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = -1
