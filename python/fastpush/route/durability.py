"""How durable the router makes a file before it answers success, and the group commit of the
folder fsyncs that make its queue names durable.

``fsync`` (the default): the file's data are on disk (``fdatasync``, in the receive loop) and
its name in every destination's queue folder too (an ``fsync`` of the folder) before the sender
hears success. Associations storing at once share those folder fsyncs: one ``fsync`` of a folder
covers every link made in it before it started, so N concurrent files cost N ``fdatasync`` and
about one folder ``fsync`` per destination, not N.

``os``: nothing is fsync'd; the files are in the page cache when the sender hears success and
reach the disk when the kernel writes them back (seconds later). A crash of the router process
loses nothing; a crash of the machine or a power cut can lose files already acknowledged.
"""

from __future__ import annotations

import enum
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from ..receive.storage import fsync_folder


def write_durably(target: Path, data: bytes, temporary: Path) -> None:
    """Make ``target`` hold ``data`` after a crash at any point: written to ``temporary``,
    fsync'd, renamed, and the folder fsync'd (a reader sees the old file or the new one)."""
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(temporary, target)
    fsync_folder(target.parent)


class Durability(enum.Enum):
    """What success means to a sender: see the module's docstring."""

    FSYNC = "fsync"
    OS = "os"


@dataclass
class _Folder:
    asked: int = 0
    """Tickets handed out: each a link made before its ticket was taken."""
    done: int = 0
    """Every ticket up to this one is covered by a finished fsync."""
    running: bool = False
    fd: int = -1
    """The folder, open: an open and a close per file cost more than its fsync on tmpfs."""
    reopen: bool = False
    """Open the folder again before the next fsync (it may have been made anew)."""


class FolderSync:
    """``sync(folder)`` returns once an ``fsync`` of ``folder`` that started after the call
    finished: the one the caller runs, or one another thread ran for its own links and this
    call's. Thread-safe; an fsync that fails raises in the thread that ran it, and the threads
    it would have covered run their own. The folders stay open until ``close``; ``reopen``
    opens each again before its next fsync."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._folders: dict[Path, _Folder] = {}
        self._closed = False

    def reopen(self) -> None:
        with self._cond:
            for state in self._folders.values():
                state.reopen = True

    def close(self) -> None:
        with self._cond:
            self._closed = True
            for state in self._folders.values():
                if not state.running:  # else its thread closes it (sync)
                    _close(state)

    def _fsync(self, folder: Path, state: _Folder, reopen: bool) -> None:
        """fsync ``folder`` through ``state.fd``, which is the caller's while it runs it."""
        if reopen:
            _close(state)
        if state.fd < 0:
            state.fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        os.fsync(state.fd)

    def sync(self, folder: Path) -> None:
        with self._cond:
            state = self._folders.setdefault(folder, _Folder())
            state.asked += 1
            ticket = state.asked
            while state.done < ticket:
                if state.running:
                    self._cond.wait()
                    continue
                state.running = True
                covered = state.asked
                reopen, state.reopen = state.reopen, False
                synced = False
                self._cond.release()
                try:
                    self._fsync(folder, state, reopen)
                    synced = True
                finally:
                    self._cond.acquire()
                    state.running = False
                    if synced:
                        state.done = max(state.done, covered)
                    else:
                        state.reopen = True  # a fresh descriptor next time
                    if self._closed:
                        _close(state)
                    self._cond.notify_all()


def _close(state: _Folder) -> None:
    if state.fd >= 0:
        os.close(state.fd)
        state.fd = -1
