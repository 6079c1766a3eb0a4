"""One destination of the router: its queue pushed with a ``StoreClient``.

The queue is split into ``lanes`` (as many as the client's associations), a study always in the
same lane, and each lane's thread sends one file at a time on an association of its own
(``StoreClient.store_here``), in arrival order, waiting for its result:
the files of a study reach the destination in the order they arrived, while the lanes keep up to
``lanes`` associations busy. A transient failure (the destination down, Out of Resources, a
lost connection, after the client's own retries) keeps the file at the head of its lane, which
tries again after a growing delay; a permanent refusal (a failure status, a refused SOP class or
syntax, a file that cannot be converted) moves it to ``failed/`` and the lane goes on. Nothing
here waits on another destination or on the receiving side.

A lane never wedges on its own spool: a stored file is done whatever the journal or the disk
does next (see ``Spool.done``); a spool step that fails (a full disk refusing the line of a
refusal, a link that cannot be renamed) keeps the file at the head of its lane, tried again
after the same growing delay, and a refusal is not sent again only to be refused again; a file
whose queue link has gone is dropped from its lane with a log line.
"""

from __future__ import annotations

import logging
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

from ..dataset.edits import EditPlan
from ..send.client import StoreClient
from ..send.commit import CommitOptions
from ..send.failure import Failure
from ..send.options import ConnectionOptions
from ..send.plan import Proposal
from ..send.results import Result
from ..send.retry import RetryPolicy
from ..transport.tls import TLSOptions
from ..wire.identity import UserIdentity
from .commit import Commitments
from .journal import RouteEvent, Step
from .relay import Ticket
from .spool import Entry, Spool, folder_name

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ..receive.received import Incoming

log = logging.getLogger("fastpush.route.router")

_PERMANENT = (Failure.STATUS, Failure.REFUSED, Failure.SOURCE)


class ForwardKeywords(TypedDict, total=False):
    """What a router passes on to each destination's ``StoreClient`` besides the connection
    (whose called AE title and TLS are the destination's, and the calling AE title the
    router's)."""

    engine: str | None
    max_pdu: int
    max_send_pdu: int | None
    connect_timeout: float | None
    dimse_timeout: float | None
    identity: UserIdentity | None
    max_per_association: int | None
    proposal: Proposal
    give_up_after: float | None
    idle_release: float | None


IDLE_RELEASE = 30.0
"""Seconds without files after which a destination's association is released (lifecycle,
issue 19): a router does not hold a peer's association slots all night."""


@dataclass(frozen=True)
class Destination:
    """Where the router forwards: ``host:port`` with AE title ``called_ae``. ``name`` (default
    ``AE@host_port``) names its queue and failed folders: keep it when the address changes and
    the files waiting follow."""

    host: str
    port: int
    called_ae: str = "ANY-SCP"
    name: str = ""
    tls: TLSOptions | None = None
    """Connect to it over TLS with these options (None: plain TCP)."""
    associations: int | None = None
    """Its parallel associations (lanes); None: the router's ``associations``."""
    retry: RetryPolicy | None = None
    """Its retry policy; None: the router's ``retry``."""
    proposal: Proposal | None = None
    """The transfer syntaxes proposed and sent to it; None: the router's ``proposal``."""
    study_complete: bool = False
    """Forward only whole studies: a study's files wait in the spool until the router's
    ``study_stable`` seconds passed without a new file of it (see ``route.studies``)."""
    commit: bool = False
    """Keep each file in the spool until it commits to it (Storage Commitment; see
    ``route.commit``): a file not committed is sent again, up to the retry policy."""
    edits: EditPlan | Mapping[str, Any] | None = None
    """Tag edits and de-identification applied to each file as it streams out to it (the
    spool copy is never edited): an ``EditPlan``, or ``{"edits": [...], "deidentify": {...}}``
    as a config file's destination writes them. A file they cannot apply to goes to
    ``failed/<destination>/``; it is never sent unedited."""

    def __post_init__(self) -> None:
        if self.edits is not None and not isinstance(self.edits, EditPlan):
            from .config import plan_of

            object.__setattr__(self, "edits", plan_of(self.edits, f"{self.key}: edits"))

    @property
    def plan(self) -> EditPlan | None:
        """``edits`` as a plan."""
        assert self.edits is None or isinstance(self.edits, EditPlan)
        return self.edits

    @property
    def key(self) -> str:
        return folder_name(self.name or f"{self.called_ae}@{self.host}_{self.port}")


@dataclass
class DestinationStats:
    """Running totals of one destination (read without locking: approximate mid-run)."""

    forwarded: int = 0
    """Files stored at the destination."""
    relayed: int = 0
    """Of ``forwarded``, files sent on while they were still being received (cut-through)."""
    bytes: int = 0
    """Bytes of the files stored there."""
    failed: int = 0
    """Files refused for good, moved to ``failed/``."""
    waiting: int = 0
    """Files in its queue."""
    vanished: int = 0
    """Files dropped from the queue because their queue link had gone."""
    retrying: str = ""
    """The last transient failure while files wait for it, else empty."""


@dataclass(eq=False)
class _Lane:
    wakeup: threading.Condition
    """Notified when the lane may have work: a file put, a release, a stop."""
    entries: deque[Entry] = field(default_factory=deque)
    attempts: int = 0
    refused: Result | None = None
    """The head entry's refusal, when moving it to failed/ has to be tried again."""
    busy: Entry | None = None
    """The entry the lane's thread works on (ops: never removed under it)."""
    offered: Ticket | None = None
    """A file being received, for the lane to send while it arrives once nothing is queued
    before it (``relay``)."""
    relaying: Ticket | None = None
    """The offer the lane's thread took and sends."""


Tell = Callable[[RouteEvent], None]


class Forwarder:
    """Pushes the entries ``put`` to it to one destination, in ``lanes`` ordered lanes.

    The destination's client connects with ``connection`` (its ``called_ae`` and ``tls``
    replaced by the destination's) and the ``options`` keyword arguments."""

    def __init__(
        self,
        destination: Destination,
        spool: Spool,
        *,
        lanes: int,
        retry: RetryPolicy,
        tell: Tell,
        on_idle: Callable[[], None],
        connection: ConnectionOptions | None = None,
        commit: CommitOptions | None = None,
        **options: Unpack[ForwardKeywords],
    ) -> None:
        self.destination = destination
        self.name = destination.key
        self.spool = spool
        self.retry = retry
        self.stats = DestinationStats()
        self._tell = tell
        self._on_idle = on_idle
        client_options: ForwardKeywords = {"idle_release": IDLE_RELEASE, **options}
        self.plan = destination.plan
        self.edited = "" if self.plan is None else self.plan.describe()
        """What the edits do, for the journal's forwarded lines."""
        self._client = StoreClient(
            destination.host,
            destination.port,
            associations=lanes,
            retry=retry,
            connection=replace(
                connection or ConnectionOptions(),
                called_ae=destination.called_ae,
                tls=destination.tls,
            ),
            edits=self.plan,
            **client_options,
        )
        # Confirmed delivery (issue 20): with ``destination.commit``, ``commit`` says how.
        self.commitments = (
            Commitments(
                self,
                spool,
                self._client.connection,
                commit or CommitOptions(),
                retry,
                self._report,
                on_idle,
            )
            if destination.commit
            else None
        )
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        # ops (issue 19): a held destination's lanes wait on their wakeup; timing(seconds) gets
        # the time of each store call.
        self.held = False
        self.timing: Callable[[float], None] | None = None
        # Study completion (issue 19): with ``study_complete``, whether a study (its spool
        # folder name) is complete; a lane's head waits until it is.
        self.complete: Callable[[str], bool] | None = None
        # A condition per lane on the one lock: a file put wakes its lane alone, not every
        # idle lane to find nothing (a study goes through one lane).
        self._lanes = [_Lane(threading.Condition(self._lock)) for _ in range(lanes)]
        self._threads = [
            threading.Thread(
                target=self._run, args=(lane,), name=f"fastpush-route-{self.name}-{n}", daemon=True
            )
            for n, lane in enumerate(self._lanes)
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()
        if self.commitments is not None:
            self.commitments.start()

    def _lane(self, study: str) -> _Lane:
        return self._lanes[zlib.crc32(study.encode()) % len(self._lanes)]

    def put(self, entry: Entry, ticket: Ticket | None = None) -> None:
        """Queue ``entry``; with the ``ticket`` its lane took while it arrived (``offer``),
        the lane finishes sending it, if it still is."""
        if self.commitments is not None and self.commitments.adopt(entry):
            return
        lane = self._lane(entry.study)
        with self._lock:
            self.stats.waiting += 1
            if ticket is not None and lane.relaying is ticket and self._sending(entry):
                lane.entries.appendleft(entry)
                lane.busy = entry
                ticket.decide(entry)
                return
            if ticket is not None and lane.offered is ticket:
                lane.offered = None  # whole before the lane got to it: queued as any other
            lane.entries.append(entry)
            lane.wakeup.notify()

    def _sending(self, entry: Entry) -> bool:
        """Mark an entry sent while it arrived as being sent, before the sender hears success:
        after a crash it is known to be maybe at the destination already."""
        try:
            self.spool.sending(entry)
        except OSError as exc:
            log.warning("Cannot mark %s as being sent: %s", entry.path, exc)
            return False
        return True

    def offer(self, incoming: Incoming, study: str) -> Ticket | None:
        """A ticket to send a file still being received (see ``relay``), which its study's
        lane takes once nothing is queued before it; None when the lane has an offer already,
        or this destination does not take files as they are (edits, study completion,
        commitment) or is held."""
        if (
            self.plan is not None
            or self.complete is not None
            or self.commitments is not None
            or self._stopping.is_set()
        ):
            return None
        lane = self._lane(study)
        with self._lock:
            if self.held or lane.offered is not None:
                return None
            lane.offered = Ticket(incoming, self._stopping)
            lane.wakeup.notify()
            return lane.offered

    def withdraw(self, ticket: Ticket) -> None:
        """The file of an offer not taken yet will not be queued: the lane forgets it."""
        with self._lock:
            for lane in self._lanes:
                if lane.offered is ticket:
                    lane.offered = None

    @property
    def waiting(self) -> int:
        """Files queued, and stored ones awaiting their commitment."""
        pending = 0 if self.commitments is None else self.commitments.pending
        return self.stats.waiting + pending

    def stop(self, abort: bool = False) -> None:
        """Stop after the files being sent (``abort``: cut them); waiting files stay queued."""
        self._stopping.set()
        with self._lock:
            self._wake_lanes()
        self._client.cancel(abort=abort)
        for thread in self._threads:
            if thread.is_alive():
                thread.join()
        if self.commitments is not None:
            self.commitments.stop()
        self._client.close()

    # -- ops (issue 19) ----------------------------------------------------------------------

    def hold(self, held: bool = True) -> None:
        """Hold (files keep queueing, nothing more is sent; a file in flight finishes) or
        release the destination."""
        with self._lock:
            self.held = held
            self._wake_lanes()

    def wake(self) -> None:
        """Look at the lanes' heads again (a study completed)."""
        with self._lock:
            self._wake_lanes()

    def _wake_lanes(self) -> None:
        """Every lane looks at its head again (``self._lock`` held)."""
        for lane in self._lanes:
            lane.wakeup.notify_all()

    def _incomplete(self, entry: Entry) -> bool:
        return self.complete is not None and not self.complete(entry.study)

    def oldest(self) -> Entry | None:
        """The entry waiting longest (the smallest sequence number among the lanes' heads)."""
        with self._lock:
            heads = [lane.entries[0] for lane in self._lanes if lane.entries]
        return min(heads, key=lambda e: e.seq, default=None)

    @property
    def associations(self) -> int:
        """Associations open to the destination."""
        return self._client.open_associations

    def remove(self, entry_name: str) -> Entry:
        """Take the queued entry named ``entry_name`` (without ``.sending``) out of its lane;
        the caller removes its file. KeyError: not queued; ValueError: being sent."""
        with self._lock:
            for lane in self._lanes:
                for n, entry in enumerate(lane.entries):
                    if entry.entry_name != entry_name:
                        continue
                    if lane.busy is entry:
                        raise ValueError(f"{entry_name} is being sent to {self.name}")
                    del lane.entries[n]
                    if n == 0:
                        lane.refused = None
                        lane.attempts = 0
                    self.stats.waiting -= 1
                    if not self.stats.waiting:
                        self.stats.retrying = ""
                    return entry
        raise KeyError(f"{entry_name} is not queued for {self.name}")

    # -- lanes -------------------------------------------------------------------------------

    def _next(self, lane: _Lane) -> Entry | Ticket | None:
        while True:
            with self._lock:
                lane.busy = None
                while not lane.entries or self.held or self._incomplete(lane.entries[0]):
                    if self._stopping.is_set():
                        return None
                    if lane.offered is not None and not lane.entries and not self.held:
                        lane.relaying, lane.offered = lane.offered, None
                        return lane.relaying
                    # The lanes' own associations idle out while the lanes wait (issue 19).
                    if not lane.wakeup.wait(self._client.idle_due()):
                        break
                else:
                    if self._stopping.is_set():
                        return None
                    lane.busy = lane.entries[0]
                    return lane.busy
            self._client.release_idle()

    def _run(self, lane: _Lane) -> None:
        while True:
            work = self._next(lane)
            if work is None:
                return
            where = work.item.path if isinstance(work, Ticket) else work.path
            self.spool.tidy()
            try:
                if isinstance(work, Ticket):
                    finished = self._relay(lane, work)
                else:
                    finished = self._forward(lane, work)
            except OSError as exc:  # the spool itself (a full or failing disk): try again later
                log.error("Spool error on %s: %s", where, exc)
                finished = False
                self._wait(lane, f"spool: {exc}")
            except Exception as exc:  # a lane that died would hold its files until a restart
                log.exception("Forwarding %s failed", where)
                finished = False
                self._wait(lane, f"error: {exc}")
            if finished:
                with self._lock:
                    lane.entries.popleft()
                    self.stats.waiting -= 1
                    if not self.stats.waiting:
                        self.stats.retrying = ""
                self._on_idle()

    def _forward(self, lane: _Lane, entry: Entry) -> bool:
        """Send the entry, or finish its refusal; whether it has left the queue."""
        if lane.refused is not None:
            if not entry.path.exists():
                return self._vanished(lane, entry)
            return self._refuse(lane, entry, lane.refused)
        try:
            self.spool.sending(entry)
        except FileNotFoundError:
            return self._vanished(lane, entry)
        started = time.monotonic()
        # A file received by this run is sent as the receive loop found it, without a scan; on
        # the lane's thread, with no hand-off to a worker thread and back.
        result = self._client.store_here(entry.item() or str(entry.path))
        if self.timing is not None:  # ops (issue 19)
            self.timing(time.monotonic() - started)
        return self._settle(lane, entry, result)

    def _relay(self, lane: _Lane, ticket: Ticket) -> bool:
        """Send a file while it is received; whether its entry has left the queue. Unless its
        destination answered, the entry (if the router queued it) is sent again from the
        queue, as any other."""
        started = time.monotonic()
        try:
            result = self._client.store_live(ticket.item, ticket)
        finally:
            with self._lock:
                lane.relaying = None
            ticket.decide(None)  # a verdict after this goes to the queue (put)
        entry = ticket.entry
        if entry is None:
            return False
        if result.ok or result.failure is Failure.STATUS:
            if self.timing is not None:  # ops (issue 19)
                self.timing(time.monotonic() - started)
            self.stats.relayed += result.ok
            return self._settle(lane, entry, result)
        entry.maybe_duplicate |= result.maybe_duplicate
        self._not_sent(entry)
        log.info(
            "%s: %s not sent while received (%s): sent from the queue",
            self.name,
            entry.name,
            result.reason,
        )
        return False

    def _not_sent(self, entry: Entry) -> None:
        """Take back the entry's ``sending`` mark when no attempt may have reached its
        destination whole: a crash before the next one must not call it a maybe-duplicate."""
        if not entry.maybe_duplicate:
            self.spool.not_sent(entry)

    def _settle(self, lane: _Lane, entry: Entry, result: Result) -> bool:
        """Act on a result; whether the entry has left the queue."""
        uid = result.sop_instance_uid or entry.name
        entry.maybe_duplicate |= result.maybe_duplicate
        if result.ok:
            if self.commitments is None:
                self.spool.done(entry)
            lane.attempts = 0
            self.stats.forwarded += 1
            self.stats.bytes += entry.size
            log.info("Forwarded %s to %s", uid, self.name)
            self._report(self._event(Step.FORWARDED, entry, result, entry.path))
            if self.commitments is not None:  # it stays in the spool until committed
                self.commitments.add(entry, result)
            return True
        if result.failure is Failure.CANCELLED and self._stopping.is_set():
            self._not_sent(entry)  # a graceful stop
            return False
        if result.failure in _PERMANENT and not result.retryable:
            # A source that cannot be read because its link has gone is no refusal.
            if result.failure is Failure.SOURCE and not entry.path.exists():
                return self._vanished(lane, entry)
            return self._refuse(lane, entry, result)
        self._not_sent(entry)  # it waits for its next attempt
        self._report(self._event(Step.RETRYING, entry, result, entry.path))
        self._wait(lane, result.reason)
        return False

    def _refuse(self, lane: _Lane, entry: Entry, result: Result) -> bool:
        uid = result.sop_instance_uid or entry.name
        lane.refused = result
        target = self.spool.fail(entry, result)
        lane.refused = None
        lane.attempts = 0
        self.stats.failed += 1
        log.warning("%s refused %s (%s): moved to %s", self.name, uid, result.reason, target)
        self._report(self._event(Step.FAILED, entry, result, target))
        return True

    def _vanished(self, lane: _Lane, entry: Entry) -> bool:
        lane.refused = None
        lane.attempts = 0
        self.spool.forget(entry)
        self.stats.vanished += 1
        log.error("%s: %s is no longer in the queue: dropped, not sent", self.name, entry.path)
        return True

    def _report(self, event: RouteEvent) -> None:
        # What happened has happened: a listener that fails cannot undo it or make it retried.
        try:
            self._tell(event)
        except Exception:
            log.exception("Reporting %s of %s failed", event.step, event.sop_instance_uid)

    def _event(self, step: Step, entry: Entry, result: Result, path: Path) -> RouteEvent:
        return RouteEvent(
            step,
            result.sop_instance_uid or entry.name,
            self.name,
            str(path),
            result.sop_class_uid,
            status=result.status,
            reason=result.reason,
            bytes=entry.size,
            maybe_duplicate=entry.maybe_duplicate,
            edits=self.edited if step is Step.FORWARDED else "",
        )

    def _wait(self, lane: _Lane, reason: str) -> None:
        lane.attempts += 1
        delay = self.retry.delay(lane.attempts)
        self.stats.retrying = reason
        log.warning(
            "%s: %s; %d files waiting, trying again in %.1f s",
            self.name,
            reason,
            self.stats.waiting,
            delay,
        )
        with self._lock:  # ops (issue 19): the head may be removed while the lane waits
            lane.busy = None
        # Waits on the stop event, not a sleep: stop() ends the wait at once.
        self._stopping.wait(delay)
