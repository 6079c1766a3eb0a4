"""The router's durable spool: where a received file waits until every destination stored it.

Layout under the spool folder::

    incoming/.<n>-<pid>.part                 written by the storage server (data fdatasync'd),
                                             then moved into the first queue; never folder
                                             fsync'd
    incoming/.free-<n>                       files sent, kept to be written over (``recycle``),
                                             then a file received into one, until queued
    queue/<destination>/<seq>_<study>_<name> one hard link per destination still to store it;
                                             ``.sending`` appended while it is being sent; in
                                             <study>, ``%`` and ``_`` are written %25 and %5F
    failed/<destination>/<entry>             refused for good by that destination, with a line
    failed/<destination>/failed.jsonl        in failed.jsonl (fsync'd before the move)
    commit/<destination>/<transaction>.json  a destination's commitments awaiting their report
                                             (``route.commit``)
    journal.jsonl, lock

A received file's data are fsync'd by the receive loop (``fdatasync``), then it is moved into
the first destination's queue under ``<modality>.<UID>`` (storage's name for it; never over
another file: ``_core.rename_new``) and linked into each other's, and the queue folders are
fsync'd (shared by the associations storing at once: ``durability.FolderSync``) before the
sender is answered; its ``incoming`` name goes with the move, never fsync'd. With
``Durability.OS`` nothing is fsync'd. The data leave the disk with the last link. ``seq``
numbers the files in arrival order across restarts, so a queue read back in name order is the
arrival order. Recovery after a crash (``recover``): temporary files
are removed wherever they are; every file in ``incoming`` or the spool folder itself (other than
the journal and the lock) goes: one with no queue link was never acknowledged (its sender sends
it again), one with links is already queued; a queue entry still named ``.sending`` may have
reached its destination (``maybe_duplicate``).

Every step after a forward leaves a state the next attempt or recovery understands: a queue link
that cannot be removed is removed later (or, after a restart, sent again as a maybe-duplicate);
a refusal's line in ``failed.jsonl`` is taken back when its file cannot be moved next to it.

Forwarding is ``forwarder``'s business, receiving the server's.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import itertools
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from ..dataset.item import Item
from ..receive.storage import UnsafeName, fsync_folder
from ..send.results import Result
from .durability import Durability, FolderSync

log = logging.getLogger(__name__)

SENDING = ".sending"
FAILED_LOG = "failed.jsonl"
JOURNAL = "journal.jsonl"
LOCK = "lock"
# Operations (issue 19): the destinations held, the running router's HTTP address; the
# journal's rotated files are journal.jsonl.1, .2...
HELD = "held.json"
HTTP_ADDRESS = "http.json"
_KEEP = (JOURNAL, LOCK, HELD, HTTP_ADDRESS)
COMMITMENTS = "commit"
_PART = ".*.part"
# Sent files kept to be written over by the next ones received (``Spool.recycle``): in
# ``incoming/``, where a received file is written under the kept name, at most this many and
# these bytes, none larger than the last bound.
_FREE = ".free-"
FREE_FILES = 16
FREE_BYTES = 32 << 20
FREE_LARGEST = 4 << 20
# The study is escaped (no "_" in it), so the name after it may hold anything.
_ENTRY = re.compile(r"(\d{12})_([^_/]*)_([^/]+?)(\.sending)?", re.DOTALL)


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
    identity: tuple[str, str, str, int] | None = None
    """(SOP Class UID, SOP Instance UID, transfer syntax, dataset length) of a file received
    by this run, checked against its dataset: sent without reading its header again."""

    def item(self) -> Item | None:
        """What the sender needs to send it, from what receiving it found (None: unknown,
        after a restart, so the file is scanned)."""
        if self.identity is None:
            return None
        sop_class, sop_instance, syntax, length = self.identity
        return Item(str(self.path), sop_class, sop_instance, syntax, self.size - length, length)

    @property
    def entry_name(self) -> str:
        study = self.study.replace("%", "%25").replace("_", "%5F")
        return f"{self.seq:012d}_{study}_{self.name}"


def _received(incoming: Path, path: Path) -> bool:
    """Whether ``path`` has the shape storage gives a received file: ``incoming/<name>`` or
    ``incoming/<folder>/<name>``. Storage made the names with ``path_component`` and checked
    the real path with ``inside`` before writing; this second look costs no system call
    (``inside`` resolves the path: ~60 us a file)."""
    folder = path.parent
    if folder != incoming and (folder.parent != incoming or folder.name in ("", "..")):
        return False
    return path.name not in ("", "..")


def _move(path: Path, target: Path) -> None:
    """Move the received file at ``path`` to its first queue name, which must not exist:
    a name taken by another file never loses it (FileExistsError), as with ``os.link``."""
    rename_new = _rename_new()
    if rename_new is not None:
        rename_new(path, target)
        return
    os.link(path, target)
    path.unlink()


@functools.cache
def _rename_new() -> Callable[[Path, Path], None] | None:
    """``_core.rename_new``, or None in an install without the Rust core."""
    try:
        from .._core import rename_new
    except ImportError:
        return None
    return rename_new


def folder_name(text: str) -> str:
    """A destination name as a folder name: nothing that could leave the spool."""
    cleaned = re.sub(r"[^A-Za-z0-9@._-]", "_", text).strip(".")
    return cleaned or "_"


class SpoolBusy(RuntimeError):
    """Another router holds this spool."""


class Spool:
    """The spool folder. Thread-safe: associations enqueue while forwarders finish entries.
    ``durability``: whether ``enqueue`` fsyncs the queue folders (see ``durability``)."""

    def __init__(self, directory: str | Path, durability: Durability = Durability.FSYNC) -> None:
        self.directory = Path(directory)
        self.durability = durability
        self._sync = FolderSync() if durability is Durability.FSYNC else None
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
        self._unlink_later: list[Path] = []
        self._free: list[tuple[Path, int]] = []  # (path, size), the most recent last
        self._free_bytes = 0
        self._free_names = itertools.count()
        self._disk_checked = -1.0
        self._disk_room = False
        self._free_floor = 4 * FREE_BYTES
        # Queue folders known to exist: a stat a file saved. Forgotten on a failed enqueue,
        # in case one was removed behind the router's back.
        self._queue_folders: set[str] = set()

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

    def _drop(self, entry: Entry) -> bool:
        """Count one queue link of ``entry``'s file gone; whether it was the file's last."""
        with self._lock:
            held = self._pending.get(entry.inode)
            if held is None:
                return False
            held[1] -= 1
            if held[1] > 0:
                return False
            del self._pending[entry.inode]
            self._bytes -= held[0]
            return True

    # -- spent files written over (issue 17) -------------------------------------------------

    def _keep_free(self, path: Path, size: int) -> bool:
        """Keep the spent file at ``path`` (its last link) to be written over, when the pool
        has room; whether it was kept. The file system is touched outside the lock: enqueue
        takes it for every file received."""
        if size > FREE_LARGEST:
            return False
        try:
            # The queues' last link is not always the file's last name: a destination that
            # refused it keeps it in failed/, which writing over would change.
            if os.lstat(path).st_nlink != 1:
                return False
        except OSError:
            return False
        with self._lock:
            if len(self._free) >= FREE_FILES or self._free_bytes + size > FREE_BYTES:
                return False
            now = time.monotonic()
            if now - self._disk_checked >= 1.0:  # a statvfs a second, not a file
                disk = os.statvfs(self.incoming)
                self._disk_room = disk.f_bavail * disk.f_frsize >= self._free_floor
                self._disk_checked = now
            if not self._disk_room:
                return False
            self._free_bytes += size  # its room, taken before the rename
            target = self.incoming / f"{_FREE}{next(self._free_names)}"
        try:
            os.rename(path, target)
        except OSError:
            with self._lock:
                self._free_bytes -= size
            return False
        with self._lock:
            self._free.append((target, size))
        return True

    @property
    def free_floor(self) -> int:
        """Spent files are kept to be written over only while the file system has this many
        bytes free besides (a small disk never holds them)."""
        return self._free_floor

    @free_floor.setter
    def free_floor(self, value: int) -> None:
        with self._lock:
            self._free_floor = value
            self._disk_checked = -1.0

    def drop_free(self) -> None:
        """Remove the spent files kept to be written over (the disk is short of space)."""
        with self._lock:
            spent, self._free = self._free, []
            self._free_bytes -= sum(size for _, size in spent)  # not a rename in flight's
            self._disk_checked = -1.0  # look at the disk again before keeping more
        for path, _ in spent:
            with contextlib.suppress(OSError):
                path.unlink()

    def recycle(self) -> Path | None:
        """A spent file for the receive loop to write over (storage's ``recycle``), now no
        longer kept; None when there is none. Writing over a file's pages costs a copy;
        allocating new ones, and freeing them once the file is sent, cost three times that
        again (tmpfs, the page cache). Its ``.free-<n>`` name is the received file's temporary
        name, removed once it is queued (and by recovery after a crash)."""
        with self._lock:
            if not self._free:
                return None
            path, size = self._free.pop()
            self._free_bytes -= size
        return path

    # -- recovery ----------------------------------------------------------------------------

    def recover(self, destinations: list[str]) -> list[Entry]:
        """Clean up after a previous run and return the entries waiting for ``destinations``,
        in arrival order."""
        for spent in self.incoming.glob(_FREE + "*"):
            spent.unlink()  # sent files an earlier run kept to write over
        for partial in self.directory.rglob(_PART):
            if partial.is_file():
                log.warning("Removing %s: left half-written by an earlier run", partial)
                partial.unlink()
        # A received file outside a queue is a name nothing will ever use again: a queued
        # file keeps its queue links, an unqueued one was never acknowledged.
        strays = [
            p
            for p in self.directory.iterdir()
            if p.name not in _KEEP and not p.name.startswith(JOURNAL + ".")
        ]
        strays += self.incoming.rglob("*")
        for leftover in sorted(strays):
            if leftover.is_dir() and not leftover.is_symlink():
                if leftover.parent == self.directory and leftover not in (
                    self.incoming,
                    self.queues,
                    self.failed,
                    self.directory / COMMITMENTS,
                ):
                    log.warning("%s is not the spool's: left alone", leftover)
                continue
            if leftover.lstat().st_nlink == 1:
                log.warning("Removing %s: received but never acknowledged", leftover)
            leftover.unlink()
        folders = sorted((p for p in self.incoming.rglob("*") if p.is_dir()), reverse=True)
        for folder in folders:  # the deepest first: a parent is empty once its children went
            if not any(folder.iterdir()):
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
            if match is None or not path.is_file():
                log.warning("%s is not a queue entry: left alone", path)
                continue
            info = path.stat()
            entry = Entry(
                int(match[1]),
                unquote(match[2]),
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
        if destination not in self._queue_folders:
            if not folder.is_dir():
                folder.mkdir(parents=True, exist_ok=True)
                fsync_folder(self.queues)
            self._queue_folders.add(destination)
        return folder

    # -- the life of an entry ----------------------------------------------------------------

    def enqueue(
        self,
        path: Path,
        study: str,
        destinations: list[str],
        identity: tuple[str, str, str, int] | None = None,
        name: str | None = None,
    ) -> list[Entry]:
        """Queue the received file at ``path`` (its data already durable) for each
        destination, durably: moved to the first queue, linked into the others. The queue
        entries carry ``name`` (storage's, from ``path_component``), else the file's own. On
        an error nothing is queued and the file is removed; a file storage could not have put
        there (``..`` in its path) is refused with ``UnsafeName`` (a ValueError). ``study``
        and the name may hold any character but ``/``. ``identity``: see ``Entry.identity``."""
        linked: list[Path] = []
        try:
            if not _received(self.incoming, path):
                raise UnsafeName(f"{path} is not a received file in {self.incoming}")
            info = path.stat()
            with self._lock:
                self._seq += 1
                seq = self._seq
            entries = [
                Entry(
                    seq,
                    study,
                    name or path.name,
                    d,
                    Path(),
                    info.st_size,
                    info.st_ino,
                    identity=identity,
                )
                for d in destinations
            ]
            try:
                for entry in entries:
                    entry.path = self.queue(entry.destination) / entry.entry_name
                    if linked:
                        os.link(linked[0], entry.path)
                    else:  # the first takes the file itself: no link and unlink of its name
                        _move(path, entry.path)
                    linked.append(entry.path)
                if self._sync is not None:
                    for entry in entries:
                        self._sync.sync(entry.path.parent)
            except OSError:
                for link in linked:
                    link.unlink()
                self._queue_folders.clear()
                if self._sync is not None:
                    self._sync.reopen()
                raise
            with self._lock:
                self._hold(info.st_ino, info.st_size, len(entries))
            return entries
        finally:
            if not linked:  # else renamed into the first queue
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()

    def sending(self, entry: Entry) -> None:
        """Mark the entry as being sent: after a crash it is known to be maybe at its
        destination already. FileNotFoundError: its link has gone."""
        if entry.path.name.endswith(SENDING):
            if not entry.path.exists():
                raise FileNotFoundError(2, "queue link gone", str(entry.path))
            return
        target = entry.path.with_name(entry.path.name + SENDING)
        os.rename(entry.path, target)
        entry.path = target

    def not_sent(self, entry: Entry) -> None:
        """Take back ``sending``: the entry was never handed to its destination (a stop came
        first), so a restart must not call it a maybe-duplicate. An error leaves the mark."""
        if not entry.path.name.endswith(SENDING):
            return
        target = entry.path.with_name(entry.path.name.removesuffix(SENDING))
        try:
            os.rename(entry.path, target)
        except OSError as exc:
            log.warning("Cannot unmark %s (not sent): %s", entry.path, exc)
            return
        entry.path = target

    def done(self, entry: Entry) -> None:
        """The destination stored it: its link goes (the file with the last one). Never
        raises: the file is at its destination whatever the disk does now, so a link that
        cannot be removed is tried again by ``tidy`` (or sent again as a maybe-duplicate
        after a restart), never sent again by this run."""
        if self._drop(entry) and self._keep_free(entry.path, entry.size):
            return
        try:
            entry.path.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.error("Cannot remove %s (stored): %s; trying again later", entry.path, exc)
            with self._lock:
                self._unlink_later.append(entry.path)

    def forget(self, entry: Entry) -> None:
        """Its queue link went behind the router's back: it no longer waits."""
        self._drop(entry)

    def tidy(self) -> None:
        """Remove the links ``done`` could not remove."""
        if not self._unlink_later:
            return
        with self._lock:
            paths, self._unlink_later = self._unlink_later, []
        for n, path in enumerate(paths):
            try:
                path.unlink()
            except FileNotFoundError:
                pass
            except OSError:
                with self._lock:
                    self._unlink_later.extend(paths[n:])
                return

    def fail(self, entry: Entry, result: Result) -> Path:
        """The destination refused it for good: it moves to ``failed/<destination>/`` and a
        line in that folder's ``failed.jsonl`` says why (written and fsync'd first, taken back
        when the move fails). On OSError the entry is still queued and no line was added."""
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
        data = (json.dumps(line) + "\n").encode()
        fd = os.open(folder / FAILED_LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC)
        try:
            before = os.fstat(fd).st_size
            try:
                if os.write(fd, data) < len(data):
                    raise OSError(f"short write to {folder / FAILED_LOG}")
                os.fsync(fd)
                os.rename(entry.path, target)
            except OSError:
                # No line without its file: the entry stays queued and is refused again.
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, before)
                raise
        finally:
            os.close(fd)
        self._drop(entry)
        entry.path = target
        try:
            fsync_folder(folder)
        except OSError as exc:
            log.error("Cannot fsync %s: %s", folder, exc)
        return target

    # -- operations (issue 19) ---------------------------------------------------------------

    def requeue(self, path: Path, destination: str) -> Entry:
        """Move the failed file at ``path`` (``failed/<destination>/<entry>``) back into the
        destination's queue under its entry name, durably; it counts as waiting again.
        FileNotFoundError: it is not there; ValueError: not a failed entry of ``destination``."""
        match = _ENTRY.fullmatch(path.name)
        if match is None or match[4] is not None or path.parent != self.failed / destination:
            raise ValueError(f"{path} is not a failed entry of {destination}")
        target = self.queue(destination) / path.name
        if target.exists():
            raise ValueError(f"{target} is queued already")
        os.rename(path, target)
        fsync_folder(target.parent)
        info = target.stat()
        entry = Entry(
            int(match[1]),
            unquote(match[2]),
            match[3],
            destination,
            target,
            info.st_size,
            info.st_ino,
        )
        with self._lock:
            self._hold(entry.inode, entry.size, 1)
            self._seq = max(self._seq, entry.seq)
        return entry

    def close(self) -> None:
        self.drop_free()
        if self._sync is not None:
            self._sync.close()
        self._lock_file.close()
