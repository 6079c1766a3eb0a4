"""Pushing paths to a storage SCP: one result per input, however the push goes.

``Push`` scans the inputs, plans the associations, and runs N workers over one shared queue
through a ``StoreClient`` (pool, retries). Iterating it yields each result as it arrives;
``cancel()`` stops it gracefully or at once. ``push()`` and ``echo()`` are the one-call forms.
"""

from __future__ import annotations

import logging
import os
import queue
from collections import deque
from collections.abc import Collection, Iterable, Iterator
from concurrent.futures import Future
from typing import TYPE_CHECKING

from ..dataset.item import Item, Skip
from ..dataset.scan import expand, read_file
from ..uids import EXPLICIT_VR_LE, IMPLICIT_VR_LE, VERIFICATION
from .association import Association, EventHandler
from .client import Lease, StoreClient
from .commit import CommitOptions
from .options import ConnectionKeywords, ConnectionOptions, connection_options
from .plan import DEFAULT_PROPOSAL, Proposal, plan
from .results import Result
from .retry import RetryPolicy

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ..dataset.edits import EditPlan

log = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]


class Push:
    """A push of files and folders to ``host:port``; an iterator of results.

    Every input path gets exactly one result. ``associations`` workers share one queue;
    transient failures are retried ``retries`` times with exponential ``backoff`` (a file, or
    opening an association, for at most ``give_up_after`` seconds if given); paths in
    ``skip`` (resolved, e.g. from ``stored_paths(report)``) are left out. ``proposal`` says which
    transfer syntaxes to propose and send (by default the file's own, then Explicit and Implicit
    VR LE, converting or decompressing as the peer accepted). ``recursive`` descends into
    folders. ``max_per_association`` releases an association after that many files and opens
    another. ``on_event(event)`` gets every :class:`~fastpush.Event` of every association
    (from the workers' threads). ``lease`` is ``StoreClient``'s (a bound on associations shared
    with other pushes). ``connection`` (:class:`~fastpush.ConnectionOptions`) says how each
    association connects; its fields may also be given as keyword arguments (``calling_ae``,
    ``called_ae``, ``engine``, ``max_pdu``, timeouts, ``tls``, ``identity``...), which replace
    those of ``connection``.

    ``cancel()`` may be called from any thread (or a signal handler's caller): no new file is
    started, files in flight finish and associations are released; ``cancel(abort=True)`` cuts
    the connections at once. Files not sent are reported ``skipped`` with the reason.

    ``commit`` (True, or :class:`~fastpush.CommitOptions` for its timeout, batch and report
    listener) asks the peer for Storage Commitment of the files each association stored: a
    file stored but not committed fails (``failure`` ``commitment``, ``committed`` False).

    ``edits`` (:class:`~fastpush.EditPlan`) rewrites element headers (tag edits, UID maps,
    de-identification) while each dataset streams out, pixel data untouched; a file that cannot
    be edited fails and is never sent unedited.
    """

    def __init__(
        self,
        paths: Iterable[PathLike],
        host: str,
        port: int,
        *,
        recursive: bool = True,
        associations: int = 1,
        retries: int = 3,
        backoff: float = 0.5,
        max_per_association: int | None = None,
        skip: Collection[str] = (),
        proposal: Proposal = DEFAULT_PROPOSAL,
        give_up_after: float | None = None,
        on_event: EventHandler | None = None,
        lease: Lease | None = None,
        connection: ConnectionOptions | None = None,
        edits: EditPlan | None = None,
        commit: CommitOptions | bool = False,
        **options: Unpack[ConnectionKeywords],
    ) -> None:
        self._ready: deque[Result] = deque()
        items: list[Item] = []
        self.resumed = 0
        for name in expand(paths, recursive):
            if skip and resolved(name) in skip:
                self.resumed += 1
                continue
            described = read_file(name)
            if isinstance(described, Skip):
                self._ready.append(Result.skipped(described))
            else:
                items.append(described)
        groups = plan(items, proposal)
        self._items = [item for group in groups for item in group.items]
        self.total_files = len(self._ready) + len(items)
        self.total_bytes = sum(item.length for item in items)
        self._outstanding = len(items)
        self._client = StoreClient(
            host,
            port,
            associations=associations,
            groups=[group.pairs for group in groups],
            retry=RetryPolicy(retries, backoff),
            max_per_association=max_per_association,
            proposal=proposal,
            give_up_after=give_up_after,
            on_event=on_event,
            lease=lease,
            connection=connection_options(connection, options),
            edits=edits,
            commit=CommitOptions() if commit is True else commit or None,
        )
        self._results: queue.Queue[Result] = queue.Queue()
        self._started = False

    def __iter__(self) -> Iterator[Result]:
        return self

    def __next__(self) -> Result:
        # Not a generator: a KeyboardInterrupt raised while waiting here leaves the push
        # usable, so the caller can cancel() and go on collecting results.
        if self._ready:
            return self._ready.popleft()
        if self._outstanding == 0:
            self._client.close()
            raise StopIteration
        if not self._started:
            self._started = True
            for item in self._items:
                self._client.submit(item).add_done_callback(self._arrived)
        result = self._results.get()
        self._outstanding -= 1
        return result

    def cancel(self, abort: bool = False) -> None:
        self._client.cancel(abort=abort)

    def _arrived(self, future: Future[Result]) -> None:
        self._results.put(future.result())


class PushKeywords(ConnectionKeywords, total=False):
    """The keyword arguments of ``Push`` (and so of ``push`` and ``iter_push``)."""

    recursive: bool
    associations: int
    retries: int
    backoff: float
    max_per_association: int | None
    skip: Collection[str]
    proposal: Proposal
    edits: EditPlan | None
    give_up_after: float | None
    on_event: EventHandler | None
    lease: Lease | None
    connection: ConnectionOptions | None
    commit: CommitOptions | bool


def iter_push(
    paths: Iterable[PathLike], host: str, port: int, **options: Unpack[PushKeywords]
) -> Push:
    """Push the files and folders ``paths`` to ``host:port``; iterate the returned ``Push``
    for the results as they arrive (and ``cancel()`` it to stop). The keyword arguments are
    ``Push``'s: ``associations``, ``retries``, ``proposal``, ``connection`` or its fields
    (``calling_ae``, ``called_ae``, ``engine``, ``tls``...) and the others."""
    return Push(paths, host, port, **options)


def push(
    paths: Iterable[PathLike], host: str, port: int, **options: Unpack[PushKeywords]
) -> list[Result]:
    """Push the files and folders ``paths`` to ``host:port``; return one result per input
    file, once all are done. The keyword arguments are ``Push``'s: ``associations``,
    ``retries``, ``proposal``, ``connection`` or its fields (``calling_ae``, ``called_ae``,
    ``engine``, ``tls``...) and the others."""
    return list(Push(paths, host, port, **options))


def echo(
    host: str,
    port: int,
    *,
    connection: ConnectionOptions | None = None,
    **options: Unpack[ConnectionKeywords],
) -> int:
    """C-ECHO ``host:port`` on a fresh association; return the status (0 is success).

    ``connection`` (:class:`~fastpush.ConnectionOptions`) says how to connect; its fields may
    also be given as keyword arguments (``calling_ae``, ``called_ae``, ``engine``, timeouts,
    ``tls``, ``identity``), which replace those of ``connection``. Raises ``OSError`` when the
    peer cannot be reached and a ``FastpushError`` when the association fails."""
    contexts = [(VERIFICATION, (EXPLICIT_VR_LE, IMPLICIT_VR_LE))]
    with Association(host, port, contexts, connection=connection_options(connection, options)) as a:
        return a.echo()


def resolved(path: str | os.PathLike[str]) -> str:
    """How reports record and match paths: absolute, symlinks resolved, so that a resume from
    another working directory still matches."""
    return os.path.realpath(path)
