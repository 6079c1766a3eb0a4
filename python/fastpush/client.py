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
import os
import threading
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Any

from .association import Association, EventHandler, Storable
from .errors import AssociationAborted, AssociationRejected, ProtocolError
from .plan import MAX_CONTEXTS, Pair, contexts
from .results import Outcome, Result
from .retry import RetryPolicy, transient_error, transient_status
from .scan import FileItem, Skip, describe_buffer, read_file
from .uids import EXPLICIT_VR_LE

log = logging.getLogger(__name__)

ASSOCIATION_FAILED = "association failed"
"""How the reason of a file that could not be sent for want of an association begins."""
_OPEN_ERRORS = (OSError, AssociationRejected, AssociationAborted, ProtocolError)


class Cancelled(Exception):
    """The client was cancelled before this item could be sent."""


class _GivenUp(Exception):
    """``fail_fast``: this group's destination already refused us for good."""


@dataclass(eq=False)
class _Member:
    association: Association
    contexts: frozenset[Pair]
    stores: int = 0


class StoreClient:
    """Stores files, Part-10 bytes or pydicom Datasets to ``host:port``; thread-safe.

    ``associations`` caps the pool. ``groups`` (from ``plan``) fixes which (SOP class, transfer
    syntax) pairs each association proposes; without it an association proposes every pair
    seen so far (the last 128). ``max_per_association`` releases an association after that
    many stores. With ``fail_fast``, a destination that could not be associated with after
    the retries fails every later item of the same group at once instead of trying again.
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
        self._on_event = on_event
        self._options = options
        self._groups = [frozenset(g) for g in groups] if groups is not None else None
        self._seen: dict[Pair, None] = {}
        self._idle: list[_Member] = []
        self._busy: set[_Member] = set()
        self._count = 0  # idle + busy + being opened
        self._dead: dict[frozenset[Pair], str] = {}
        self._numbers = itertools.count(1)
        self._cond = threading.Condition()
        self._cancelled = threading.Event()
        self._executor: ThreadPoolExecutor | None = None

    # -- public ------------------------------------------------------------------------------

    def store(self, item: Storable) -> Result:
        """Store one item, retrying transient failures; always returns its result."""
        described = _describe(item)
        if isinstance(described, Result):
            return described
        pair = described
        attempts = 0
        maybe_duplicate = False
        while True:
            attempts += 1
            result, transient = self._attempt(item, pair)
            maybe_duplicate |= result.maybe_duplicate
            result = replace(result, attempts=attempts, maybe_duplicate=maybe_duplicate)
            if self._cancelled.is_set() and not result.ok:
                return _not_sent(result, "push cancelled")
            if not transient or not self.retry.allows(attempts):
                return result
            delay = self.retry.delay(attempts)
            log.info(
                "Retrying %s in %.1f s (attempt %d failed: %s)",
                result.path or result.sop_instance_uid,
                delay,
                attempts,
                result.reason,
            )
            if self._cancelled.wait(delay):
                return _not_sent(result, "push cancelled")

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

    def _attempt(self, item: Storable, pair: Pair) -> tuple[Result, bool]:
        """One try; its result and whether the failure, if any, is worth another try."""
        try:
            member = self._checkout(pair)
        except Cancelled:
            return _unsent_result(item, pair, "not sent: push cancelled", Outcome.SKIPPED), False
        except _GivenUp as exc:
            return _unsent_result(item, pair, str(exc)), False
        except _OPEN_ERRORS as exc:
            reason = f"{ASSOCIATION_FAILED}: {exc}"
            return _unsent_result(item, pair, reason), transient_error(exc)
        try:
            result = member.association.store(item)
        finally:
            self._checkin(member)
        # Association.store closes the association only when the connection failed mid-file.
        lost = not result.ok and not member.association.is_open
        return result, lost or transient_status(result.status)

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
            return frozenset(list(self._seen)[-MAX_CONTEXTS:])

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
                raise _GivenUp(self._dead[group])
            association = Association(
                self.host,
                self.port,
                contexts(sorted(group)),
                on_event=self._on_event,
                number=next(self._numbers),
                **self._options,
            )
            association.open()
        except BaseException as exc:
            if self.fail_fast and isinstance(exc, _OPEN_ERRORS) and not transient_error(exc):
                self._dead.setdefault(group, f"{ASSOCIATION_FAILED}: {exc}")
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


def _describe(item: Storable) -> Pair | Result:
    """The (SOP class, transfer syntax) an item needs, or its result if it cannot be sent."""
    if isinstance(item, FileItem):
        return item.sop_class_uid, item.transfer_syntax
    if isinstance(item, (str, os.PathLike, bytes, bytearray, memoryview)):
        if isinstance(item, (str, os.PathLike)):
            described = read_file(item)
        else:
            described = describe_buffer(bytes(item))
        if isinstance(described, Skip):
            path = described.path if isinstance(item, (str, os.PathLike)) else None
            return Result(path, Outcome.SKIPPED, reason=described.reason)
        return described.sop_class_uid, described.transfer_syntax
    sop_class = str(getattr(item, "SOPClassUID", ""))
    meta = getattr(item, "file_meta", None)
    syntax = str(meta.get("TransferSyntaxUID", "")) if meta is not None else ""
    if not sop_class:
        return Result(None, Outcome.SKIPPED, reason="dataset lacks SOPClassUID")
    return sop_class, syntax or EXPLICIT_VR_LE


def _unsent_result(
    item: Storable, pair: Pair, reason: str, outcome: Outcome = Outcome.FAILED
) -> Result:
    if isinstance(item, FileItem):
        return Result(
            item.path,
            outcome,
            item.sop_class_uid,
            item.sop_instance_uid,
            item.transfer_syntax,
            reason=reason,
            bytes=item.length,
        )
    path = os.fspath(item) if isinstance(item, (str, os.PathLike)) else None
    return Result(path, outcome, pair[0], None, pair[1], reason=reason)


def _not_sent(result: Result, why: str) -> Result:
    """An item given up because of a cancel: not stored, and it says so."""
    reason = f"not sent: {why}" + (f" ({result.reason})" if result.reason else "")
    if result.reason.startswith("not sent:"):
        reason = result.reason
    return replace(result, outcome=Outcome.SKIPPED, reason=reason, status=None)
