"""What runs on the Dask workers of a cluster push (``fastpush.cluster.driver`` is the driver).

Two kinds of task: listing a folder (the scan is spread too), and pushing a batch of files with
a ``Push`` of its own. A batch streams its results to the driver as Dask events on the push's
topic, a few dozen at a time, and returns the last few. Before it sends anything it reads, from
the scheduler's metadata, which of its files the driver already has a result for: a task that
Dask reruns after its worker died sends only the others, and marks them ``maybe_duplicate``
(the dead attempt may have stored them without the driver hearing of it).

Cancelling reaches the workers through ``Client.run(cancel_here, ...)``: the pushes running
there are cancelled like a local push, and batches that start afterwards send nothing.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ..dataset.scan import expand
from ..send.failure import Failure
from ..send.options import ConnectionKeywords, ConnectionOptions
from ..send.plan import Proposal
from ..send.push import Push
from ..send.results import Outcome, Result

Listed = tuple[str, int, str | None]
"""(path, size in bytes, resolved path or None): one file found by a listing task."""

WireResult = dict[str, Any]
"""A ``Result`` as plain data (msgpack-able: Dask events carry nothing else)."""

CANCELLED = "not sent: push cancelled"
_LEASE_WAIT = 1.0  # seconds between looks at the cancel flag while waiting for a lease


class BatchKeywords(ConnectionKeywords, total=False):
    """What a cluster push passes on to each batch's ``Push``: all of its keyword arguments
    but those the cluster sets itself (``associations``, ``recursive``, ``skip``, ``lease``,
    ``on_event``)."""

    retries: int
    backoff: float
    max_per_association: int | None
    proposal: Proposal
    give_up_after: float | None
    connection: ConnectionOptions | None


class BatchOptions(BatchKeywords, total=False):
    """``BatchKeywords`` and the associations of each batch."""

    associations: int


@dataclass(frozen=True)
class BatchSpec:
    """What every batch of one push shares: where to send, how, and how to report."""

    push_id: str
    host: str
    port: int
    options: BatchOptions
    """The keyword arguments of each batch's ``Push``."""
    max_associations: int | None = None
    flush_files: int = 32
    flush_seconds: float = 0.25

    @property
    def topic(self) -> str:
        return f"fastpush-{self.push_id}"


# -- listing ---------------------------------------------------------------------------------


def list_folder(folder: str, recursive: bool, resolve: bool) -> tuple[list[Listed], list[str]]:
    """The files directly in ``folder`` and, when ``recursive``, its subfolders (to be listed
    by tasks of their own). As ``scan.expand`` does, links to folders are neither files nor
    descended."""
    files: list[str] = []
    folders: list[str] = []
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                if recursive:
                    folders.append(entry.path)
            elif not entry.is_dir():
                files.append(entry.path)
    return sized(sorted(files), resolve), sorted(folders)


def walk_folder(folder: str, resolve: bool) -> list[Listed]:
    """Every file beneath ``folder``, as ``scan.expand`` finds them."""
    return sized(list(expand([folder], recursive=True)), resolve)


def sized(paths: list[str], resolve: bool) -> list[Listed]:
    """Each path with its size, and its resolved path when asked (to match ``--resume``)."""
    return [(path, _size(path), os.path.realpath(path) if resolve else None) for path in paths]


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:  # a dangling link or a file gone already: its push says why
        return 0


# -- results on the wire ---------------------------------------------------------------------


def to_wire(result: Result) -> WireResult:
    return result.to_json()


def from_wire(data: WireResult) -> Result:
    fields = dict(data)
    fields["outcome"] = Outcome(fields["outcome"])
    failure = fields.get("failure")
    fields["failure"] = None if failure is None else Failure(failure)
    return Result(**fields)


def cancelled_result(path: str) -> Result:
    return Result(path, Outcome.SKIPPED).fail(Failure.CANCELLED, CANCELLED, outcome=Outcome.SKIPPED)


# -- pushing a batch -------------------------------------------------------------------------


@dataclass(eq=False)
class _Local:
    """This worker's share of one push: its running batches, and whether it was cancelled."""

    cancelled: threading.Event = field(default_factory=threading.Event)
    abort: bool = False
    pushes: set[Push] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)


_LOCAL: dict[str, _Local] = {}
_LOCAL_LOCK = threading.Lock()


def _local(push_id: str) -> _Local:
    with _LOCAL_LOCK:
        return _LOCAL.setdefault(push_id, _Local())


def cancel_here(push_id: str, abort: bool) -> None:
    """Run on every worker by ``Client.run``: cancel this worker's batches of the push."""
    local = _local(push_id)
    with local.lock:
        local.abort |= abort
        local.cancelled.set()
        running = list(local.pushes)
    for push in running:
        push.cancel(abort=abort)


def forget_here(push_id: str) -> None:
    """Run on every worker at the end of a push: drop what this worker kept of it."""
    with _LOCAL_LOCK:
        _LOCAL.pop(push_id, None)


def push_batch(spec: BatchSpec, index: int, paths: list[str]) -> list[WireResult]:
    """Push batch ``index`` of ``paths``: stream results as events, return the rest."""
    from distributed import get_client, get_worker

    local = _local(spec.push_id)
    client = get_client()
    key = [spec.topic, str(index)]
    state = client.get_metadata(key, default=None) or {}
    if local.cancelled.is_set() or state.get("cancelled"):
        return [to_wire(cancelled_result(path)) for path in paths]
    done = set(state.get("done", ()))
    rerun = bool(state.get("started"))
    client.set_metadata([*key, "started"], True)
    todo = [path for number, path in enumerate(paths) if number not in done]
    if not todo:
        return []
    lease = None if spec.max_associations is None else _lease_factory(spec, local)
    push = Push(todo, spec.host, spec.port, recursive=False, lease=lease, **spec.options)
    with local.lock:
        local.pushes.add(push)
        if local.cancelled.is_set():
            push.cancel(abort=local.abort)
    worker = get_worker()
    pending: list[WireResult] = []
    flushed = time.monotonic()
    try:
        for result in push:
            if rerun:
                _mark_rerun(result)
            pending.append(to_wire(result))
            now = time.monotonic()
            if len(pending) >= spec.flush_files or now - flushed >= spec.flush_seconds:
                worker.log_event(spec.topic, ["batch", index, pending])
                pending, flushed = [], now
    except BaseException:
        if pending:  # what is known must reach the driver: its rerun will not send these
            worker.log_event(spec.topic, ["batch", index, pending])
        raise
    finally:
        with local.lock:
            local.pushes.discard(push)
    return pending


def _mark_rerun(result: Result) -> None:
    result.maybe_duplicate = True
    result.notes.append(
        "sent by a rerun of its batch after a worker was lost: the peer may hold it already"
    )


def _lease_factory(spec: BatchSpec, local: _Local) -> Any:
    """One lease of the push's cluster-wide semaphore per association (``--max-associations``);
    waiting for one gives up when the push is cancelled."""
    from distributed import Semaphore

    semaphore = Semaphore(max_leases=spec.max_associations, name=spec.topic)
    semaphore.loop  # noqa: B018 - binds it to this worker from the task's thread

    @contextlib.contextmanager
    def lease() -> Iterator[None]:
        while not semaphore.acquire(timeout=_LEASE_WAIT):
            if local.cancelled.is_set():
                yield  # the client sees the cancel and opens nothing
                return
        try:
            yield
        finally:
            semaphore.release()

    return lease
