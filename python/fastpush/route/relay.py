"""Cut-through forwarding: a large file is sent on while it is still being received.

Store-and-forward costs a large file its receive time plus its send time; here, once a file
being received passes ``threshold`` bytes, :class:`Relay` (the receiving server's
``cut_through``) offers it to each destination, to the lane of its study, which takes it once
nothing queued before it is left (a file queued meanwhile was received whole first, and goes
first: the order per study holds). The lane sends the command and the dataset as it arrives,
from the spool file, and holds the last fragment back until the router has spooled the file
and queued it for that destination (``Forwarder.put`` with the :class:`Ticket`): only then is
the message finished, so a destination never stores a file the router did not keep. A file
the router does not keep (a receive cut short, a dataset refused, a full spool) has its
forward given up by aborting that association. Whatever the lane could not finish while the
file arrived is sent from the queue as any other file; the spool and its guarantees are the
same either way.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from ..dataset.item import Item
from ..receive.received import Incoming
from ..receive.storage import STUDY_HEAD, study_folder

if TYPE_CHECKING:
    from .._core import LiveDataset
    from .forwarder import Forwarder
    from .spool import Entry

log = logging.getLogger("fastpush.route.router")

THRESHOLD = 8_000_000
"""Bytes a file must pass before it is forwarded while it arrives: below it, the sending
association's round trips cost more than the overlap saves."""

STALL = 2.0
"""Seconds a file may arrive with nothing new before its forward is given up (it goes from the
queue once whole): a sender trickling a file must not hold a destination's lane."""


class Ticket:
    """One destination's go at a file being received: what its lane sends (``item``,
    ``dataset``), and the router's verdict (``wanted``)."""

    stall: float | None = STALL

    def __init__(self, incoming: Incoming, stopping: threading.Event) -> None:
        self.dataset: LiveDataset = incoming.dataset
        self.item = Item(
            str(incoming.path),
            incoming.sop_class_uid,
            incoming.sop_instance_uid,
            incoming.transfer_syntax,
            incoming.offset,
            incoming.dataset.stored,
        )
        self.entry: Entry | None = None
        """The file's queue entry, once the router queued it for this destination."""
        self._decided = threading.Event()
        self._stopping = stopping

    def decide(self, entry: Entry | None) -> None:
        """The router's verdict: queued as ``entry``, or not kept (None). The first one holds."""
        if not self._decided.is_set():
            self.entry = entry
            self._decided.set()

    def wanted(self) -> bool:
        """Whether the router kept the file for this destination; waits for the verdict (it
        comes as soon as the receive has ended), or for the forwarder to stop."""
        while not self._decided.wait(0.2):
            if self._stopping.is_set():
                return False
        return self.entry is not None


class Relay:
    """The router's ``cut_through``: offers each file larger than ``threshold`` to
    ``forwarders`` while it arrives (those ``pick(incoming)`` names, when given; it answers
    None when the file's head cannot tell), and refuses what they took when the router
    did not keep the file."""

    def __init__(
        self,
        threshold: int,
        forwarders: list[Forwarder],
        pick: Callable[[Incoming], Iterable[str] | None] | None = None,
    ) -> None:
        if threshold < 1:
            raise ValueError("the cut-through threshold must be at least 1 byte")
        # A file is offered once its head is whole: its study (the lane) and the rules' pick
        # are read from the head, and one read from part of it could name another lane.
        self.threshold = max(threshold, STUDY_HEAD)
        self._forwarders = forwarders
        self._lock = threading.Lock()
        self._taken: dict[str, dict[str, Ticket]] = {}
        self._by_name = {forwarder.name: forwarder for forwarder in forwarders}
        self._pick = pick

    def start(self, incoming: Incoming) -> None:
        forwarders = self._forwarders
        if self._pick is not None:
            names = self._pick(incoming)
            if names is None:  # only the whole file can tell where it goes
                return
            forwarders = [self._by_name[name] for name in names]
        study = study_folder(incoming.head, incoming.transfer_syntax)
        taken = {}
        for forwarder in forwarders:
            ticket = forwarder.offer(incoming, study)
            if ticket is not None:
                taken[forwarder.name] = ticket
        if taken:
            with self._lock:
                self._taken[str(incoming.path)] = taken

    def taken(self, path: Path) -> dict[str, Ticket]:
        """The tickets given for the file received at ``path``, by destination."""
        with self._lock:
            return self._taken.get(str(path), {})

    def end(self, incoming: Incoming, status: int) -> None:
        with self._lock:
            taken = self._taken.pop(str(incoming.path), {})
        for name, ticket in taken.items():
            ticket.decide(None)  # not queued for it: given up (a queued one is decided)
            self._by_name[name].withdraw(ticket)
