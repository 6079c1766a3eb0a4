"""Confirmed delivery: a destination with ``commit`` keeps each file in the spool after its
C-STORE success until the destination commits to it (Storage Commitment Push Model).

The forwarder hands each stored entry to its destination's :class:`Commitments`; one thread
gathers them into batches (up to ``CommitOptions.batch``, or what arrived within ``LINGER``
seconds of the first), writes the batch's transaction to the spool, then asks for it on an
association of its own (``send.commit.commit``); the report comes on that association or, with
the router's report listener, on one the destination opens. A committed entry leaves the
spool; one not committed (a failure reason, no report in time, the peer refusing commitment)
is sent again as a maybe-duplicate, up to the destination's retry policy, then moves to
``failed/``. A destination that cannot be reached keeps the batch and asks again after the
retry delay: that is no commitment failure.

Restart-safe: ``spool/commit/<destination>/<transaction>.json`` (fsync'd, its folder too,
before the N-ACTION) lists the entries a transaction covers; the entries keep their queue
links (``.sending``). At start-up those entries are asked about again instead of being resent;
an entry stored but not yet in a transaction is recovered like any ``.sending`` entry: resent.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import FastpushError
from ..receive.storage import fsync_folder
from ..send.association import Association
from ..send.commit import CommitOptions, commit
from ..send.options import ConnectionOptions
from ..send.results import Outcome, Result
from ..send.retry import RetryPolicy
from ..wire.commitment import STORAGE_COMMITMENT, SYNTAXES, Reference, new_transaction_uid
from .durability import write_durably
from .journal import RouteEvent, Step
from .spool import COMMITMENTS, Entry, Spool

if TYPE_CHECKING:
    from .forwarder import Forwarder

log = logging.getLogger("fastpush.route.router")

LINGER = 1.0
"""Seconds a stored entry waits for others to share its N-ACTION."""


@dataclass(eq=False)
class _Pending:
    entry: Entry
    reference: Reference
    resent: int = 0
    """Times it was sent again because it was not committed."""
    recovered: bool = False
    """Asked about by an earlier run, not yet in a transaction of this one."""


class Commitments:
    """The entries of one destination (``forwarder``'s) stored and awaiting commitment."""

    def __init__(
        self,
        forwarder: Forwarder,
        spool: Spool,
        connection: ConnectionOptions,
        options: CommitOptions,
        retry: RetryPolicy,
        report: Callable[[RouteEvent], None],
        on_settled: Callable[[], None],
    ) -> None:
        self._forwarder = forwarder
        self._spool = spool
        self._connection = connection
        self._options = options
        self._retry = retry
        self._report = report
        self._on_settled = on_settled
        self.folder = spool.directory / COMMITMENTS / forwarder.name
        self._cond = threading.Condition()
        self._stopping = threading.Event()
        self._pending: list[_Pending] = []
        self.committed = 0
        """Files the destination committed to (they left the spool)."""
        self._first = 0.0  # when the oldest pending entry arrived
        self._in_flight = 0
        self._resent: dict[str, int] = {}
        self._association: Association | None = None
        # From the transactions an earlier run left: entry name -> what it was.
        self._recovered: dict[str, _Pending] = {}
        self._stale: list[Path] = []
        self._load()
        self._thread = threading.Thread(
            target=self._run, name=f"fastpush-commit-{forwarder.name}", daemon=True
        )

    @property
    def pending(self) -> int:
        """Entries stored and not yet committed, resent or failed."""
        return len(self._pending) + self._in_flight

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop; a transaction awaiting its report is cut, and asked about again by the next
        run, as are the entries not asked about yet (written as a transaction first)."""
        self._stopping.set()
        with self._cond:
            self._cond.notify_all()
            association = self._association
        if association is not None:
            association.interrupt()
        if self._thread.is_alive():
            self._thread.join()
        with self._cond:
            left, self._pending = self._pending, []
        if left:
            try:
                self._save(new_transaction_uid(), left)
            except OSError as exc:  # the entries are .sending links: resent after a restart
                log.error("Cannot keep %d pending commitments: %s", len(left), exc)

    # -- the forwarder's side ----------------------------------------------------------------

    def add(self, entry: Entry, result: Result) -> None:
        """``entry`` was stored (``result``): await its commitment."""
        reference = Reference(result.sop_class_uid or "", result.sop_instance_uid or "")
        resent = self._resent.pop(entry.entry_name, 0)
        self._hold(_Pending(entry, reference, resent))

    def adopt(self, entry: Entry) -> bool:
        """Whether ``entry``, recovered from the queue, is one an earlier run's transaction
        covers: then it is asked about again rather than sent."""
        with self._cond:
            found = self._recovered.pop(entry.entry_name, None)
        if found is None:
            return False
        found.entry = entry
        self._hold(found)
        return True

    def _hold(self, pending: _Pending) -> None:
        with self._cond:
            if not self._pending:
                self._first = time.monotonic()
            self._pending.append(pending)
            self._cond.notify_all()

    # -- the spool's side --------------------------------------------------------------------

    def _load(self) -> None:
        if not self.folder.is_dir():
            return
        for path in sorted(self.folder.glob("*.json")):
            try:
                data = json.loads(path.read_text())
                for name, sop_class, sop_instance, resent in data["entries"]:
                    self._recovered[name] = _Pending(
                        # Replaced by the queue's own entry in adopt().
                        Entry(0, "", name, self._forwarder.name, Path(), 0, 0),
                        Reference(sop_class, sop_instance),
                        int(resent),
                        recovered=True,
                    )
            except (OSError, ValueError, KeyError, TypeError) as exc:
                # Its entries are .sending links all the same: recovered and resent.
                log.error("Cannot read the pending commitment %s: %s", path, exc)
            self._stale.append(path)
        if self._recovered:
            log.info(
                "%s: %d files awaiting commitment from an earlier run",
                self._forwarder.name,
                len(self._recovered),
            )

    def _save(self, transaction: str, batch: list[_Pending]) -> Path:
        """Write the transaction durably: its file, then the folder."""
        if not self.folder.is_dir():
            self.folder.mkdir(parents=True)
            fsync_folder(self.folder.parent)
        target = self.folder / f"{transaction}.json"
        partial = self.folder / f".{transaction}.json.part"
        entries = [
            [
                p.entry.entry_name,
                p.reference.sop_class_uid,
                p.reference.sop_instance_uid,
                p.resent,
            ]
            for p in batch
        ]
        data = json.dumps({"transaction": transaction, "entries": entries}).encode()
        write_durably(target, data, partial)
        return target

    def _forget_stale(self) -> None:
        """The earlier run's transactions are all asked about again: their files go."""
        if any(p.recovered for p in self._pending):
            return
        for path in self._stale:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        self._stale = []

    # -- the thread --------------------------------------------------------------------------

    def _run(self) -> None:
        with self._cond:
            # Recovery put every queued entry before the forwarder started: an entry of an
            # earlier transaction not found by now has left the queue.
            self._recovered.clear()
        attempts = 0
        while True:
            batch = self._take()
            if batch is None:
                return
            transaction = new_transaction_uid()
            saved: Path | None = None
            try:
                saved = self._save(transaction, batch)
                for p in batch:
                    p.recovered = False
                self._forget_stale()
                asked = self._ask(transaction, batch)
            except Exception as exc:  # the destination down, a full disk, or a bug: a thread
                # that died would hold these files until a restart
                attempts += 1
                delay = self._retry.delay(attempts)
                log.log(
                    logging.WARNING if isinstance(exc, (OSError, FastpushError)) else logging.ERROR,
                    "%s: cannot ask for commitment (%s); trying again in %.1f s",
                    self._forwarder.name,
                    exc,
                    delay,
                    exc_info=not isinstance(exc, (OSError, FastpushError)),
                )
                self._give_back(batch)
                if saved is not None:  # asked again under a new transaction
                    with contextlib.suppress(OSError):
                        saved.unlink()
                self._stopping.wait(delay)
                continue
            attempts = 0
            if asked is None:  # stopping: the transaction file stays for the next run
                return
            for pending, result in zip(batch, asked, strict=True):
                self._settle(pending, result)
            with contextlib.suppress(FileNotFoundError):
                saved.unlink()
            with self._cond:
                self._in_flight = 0
            self._on_settled()

    def _take(self) -> list[_Pending] | None:
        """The next batch, once full or lingered; None when stopping."""
        with self._cond:
            while True:
                if self._stopping.is_set():
                    return None
                if self._pending:
                    left = self._first + LINGER - time.monotonic()
                    if len(self._pending) >= self._options.batch or left <= 0:
                        break
                    self._cond.wait(left)
                else:
                    self._cond.wait()
            batch = self._pending[: self._options.batch]
            del self._pending[: self._options.batch]
            self._in_flight = len(batch)
            self._first = time.monotonic()
            return batch

    def _give_back(self, batch: list[_Pending]) -> None:
        with self._cond:
            self._pending[:0] = batch
            self._in_flight = 0

    def _ask(self, transaction: str, batch: list[_Pending]) -> list[Result] | None:
        """Each entry's result: committed or not (with why); None when stopped meanwhile.
        Raises ``OSError`` or a ``FastpushError`` when the destination cannot be reached."""
        forwarder = self._forwarder
        association = Association(
            forwarder.destination.host,
            forwarder.destination.port,
            [(STORAGE_COMMITMENT, SYNTAXES)],
            connection=self._connection,
        )
        with self._cond:
            if self._stopping.is_set():
                return None
            self._association = association
        try:
            association.open()
            results = [
                Result(
                    str(p.entry.path),
                    Outcome.STORED,
                    p.reference.sop_class_uid,
                    p.reference.sop_instance_uid,
                )
                for p in batch
            ]
            commit(association, results, self._options, transaction)
        finally:
            with self._cond:
                self._association = None
            if association.is_open:  # commit() releases it; not when opening failed midway
                association.abort()
        if self._stopping.is_set():
            return None
        return results

    def _settle(self, pending: _Pending, result: Result) -> None:
        entry = pending.entry
        forwarder = self._forwarder
        if result.committed:
            self.committed += 1
            self._spool.done(entry)
            log.info("%s committed to %s", forwarder.name, result.sop_instance_uid)
            self._report(_event(Step.COMMITTED, forwarder.name, entry, result, entry.path))
            return
        pending.resent += 1
        entry.maybe_duplicate = True
        if self._retry.allows(pending.resent):
            log.warning(
                "%s: %s %s: sending it again",
                forwarder.name,
                result.sop_instance_uid,
                result.reason,
            )
            self._report(_event(Step.RETRYING, forwarder.name, entry, result, entry.path))
            self._resent[entry.entry_name] = pending.resent
            forwarder.put(entry)
            return
        try:
            target = self._spool.fail(entry, result)
        except OSError as exc:  # still a .sending link: the next run resends it
            log.error("Cannot move %s to failed/: %s", entry.path, exc)
            return
        forwarder.stats.failed += 1
        log.warning("%s did not commit to %s: moved to %s", forwarder.name, entry.path, target)
        self._report(_event(Step.FAILED, forwarder.name, entry, result, target))


def _event(step: Step, destination: str, entry: Entry, result: Result, path: Path) -> RouteEvent:
    return RouteEvent(
        step,
        result.sop_instance_uid or entry.name,
        destination,
        str(path),
        result.sop_class_uid,
        reason=result.reason,
        bytes=entry.size,
        maybe_duplicate=entry.maybe_duplicate,
    )
