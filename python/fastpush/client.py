"""A long-lived sender to one storage SCP, for routers and for ``push``: a small pool of
associations opened lazily and reopened after failures, and retries for transient failures.

Thread-safety: every public method of ``StoreClient`` may be called from any thread. The pool
hands each ``Association`` to one thread at a time (an ``Association`` itself is not
thread-safe). Which failures are transient is ``retry``'s business; the protocol is
``association``'s.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from .association import Association, EventHandler
from .errors import AssociationAborted, AssociationRejected, ProtocolError
from .failure import Failure
from .item import Item, Pair, Skip, Storable, describe
from .plan import DEFAULT_PROPOSAL, Proposal, contexts, fitting
from .results import Outcome, Result
from .retry import RetryPolicy, transient_error

log = logging.getLogger(__name__)

ASSOCIATION_FAILED = "association failed"
"""How the reason of a file that could not be sent for want of an association begins."""
_OPEN_ERRORS = (OSError, AssociationRejected, AssociationAborted, ProtocolError)


class Cancelled(Exception):
    """The client was cancelled before this item could be sent."""


class _GivenUp(Exception):
    """``fail_fast``: this group's destination already refused us for good."""

    def __init__(self, reason: str, error: BaseException) -> None:
        super().__init__(reason)
        self.error = error


@dataclass(eq=False)
class _Member:
    association: Association
    contexts: frozenset[Pair]
    stores: int = 0


class StoreClient:
    """Stores files, Part-10 bytes or pydicom Datasets to ``host:port``; thread-safe.

    ``associations`` caps the pool. ``groups`` (from ``plan``) fixes which (SOP class, transfer
    syntax) pairs each association proposes; without it an association proposes every pair
    seen so far (as many of the most recent as fit 128 contexts). ``proposal`` says which
    transfer syntaxes to propose and send. ``max_per_association`` releases an association
    after that many stores. With ``fail_fast``, a destination that could not be associated
    with after the retries fails every later item of the same group at once instead of trying
    again.
    The other keyword arguments are ``Association``'s.
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
        proposal: Proposal = DEFAULT_PROPOSAL,
        fail_fast: bool = False,
        on_event: EventHandler | None = None,
        **options: Any,
    ) -> None:
        if associations < 1:
            raise ValueError("associations must be at least 1")
        if max_per_association is not None and max_per_association < 1:
            raise ValueError("max_per_association must be at least 1")
        self.host = host
        self.port = port
        self.size = associations
        self.retry = retry or RetryPolicy()
        self.max_per_association = max_per_association
        self.fail_fast = fail_fast
        self.proposal = proposal
        self._on_event = on_event
        self._options = options
        self._groups = [frozenset(g) for g in groups] if groups is not None else None
        self._seen: dict[Pair, None] = {}
        self._idle: list[_Member] = []
        self._busy: set[_Member] = set()
        self._count = 0  # idle + busy + being opened
        self._dead: dict[frozenset[Pair], tuple[str, BaseException]] = {}
        self._numbers = itertools.count(1)
        self._cond = threading.Condition()
        self._cancelled = threading.Event()
        self._executor: ThreadPoolExecutor | None = None

    # -- public ------------------------------------------------------------------------------

    def store(self, item: Storable) -> Result:
        """Store one item, retrying transient failures; always returns its result."""
        described = describe(item)
        if isinstance(described, Skip):
            result = Result(described.path, Outcome.SKIPPED)
            return result.fail(Failure.SOURCE, described.reason, outcome=Outcome.SKIPPED)
        attempts = 0
        maybe_duplicate = False
        while True:
            attempts += 1
            result = self._attempt(described)
            maybe_duplicate |= result.maybe_duplicate
            result.attempts, result.maybe_duplicate = attempts, maybe_duplicate
            if self._cancelled.is_set() and not result.ok:
                return _not_sent(result)
            if not result.retryable or not self.retry.allows(attempts):
                return result
            delay = self.retry.delay(attempts)
            log.info(
                "Retrying %s in %.1f s (attempt %d failed: %s)",
                described.name,
                delay,
                attempts,
                result.reason,
            )
            if self._cancelled.wait(delay):
                return _not_sent(result)

    def submit(self, item: Storable) -> Future[Result]:
        """Store in a background thread (one per pooled association); returns a future."""
        with self._cond:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(self.size, thread_name_prefix="fastpush")
            executor = self._executor
        return executor.submit(self.store, item)

    def cancel(self, abort: bool = False) -> None:
        """Send nothing new. Files in flight finish (and their associations are released),
        or with ``abort`` their connections are cut at once and they are reported not sent."""
        self._cancelled.set()
        with self._cond:
            idle, self._idle = self._idle, []
            busy = list(self._busy)
            self._count -= len(idle)
            self._cond.notify_all()
        for member in idle:
            member.association.release()
        if abort:
            for member in busy:
                member.association.interrupt()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def close(self) -> None:
        """Release every idle association; wait for background stores to finish."""
        with self._cond:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True)
        with self._cond:
            idle, self._idle = self._idle, []
            self._count -= len(idle)
        for member in idle:
            member.association.release()

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

    # -- one attempt -------------------------------------------------------------------------

    def _attempt(self, item: Item) -> Result:
        """One try; the result says whether another is worth it (``Result.retryable``)."""
        try:
            member = self._checkout(item.pair)
        except Cancelled:
            return _unsent(item).fail(
                Failure.CANCELLED, "not sent: push cancelled", outcome=Outcome.SKIPPED
            )
        except _GivenUp as exc:
            return _unsent(item).fail(Failure.ASSOCIATION, str(exc), error=exc.error)
        except _OPEN_ERRORS as exc:
            return _unsent(item).fail(
                Failure.ASSOCIATION, f"{ASSOCIATION_FAILED}: {exc}", error=exc
            )
        try:
            return member.association.store(item)
        finally:
            self._checkin(member)

    # -- the pool ----------------------------------------------------------------------------

    def _group(self, pair: Pair) -> frozenset[Pair]:
        if self._groups is not None:
            for group in self._groups:
                if pair in group:
                    return group
            return frozenset({pair})
        with self._cond:
            self._seen.pop(pair, None)
            self._seen[pair] = None
            recent = list(reversed(self._seen))  # this pair first, then the most recent
        return frozenset(recent[: fitting(recent, self.proposal)])

    def _checkout(self, pair: Pair) -> _Member:
        victim: _Member | None = None
        with self._cond:
            while True:
                if self._cancelled.is_set():
                    raise Cancelled
                for member in self._idle:
                    if pair in member.contexts:
                        self._idle.remove(member)
                        self._busy.add(member)
                        return member
                if self._count < self.size:
                    self._count += 1
                    break
                if self._idle:
                    # Full of associations for other contexts: replace the oldest idle one.
                    victim = self._idle.pop(0)
                    break
                self._cond.wait()
        if victim is not None:
            victim.association.release()
        return self._open(pair)

    def _open(self, pair: Pair) -> _Member:
        group = self._group(pair)
        try:
            if group in self._dead:
                raise _GivenUp(*self._dead[group])
            association = Association(
                self.host,
                self.port,
                contexts(sorted(group), self.proposal),
                on_event=self._on_event,
                number=next(self._numbers),
                proposal=self.proposal,
                **self._options,
            )
            association.open()
        except BaseException as exc:
            if self.fail_fast and isinstance(exc, _OPEN_ERRORS) and not transient_error(exc):
                self._dead.setdefault(group, (f"{ASSOCIATION_FAILED}: {exc}", exc))
            with self._cond:
                self._count -= 1
                self._cond.notify()
            raise
        member = _Member(association, group)
        with self._cond:
            self._busy.add(member)
        return member

    def _checkin(self, member: _Member) -> None:
        member.stores += 1
        keep = (
            member.association.is_open
            and not self._cancelled.is_set()
            and (self.max_per_association is None or member.stores < self.max_per_association)
        )
        with self._cond:
            self._busy.discard(member)
            if keep:
                self._idle.append(member)
            else:
                self._count -= 1
            self._cond.notify()
        if not keep:
            member.association.release()


def _unsent(item: Item) -> Result:
    """The result of an item that never reached an association."""
    return Result(
        item.path,
        Outcome.FAILED,
        item.sop_class_uid,
        item.sop_instance_uid,
        item.transfer_syntax,
        bytes=item.length,
        notes=list(item.notes),
    )


def _not_sent(result: Result) -> Result:
    """An item given up because of a cancel: not stored, and it says so."""
    if result.failure is Failure.CANCELLED:
        return result
    reason = "not sent: push cancelled" + (f" ({result.reason})" if result.reason else "")
    return result.fail(Failure.CANCELLED, reason, outcome=Outcome.SKIPPED)
