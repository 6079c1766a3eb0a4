"""A long-lived sender to one storage SCP, for routers and for ``push``: a queue of items and up
to ``associations`` workers. A worker opens its association first and only then takes items
that fit it, so an association the peer is slow to accept never holds a file; a file that
fails transiently is retried by its worker, on a fresh association when the old one was lost.

Opening an association is retried per association, not per file: when the peer cannot be
reached or refuses us for good, every waiting item fails at once with that reason. While some
association works, one the peer does not accept (a peer that serves one association at a time)
is simply left.

A caller with threads of its own (the router's lanes) may instead store on the calling thread
with ``store_here``: the thread takes an open association from the client's pool (or opens one,
up to ``associations``), stores, and puts it back, with no hand-off to a worker and back.

Thread-safety: every public method of ``StoreClient`` may be called from any thread; each
``Association`` is used by one thread at a time (a worker's, or a ``store_here`` caller's).
Which failures are transient is ``retry``'s business; the protocol is ``association``'s.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING

from ..dataset.item import Item, Pair, Skip, Storable
from ..dataset.scan import to_item
from ..errors import AssociationAborted, AssociationRejected, ProtocolError
from ..wire import commitment
from .association import Association, EventHandler
from .commit import CommitOptions, commit, not_committed
from .failure import Failure
from .options import ConnectionKeywords, ConnectionOptions, connection_options
from .plan import DEFAULT_PROPOSAL, Proposal, contexts, fitting
from .results import Event, EventKind, Outcome, Result
from .retry import RetryPolicy, transient_error

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ..dataset.edits import EditPlan
    from ..dataset.payload import Live

log = logging.getLogger(__name__)

ASSOCIATION_FAILED = "association failed"
"""How the reason of a file that could not be sent for want of an association begins."""
_OPEN_ERRORS = (OSError, AssociationRejected, AssociationAborted, ProtocolError)

Group = frozenset[Pair]

# What _next answers when the worker should end its association (asking for the commitment of
# what it stored) rather than wait for more items.
_END_ASSOCIATION: Group = frozenset()

Lease = Callable[[], contextlib.AbstractContextManager[object]]
"""Entered before an association is opened and left once it is gone: a limit on associations
shared with other clients (e.g. a cluster-wide semaphore)."""


@dataclass(eq=False)
class _Job:
    item: Item
    group: Group
    future: Future[Result] = field(default_factory=Future)
    attempts: int = 0
    maybe_duplicate: bool = False
    live: Live | None = None


@dataclass(eq=False)
class _Member:
    association: Association
    contexts: Group
    lease: contextlib.ExitStack
    stores: int = 0
    used: float = field(default_factory=time.monotonic)
    """When it last carried an item (``idle_release`` counts from there)."""
    # Stored, awaiting the commitment asked for when the association ends.
    uncommitted: list[tuple[_Job, Result]] = field(default_factory=list)


class StoreClient:
    """Stores files, Part-10 bytes or pydicom Datasets to ``host:port``; thread-safe.

    ``associations`` caps the workers (one association each). ``groups`` (from ``plan``) fixes
    which (SOP class, transfer syntax) pairs each association proposes; without it an
    association proposes every pair seen so far (as many of the most recent as fit 128
    contexts). ``proposal`` says which transfer syntaxes to propose and send.
    ``max_per_association`` releases an association after that many stores; ``idle_release``
    (seconds) releases one that carried no item for that long (the next item opens another;
    None: kept until ``close``). ``retry`` bounds the attempts of each file and of each
    association; ``give_up_after`` (seconds) also bounds how long associations are retried
    before the waiting items fail. ``on_event(event)`` gets
    every :class:`~fastpush.Event` of every association (from the workers' threads).
    ``connection`` (:class:`~fastpush.ConnectionOptions`) says how each association connects;
    its fields may also be given as keyword arguments (``calling_ae``, ``called_ae``,
    ``engine``, timeouts, ``tls``, ``identity``...), which replace those of ``connection``.

    ``lease``, when given, is entered before each association is opened and left when it is
    released or fails: how many associations exist at once can be bounded across clients.

    ``commit`` (:class:`~fastpush.CommitOptions`) asks the peer for Storage Commitment of what
    each association stored, before it is released: a result is ready once its commitment is
    known (``Result.committed``).

    ``edits`` (:class:`~fastpush.EditPlan`) rewrites element headers while each dataset streams
    out (the Rust engine only); a file that cannot be edited fails and is never sent unedited.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        associations: int = 1,
        groups: Iterable[Iterable[Pair]] | None = None,
        retry: RetryPolicy | None = None,
        max_per_association: int | None = None,
        idle_release: float | None = None,
        proposal: Proposal = DEFAULT_PROPOSAL,
        give_up_after: float | None = None,
        on_event: EventHandler | None = None,
        lease: Lease | None = None,
        connection: ConnectionOptions | None = None,
        edits: EditPlan | None = None,
        commit: CommitOptions | None = None,
        **options: Unpack[ConnectionKeywords],
    ) -> None:
        if associations < 1:
            raise ValueError("associations must be at least 1")
        if max_per_association is not None and max_per_association < 1:
            raise ValueError("max_per_association must be at least 1")
        if idle_release is not None and idle_release <= 0:
            raise ValueError("idle_release must be more than 0 seconds")
        if give_up_after is not None and give_up_after <= 0:
            raise ValueError("give_up_after must be more than 0 seconds")
        self.host = host
        self.port = port
        self.size = associations
        self.retry = retry or RetryPolicy()
        self.max_per_association = max_per_association
        self.idle_release = idle_release
        self.give_up_after = give_up_after
        self.proposal = proposal
        self._on_event = on_event
        self._lease = lease
        self.commit = commit
        self.connection = connection_options(connection, options)
        self.edits = edits
        self._groups = [frozenset(g) for g in groups] if groups is not None else None
        self._seen: dict[Pair, None] = {}
        self._last: tuple[Pair, Group] | None = None  # the last pair seen, and its group
        self._numbers = itertools.count(1)
        self._cond = threading.Condition()
        self._cancelled = threading.Event()
        self._closing = False
        self._queues: dict[Group, deque[_Job]] = {}
        self._workers: list[threading.Thread] = []
        self._waiting = 0  # workers waiting for an item
        self._running = 0  # items taken by a worker and not resolved yet
        self._open: set[Association] = set()
        self._opening: set[Association] = set()
        self._busy: set[Association] = set()
        # store_here's pool: open associations no thread uses now, the longest unused first.
        self._parked: list[_Member] = []
        # How many associations store_here opens: ``associations``, or fewer once the peer took
        # no more than were open (until none is).
        self._ceiling = associations
        self._first = False  # a store_here caller opens the first association itself
        self._spares = 0  # threads opening an association for the pool

    # -- public ------------------------------------------------------------------------------

    def store(self, item: Storable) -> Result:
        """Store one item, retrying transient failures; always returns its result."""
        return self.submit(item).result()

    def store_here(self, item: Storable) -> Result:
        """Store one item on the calling thread, retrying transient failures; always returns
        its result. The thread uses an association of the client's pool (a parked one that
        fits, or a new one while fewer than ``associations`` are open, or the next one parked)
        and parks it again: no worker thread is involved. Without ``commit`` (with it, as
        ``store``). Parked associations are released by ``release_idle`` and ``close``."""
        if self.commit is not None:
            return self.store(item)
        described = to_item(item)
        if isinstance(described, Skip):
            return Result.skipped(described)
        return self._here(_Job(described, self._group(described.pair)))

    def store_live(self, item: Item, live: Live) -> Result:
        """``store_here`` for a dataset still being received (``Association.store_live``):
        one attempt, never retried — a dataset that could not go while it arrived goes once
        whole, from its file. Without ``commit``."""
        if self.commit is not None:
            raise ValueError("a dataset being received is not sent with commitment")
        return self._here(_Job(item, self._group(item.pair), live=live))

    def _here(self, job: _Job) -> Result:
        described = job.item
        with self._cond:
            if self._cancelled.is_set():
                return _not_sent(Result.of(described))
            self._running += 1
        member: _Member | None = None
        try:
            while True:
                member = self._checkout(job)
                try:
                    member, result = self._attempts(member, job)
                finally:
                    with self._cond:
                        self._first = False
                        self._cond.notify_all()
                if result is not None:
                    return result
                # Not cancelled: the peer took no more associations than are open.
                with self._cond:
                    self._ceiling = max(1, len(self._open))
        finally:
            if member is not None and not self._keep(member):
                self._release(member)
                member = None
            with self._cond:
                self._running -= 1
                if member is not None:
                    member.used = time.monotonic()
                    self._parked.append(member)
                self._cond.notify_all()

    def idle_due(self) -> float | None:
        """Seconds until a parked association has been idle for ``idle_release`` (None: none
        will be); ``release_idle`` then releases it."""
        with self._cond:
            if self.idle_release is None or not self._parked:
                return None
            return max(0.0, self._parked[0].used + self.idle_release - time.monotonic())

    def release_idle(self) -> None:
        """Release the parked associations idle for ``idle_release`` or longer."""
        if self.idle_release is None:
            return
        stale = time.monotonic() - self.idle_release
        with self._cond:
            idle = [m for m in self._parked if m.used <= stale]
            self._parked = [m for m in self._parked if m.used > stale]
        for member in idle:
            log.info(
                "Releasing association %d: no file for %g s",
                member.association.number,
                self.idle_release,
            )
            self._release(member)

    def submit(self, item: Storable) -> Future[Result]:
        """Queue one item for the workers; returns a future of its result."""
        described = to_item(item)
        if isinstance(described, Skip):
            future: Future[Result] = Future()
            future.set_result(Result.skipped(described))
            return future
        job = _Job(described, self._group(described.pair))
        with self._cond:
            if self._cancelled.is_set():
                job.future.set_result(_not_sent(Result.of(described)))
                return job.future
            self._queues.setdefault(job.group, deque()).append(job)
            if self._waiting:
                self._cond.notify()
            elif len(self._workers) < self.size:
                self._start_worker()
        return job.future

    def cancel(self, abort: bool = False) -> None:
        """Send nothing new: waiting items are reported not sent. Items in flight finish (and
        their associations are released), or with ``abort`` their connections are cut at once
        and they are reported not sent."""
        self._cancelled.set()
        with self._cond:
            waiting = self._take_all()
            cut = (self._busy | self._opening) if abort else self._opening
            self._cond.notify_all()
        for job in waiting:
            job.future.set_result(_not_sent(Result.of(job.item)))
        for association in cut:
            association.interrupt()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    @property
    def open_associations(self) -> int:
        """Associations open now (idle ones included, until ``idle_release``)."""
        return len(self._open)

    def close(self) -> None:
        """Wait for the queued items, then release every association and stop the workers."""
        with self._cond:
            while any(self._queues.values()) or self._running:
                self._cond.wait()
            self._closing = True
            # Whatever is still being negotiated now holds no item: it is not needed.
            idle_openers = set(self._opening)
            workers = list(self._workers)
            self._cond.notify_all()
        for association in idle_openers:
            association.interrupt()
        for worker in workers:
            worker.join()
        with self._cond:
            # A spare that opened its association as we closed parks it: released here too.
            while self._spares:
                self._cond.wait()
            parked, self._parked = self._parked, []
        for member in parked:
            self._release(member)

    def __enter__(self) -> StoreClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is not None:
            self.cancel(abort=True)
        self.close()

    # -- the workers ---------------------------------------------------------------------------

    def _start_worker(self) -> None:
        worker = threading.Thread(
            target=self._work, name=f"fastpush-{len(self._workers) + 1}", daemon=True
        )
        self._workers.append(worker)
        worker.start()

    def _work(self) -> None:
        member: _Member | None = None
        try:
            while True:
                job, group = self._next(member)
                if job is not None:
                    member = self._run(member, job)
                    continue
                if group is None:
                    return
                self._release(member)
                if group is _END_ASSOCIATION:
                    member = None
                    continue
                opened = self._connect(group)
                member = opened if isinstance(opened, _Member) else None
                if member is None:
                    return
        except BaseException as exc:  # a bug must not cost the items their results
            log.exception("internal error in a sending worker")
            with self._cond:
                waiting = self._take_all() if len(self._workers) == 1 else []
            for lost in waiting:
                lost.future.set_result(
                    Result.of(lost.item).fail(Failure.TRANSFER, f"internal error: {exc!r}")
                )
        finally:
            self._release(member)
            with self._cond:
                self._workers.remove(threading.current_thread())
                if any(self._queues.values()) and not self._workers and not self._closing:
                    self._start_worker()  # items came while this worker was leaving
                self._cond.notify_all()

    def _next(self, member: _Member | None) -> tuple[_Job | None, Group | None]:
        """An item ``member`` can carry (taken), or the group to open an association for, or
        neither: this worker is done."""
        with self._cond:
            while True:
                if self._cancelled.is_set():
                    return None, None
                if member is not None:
                    for queue in self._queues.values():
                        if queue and queue[0].item.pair in member.contexts:
                            self._running += 1
                            return queue.popleft(), None
                waiting = next((g for g, q in self._queues.items() if q), None)
                if waiting is not None:
                    return None, waiting
                if self._closing:
                    return None, None
                if member is not None and member.uncommitted:
                    return None, _END_ASSOCIATION
                idle = self._idle_left(member)
                if member is not None and idle is not None and idle <= 0:
                    log.info(
                        "Releasing association %d: no file for %g s",
                        member.association.number,
                        self.idle_release,
                    )
                    return None, _END_ASSOCIATION
                self._waiting += 1
                self._cond.wait(idle)
                self._waiting -= 1

    def _checkout(self, job: _Job) -> _Member | None:
        """For ``store_here``: a parked association that carries the job's pair (taken), or
        None when the caller is to open the first one itself. While others are open, a new
        one is opened by a spare thread and parked (as a worker opens before it takes an item:
        an association the peer is slow to accept holds no file), and the caller takes
        whichever association is parked first."""
        pair = job.item.pair
        while True:
            with self._cond:
                while True:
                    for n in range(len(self._parked) - 1, -1, -1):
                        if pair in self._parked[n].contexts:
                            return self._parked.pop(n)
                    if self._cancelled.is_set() or self._closing:
                        return None
                    opening = len(self._open) + len(self._opening) + self._spares
                    if not opening and not self._first:
                        self._first = True
                        return None
                    if self._parked:
                        # None fits, and one idle may be all the peer takes: make room.
                        unfit = self._parked.pop(0)
                        break
                    if opening < self._ceiling and not self._spares:
                        self._spares += 1
                        threading.Thread(
                            target=self._open_spare, args=(job.group,), daemon=True
                        ).start()
                    self._cond.wait()
            self._release(unfit)

    def _open_spare(self, group: Group) -> None:
        opened = None
        try:
            opened = self._connect(group)
        finally:
            with self._cond:
                self._spares -= 1
                if isinstance(opened, _Member):
                    self._parked.append(opened)
                elif self._open:  # the peer took no more than are open
                    self._ceiling = len(self._open)
                self._cond.notify_all()

    def _idle_left(self, member: _Member | None) -> float | None:
        """Seconds until ``member`` has been idle for ``idle_release`` (None: no limit)."""
        if member is None or self.idle_release is None:
            return None
        return member.used + self.idle_release - time.monotonic()

    def _run(self, member: _Member | None, job: _Job) -> _Member | None:
        """Store a taken ``job`` and resolve its future, or put it back for another worker.
        Returns the association to go on with, if any."""
        member, result = self._attempts(member, job)
        if self.commit is not None and member is not None and result is not None and result.ok:
            # Resolved once its commitment is known, when the association ends.
            member.uncommitted.append((job, result))
            result = None
            settled = True
        else:
            settled = result is not None
        if member is not None and not self._keep(member):
            self._release(member)
            member = None
        if member is not None:
            member.used = time.monotonic()
        with self._cond:
            self._running -= 1
            if not settled:
                self._queues.setdefault(job.group, deque()).appendleft(job)
            self._cond.notify_all()
        if result is not None:
            job.future.set_result(result)
        return member

    def _attempts(self, member: _Member | None, job: _Job) -> tuple[_Member | None, Result | None]:
        """Try ``job`` as often as the policy allows. Returns the association left and the
        result, or no result when this worker could not get an association and leaves the
        item to the others."""
        result: Result | None = None
        while True:
            if member is None or not member.association.is_open:
                self._release(member)
                opened = self._connect(job.group)
                if not isinstance(opened, _Member):
                    if opened is not None:
                        return None, _given_up(job, opened)
                    if self._cancelled.is_set():
                        return None, _not_sent(result or Result.of(job.item))
                    return None, None
                member = opened
            job.attempts += 1
            with self._cond:
                self._busy.add(member.association)
            try:
                if job.live is None:
                    result = member.association.store(job.item)
                else:
                    result = member.association.store_live(job.item, job.live)
            finally:
                with self._cond:
                    self._busy.discard(member.association)
            member.stores += 1
            job.maybe_duplicate |= result.maybe_duplicate
            result.attempts, result.maybe_duplicate = job.attempts, job.maybe_duplicate
            if self._cancelled.is_set() and not result.ok:
                return member, _not_sent(result)
            if job.live is not None or not result.retryable or not self.retry.allows(job.attempts):
                return member, result
            delay = self.retry.delay(job.attempts)
            log.info(
                "Retrying %s in %.1f s (attempt %d failed: %s)",
                job.item.name,
                delay,
                job.attempts,
                result.reason,
            )
            if self._cancelled.wait(delay):
                return member, _not_sent(result)

    def _keep(self, member: _Member) -> bool:
        return (
            member.association.is_open
            and not self._cancelled.is_set()
            and (self.max_per_association is None or member.stores < self.max_per_association)
            and (self.commit is None or len(member.uncommitted) < self.commit.batch)
        )

    def _release(self, member: _Member | None) -> None:
        if member is None:
            return
        with self._cond:
            self._open.discard(member.association)
            if not self._open:
                self._ceiling = self.size
            self._cond.notify_all()
        with member.lease:
            if member.uncommitted:
                self._commit(member)
            member.association.release()

    def _commit(self, member: _Member) -> None:
        """Ask for the commitment of what ``member`` stored (releasing it) and resolve those
        results."""
        assert self.commit is not None
        stored, member.uncommitted = member.uncommitted, []
        results = [result for _, result in stored]
        if member.association.is_open:
            commit(member.association, results, self.commit)
        else:
            for result in results:
                not_committed(
                    result, "not committed: the association was lost before it could be asked"
                )
        for job, result in stored:
            job.future.set_result(result)

    # -- associations --------------------------------------------------------------------------

    def _group(self, pair: Pair) -> Group:
        if self._groups is not None:
            for group in self._groups:
                if pair in group:
                    return group
            return frozenset({pair})
        with self._cond:
            if self._last is not None and self._last[0] == pair:
                return self._last[1]  # the pair of the item before: nothing has moved
            self._seen.pop(pair, None)
            self._seen[pair] = None
            recent = list(reversed(self._seen))  # this pair first, then the most recent
            group = frozenset(recent[: fitting(recent, self.proposal)])
            self._last = (pair, group)
        return group

    def _connect(self, group: Group) -> _Member | BaseException | None:
        """Open an association for ``group``, retrying as the policy allows. Returns it; or the
        error when giving up (every waiting item has then failed with it); or None when this
        worker should leave (cancelled, or the peer takes no more associations than it has)."""
        deadline = None if self.give_up_after is None else time.monotonic() + self.give_up_after
        attempt = 0
        while True:
            attempt += 1
            proposed = contexts(sorted(group), self.proposal)
            if self.commit is not None:
                proposed.append((commitment.STORAGE_COMMITMENT, commitment.SYNTAXES))
            association = Association(
                self.host,
                self.port,
                proposed,
                on_event=self._on_event,
                number=next(self._numbers),
                proposal=self.proposal,
                connection=self.connection,
                edits=self.edits,
            )
            lease = contextlib.ExitStack()
            if self._lease is not None:
                lease.enter_context(self._lease())
            with self._cond:
                if self._cancelled.is_set() or self._closing:
                    lease.close()
                    return None
                self._opening.add(association)
            try:
                association.open()
            except _OPEN_ERRORS as exc:
                error: BaseException = exc
                lease.close()
            except BaseException:
                lease.close()
                raise
            else:
                with self._cond:
                    self._opening.discard(association)
                    self._open.add(association)
                return _Member(association, group, lease)
            finally:
                with self._cond:
                    self._opening.discard(association)
            with self._cond:
                if self._cancelled.is_set() or self._closing:
                    return None
                working = len(self._open)
            if working:
                log.warning(
                    "The peer did not take another association (%s): going on with %d",
                    error,
                    working,
                )
                return None
            if (
                _hopeless(error)
                or not self.retry.allows(attempt)
                or (deadline is not None and time.monotonic() >= deadline)
            ):
                self._give_up(error)
                return error
            delay = self.retry.delay(attempt)
            if deadline is not None:
                delay = max(0.0, min(delay, deadline - time.monotonic()))
            self._tell(
                f"{ASSOCIATION_FAILED} ({error}): retry {attempt}/{self.retry.retries} "
                f"in {delay:g} s"
            )
            if self._cancelled.wait(delay):
                return None

    def _give_up(self, error: BaseException) -> None:
        with self._cond:
            waiting = self._take_all()
        for job in waiting:
            job.future.set_result(_given_up(job, error))

    def _take_all(self) -> list[_Job]:
        """Every queued item, removed from the queues (the caller holds the lock)."""
        jobs = [job for queue in self._queues.values() for job in queue]
        self._queues.clear()
        return jobs

    def _tell(self, message: str) -> None:
        log.warning(message)
        if self._on_event is not None:
            self._on_event(Event(EventKind.WAITING, 0, message))


def _hopeless(error: BaseException) -> bool:
    """Not worth another association attempt: a permanent refusal, a name that does not
    resolve, or a peer that took the connection but never answered (it will not answer the
    next one sooner)."""
    return not transient_error(error) or isinstance(error, (socket.gaierror, TimeoutError))


def _given_up(job: _Job, error: BaseException) -> Result:
    result = Result.of(job.item)
    result.attempts = job.attempts
    result.maybe_duplicate = job.maybe_duplicate
    return result.fail(Failure.ASSOCIATION, f"not sent: {ASSOCIATION_FAILED}: {error}", error=error)


def _not_sent(result: Result) -> Result:
    """An item given up because of a cancel: not stored, and it says so."""
    if result.failure is Failure.CANCELLED:
        return result
    reason = "not sent: push cancelled" + (f" ({result.reason})" if result.reason else "")
    return result.fail(Failure.CANCELLED, reason, outcome=Outcome.SKIPPED)
