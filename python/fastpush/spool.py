"""The router's durable spool: where a received file waits until every destination stored it.

Layout under the spool folder::

    incoming/<study>/<modality>.<UID>        written by the storage server (temporary name,
                                             fsync'd, renamed, folder fsync'd)
    queue/<destination>/<seq>_<study>_<name> one hard link per destination still to store it;
                                             ``.sending`` appended while it is being sent
    failed/<destination>/<entry>             refused for good by that destination, with a line
    failed/<destination>/failed.jsonl        in failed.jsonl (fsync'd before the move)
    journal.jsonl, lock

A received file is linked into each destination's queue and the queue folders are fsync'd
before the sender is answered; its ``incoming`` name is then removed. The data leave the disk
with the last link. ``seq`` numbers the files in arrival order across restarts, so a queue read
back in name order is the arrival order. Recovery after a crash (``recover``): temporary files
are removed; an ``incoming`` file with no queue link was never acknowledged and is removed (its
sender sends it again); one with links is already queued; a queue entry still named
``.sending`` may have reached its destination (``maybe_duplicate``).

Forwarding is ``forwarder``'s business, receiving the server's.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .results import Result
from .storage import fsync_folder

log = logging.getLogger(__name__)

SENDING = ".sending"
FAILED_LOG = "failed.jsonl"
_ENTRY = re.compile(r"(\d{12})_([^_/]+)_(.+?)(\.sending)?")


@dataclass(eq=False)
class Entry:
    """One file waiting in one destination's queue."""

    seq: int
    study: str
    name: str
    destination: str
    path: Path
    size: int
    inode: int
    maybe_duplicate: bool = False
    """It was being sent when the router stopped: the destination may hold it already."""

    @property
    def entry_name(self) -> str:
        return f"{self.seq:012d}_{self.study}_{self.name}"


def folder_name(text: str) -> str:
    """A destination name as a folder name: nothing that could leave the spool."""
    cleaned = re.sub(r"[^A-Za-z0-9@._-]", "_", text).strip(".")
    return cleaned or "_"


class SpoolBusy(RuntimeError):
    """Another router holds this spool."""


class Spool:
    """The spool folder. Thread-safe: associations enqueue while forwarders finish entries."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.incoming = self.directory / "incoming"
        self.queues = self.directory / "queue"
        self.failed = self.directory / "failed"
        for folder in (self.incoming, self.queues, self.failed):
            folder.mkdir(parents=True, exist_ok=True)
        self._lock_file = open(self.directory / "lock", "a")  # noqa: SIM115 - held until close
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_file.close()
            raise SpoolBusy(f"{self.directory} is used by another router") from None
        self._lock = threading.Lock()
        self._seq = 0
        # inode -> [size, queue links left]: the spool's size counts each file once.
        self._pending: dict[int, list[int]] = {}
        self._bytes = 0

    # -- sizes -------------------------------------------------------------------------------

    @property
    def bytes(self) -> int:
        """Bytes of the files some destination still has to store."""
        return self._bytes

    @property
    def files(self) -> int:
        return len(self._pending)

    def _hold(self, inode: int, size: int, links: int) -> None:
        held = self._pending.get(inode)
        if held is None:
            self._pending[inode] = [size, links]
            self._bytes += size
        else:
            held[1] += links

    def _drop(self, entry: Entry) -> None:
        with self._lock:
            held = self._pending.get(entry.inode)
            if held is None:
                return
            held[1] -= 1
            if held[1] <= 0:
                del self._pending[entry.inode]
                self._bytes -= held[0]

    # -- recovery ----------------------------------------------------------------------------

    def recover(self, destinations: list[str]) -> list[Entry]:
        """Clean up after a previous run and return the entries waiting for ``destinations``,
        in arrival order."""
        for partial in self.incoming.rglob(".*.part"):
            partial.unlink()
        for leftover in sorted(p for p in self.incoming.rglob("*") if p.is_file()):
            if leftover.stat().st_nlink == 1:
                log.warning("Removing %s: received but never acknowledged", leftover)
            leftover.unlink()
        for folder in self.incoming.iterdir():
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        for folder in sorted(self.queues.iterdir()):
            if folder.name not in destinations and any(folder.iterdir()):
                log.warning("%s holds files for a destination not configured", folder)
        entries: list[Entry] = []
        for destination in destinations:
            entries.extend(self._scan(destination))
        entries.sort(key=lambda e: e.seq)
        return entries

    def _scan(self, destination: str) -> list[Entry]:
        folder = self.queue(destination)
        entries = []
        for path in folder.iterdir():
            match = _ENTRY.fullmatch(path.name)
            if match is None:
                continue
            info = path.stat()
            entry = Entry(
                int(match[1]),
                match[2],
                match[3],
                destination,
                path,
                info.st_size,
                info.st_ino,
                maybe_duplicate=match[4] is not None,
            )
            with self._lock:
                self._hold(entry.inode, entry.size, 1)
                self._seq = max(self._seq, entry.seq)
            entries.append(entry)
        return entries

    def queue(self, destination: str) -> Path:
        folder = self.queues / destination
        if not folder.is_dir():
            folder.mkdir(parents=True, exist_ok=True)
            fsync_folder(self.queues)
        return folder

    # -- the life of an entry ----------------------------------------------------------------

    def enqueue(self, path: Path, study: str, destinations: list[str]) -> list[Entry]:
        """Queue the received file at ``path`` for each destination, durably; its incoming
        name is then removed. On an error nothing is queued and the file is removed."""
        try:
            info = path.stat()
            with self._lock:
                self._seq += 1
                seq = self._seq
            entries = [
                Entry(seq, study, path.name, d, Path(), info.st_size, info.st_ino)
                for d in destinations
            ]
            linked: list[Path] = []
            try:
                for entry in entries:
                    entry.path = self.queue(entry.destination) / entry.entry_name
                    os.link(path, entry.path)
                    linked.append(entry.path)
                for entry in entries:
                    fsync_folder(entry.path.parent)
            except OSError:
                for link in linked:
                    link.unlink()
                raise
            with self._lock:
                self._hold(info.st_ino, info.st_size, len(entries))
            return entries
        finally:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def sending(self, entry: Entry) -> None:
        """Mark the entry as being sent: after a crash it is known to be maybe at its
        destination already."""
        if entry.path.name.endswith(SENDING):
            return
        target = entry.path.with_name(entry.path.name + SENDING)
        os.rename(entry.path, target)
        entry.path = target

    def done(self, entry: Entry) -> None:
        """The destination stored it: its link goes (the file with the last one)."""
        entry.path.unlink()
        self._drop(entry)

    def fail(self, entry: Entry, result: Result) -> Path:
        """The destination refused it for good: it moves to ``failed/<destination>/`` and a
        line in that folder's ``failed.jsonl`` says why (written and fsync'd first)."""
        folder = self.failed / entry.destination
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / entry.entry_name
        line: dict[str, Any] = {
            "path": str(target),
            "sop_class_uid": result.sop_class_uid,
            "sop_instance_uid": result.sop_instance_uid,
            "status": result.status,
            "failure": None if result.failure is None else result.failure.value,
            "reason": result.reason,
            "time": time.time(),
        }
        with open(folder / FAILED_LOG, "a", encoding="utf-8") as out:
            out.write(json.dumps(line) + "\n")
            out.flush()
            os.fsync(out.fileno())
        os.rename(entry.path, target)
        fsync_folder(folder)
        self._drop(entry)
        entry.path = target
        return target

    def close(self) -> None:
        self._lock_file.close()
