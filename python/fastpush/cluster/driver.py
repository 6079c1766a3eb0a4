"""Pushing from a Dask cluster: the same push, spread over many machines, one report.

``DistributedPush`` lists the inputs in tasks (a task per folder named, then one per subfolder),
cuts the files into batches by count and size (a folder's files kept together when the folder
fits in a batch: a study usually lives in one), and runs one task per batch; each task runs a
``Push`` of its own with ``associations_per_worker`` associations and streams its results back
as Dask events, a few dozen at a time (``distributed_worker``). The driver merges them into one
iterator of ``Result``s: every input path gets exactly one.

Nothing is lost when a worker dies: Dask reruns its batch elsewhere, and the rerun sends only the
files the driver has no result for (the driver records them in the scheduler's metadata as they
arrive), marking those ``maybe_duplicate``. Should a batch fail for good, its files still get a
result, ``failed`` with the reason. ``max_associations`` bounds the associations open at once
across the cluster (a Dask ``Semaphore``). ``cancel()`` stops the cluster's work as ``Push.cancel``
stops a local push.

Needs the ``dask`` extra (``pip install 'fastpush[dask]'``); the files must be reachable by the
same paths from the driver and every worker (shared storage).
"""

from __future__ import annotations

import logging
import math
import os
import queue
import signal
import threading
import uuid
from collections import deque
from collections.abc import Collection, Iterable, Iterator, Mapping
from itertools import groupby
from types import TracebackType
from typing import TYPE_CHECKING, Any

from ..send.failure import Failure
from ..send.push import PathLike
from ..send.results import Outcome, Result
from .worker import (
    BatchKeywords,
    BatchOptions,
    BatchSpec,
    Listed,
    WireResult,
    cancel_here,
    forget_here,
    from_wire,
    list_folder,
    push_batch,
    sized,
    walk_folder,
)

if TYPE_CHECKING:
    from distributed import Client, Future, LocalCluster
    from typing_extensions import Unpack

log = logging.getLogger(__name__)

DEFAULT_BATCH_BYTES = 1 << 30
MAX_BATCH_FILES = 500
MIN_BATCH_FILES = 16
_BATCHES_PER_WORKER = 4  # enough for the last batches not to leave workers idle long


Sized = tuple[str, int]
"""(path, size in bytes)"""


class DistributedPush:
    """A push of files and folders to ``host:port`` from the workers of a Dask cluster; an
    iterator of results, like ``Push``.

    ``client`` is a ``distributed.Client``, a scheduler address, or None for a ``LocalCluster``
    of ``workers`` processes (closed at the end). Each batch of files is pushed by one task with
    ``associations_per_worker`` associations; ``max_associations`` caps them across the cluster.
    Batches hold at most ``batch_files`` files (by default as many as spread the files over
    about four batches per worker, between 16 and 500) and ``batch_bytes`` bytes. ``recursive``
    and ``skip`` are ``Push``'s. The other keyword arguments (:class:`BatchKeywords`) are
    ``Push``'s too (``retries``, ``proposal``, ``connection`` or its fields: ``called_ae``,
    ``tls``...), except ``associations`` (here per worker) and ``on_event`` (events stay on
    the workers).

    Use it as a context manager, or call ``close()``, when not iterating it to its end.
    """

    def __init__(
        self,
        paths: Iterable[PathLike],
        host: str,
        port: int,
        *,
        client: Client | str | None = None,
        workers: int = 2,
        associations_per_worker: int = 1,
        max_associations: int | None = None,
        batch_files: int | None = None,
        batch_bytes: int = DEFAULT_BATCH_BYTES,
        recursive: bool = True,
        skip: Collection[str] = (),
        **options: Unpack[BatchKeywords],
    ) -> None:
        given: Mapping[str, object] = options
        for wrong, instead in (("associations", "associations_per_worker"), ("on_event", None)):
            if wrong in given:
                hint = f": use {instead}" if instead else ": events stay on the workers"
                raise TypeError(f"a cluster push takes no {wrong}{hint}")
        if associations_per_worker < 1 or (max_associations is not None and max_associations < 1):
            raise ValueError("associations_per_worker and max_associations must be at least 1")
        self._id = uuid.uuid4().hex
        self._owns_client = client is None or isinstance(client, str)
        self._client, self._cluster = _connect(client, workers)
        self._spec = BatchSpec(
            self._id,
            host,
            port,
            BatchOptions(associations=associations_per_worker, **options),
            max_associations,
        )
        self._ready: deque[Result] = deque()
        self._inbox: queue.Queue[list[Any]] = queue.Queue()
        self._open: dict[int, _Batch] = {}
        self._futures: list[Future[Any]] = []
        self._started = self._closed = False
        self._semaphore: Any = None
        try:
            listed = self._list(paths, recursive, resolve=bool(skip))
            files = [(path, size) for path, size, real in listed if not skip or real not in skip]
            self.resumed = len(listed) - len(files)
            self.total_files = len(files)
            self.total_bytes = sum(size for _, size in files)
            workers_now = max(1, len(self._client.nthreads()))
            per_batch = batch_files or _batch_files(len(files), workers_now)
            self._batches = batches(files, per_batch, batch_bytes)
        except BaseException:
            self.close()
            raise

    # -- the iterator ----------------------------------------------------------------------

    def __iter__(self) -> Iterator[Result]:
        return self

    def __next__(self) -> Result:
        # Not a generator, as Push: a KeyboardInterrupt while waiting leaves it usable.
        if not self._started:
            self._start()
        while not self._ready:
            if not self._open:
                self.close()
                raise StopIteration
            self._handle(self._inbox.get())
        return self._ready.popleft()

    def cancel(self, abort: bool = False) -> None:
        """Send nothing new anywhere: batches running on the workers are cancelled as a local
        ``Push`` is (``abort`` cuts their connections at once), batches not started yet send
        nothing; their files are reported not sent. Callable from any thread."""
        try:
            # Batches that start later, on a worker that joins later too, read this first.
            for index in list(self._open):
                self._client.set_metadata([self._spec.topic, str(index), "cancelled"], True)
            self._client.run(cancel_here, self._id, abort)
        except Exception as exc:  # a worker gone meanwhile: its batches end with a reason
            log.warning("Could not reach every worker to cancel: %s", exc)

    def close(self) -> None:
        """Stop what still runs and free the cluster's state of this push; closes the client
        and cluster it started itself."""
        if self._closed:
            return
        self._closed = True
        client = self._client
        try:
            if self._futures:
                client.cancel(self._futures)
            if self._started:
                client.unsubscribe_topic(self._spec.topic)
                client.set_metadata([self._spec.topic], None)
                client.run(forget_here, self._id)
            if self._semaphore is not None:
                self._semaphore.close()
        finally:
            if self._owns_client:
                client.close()
            if self._cluster is not None:
                self._cluster.close()

    def __enter__(self) -> DistributedPush:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- listing -----------------------------------------------------------------------------

    def _list(self, paths: Iterable[PathLike], recursive: bool, resolve: bool) -> list[Listed]:
        """Every file the inputs name or hold, with its size: folders listed by tasks."""
        client = self._client
        found: list[Listed] = []
        folders: list[str] = []
        for path in paths:
            name = os.fspath(path)
            if os.path.isdir(name):
                folders.append(name)
            else:
                found.extend(sized([name], resolve))
        tops = client.map(list_folder, folders, recursive=recursive, resolve=resolve, pure=False)
        walks: list[Future[Any]] = []
        for files, subfolders in client.gather(tops):
            found.extend(files)
            walks.extend(client.map(walk_folder, subfolders, resolve=resolve, pure=False))
        for files in client.gather(walks):
            found.extend(files)
        return found

    # -- pushing -----------------------------------------------------------------------------

    def _start(self) -> None:
        self._started = True
        client = self._client
        if self._spec.max_associations is not None:
            from distributed import Semaphore

            self._semaphore = Semaphore(self._spec.max_associations, name=self._spec.topic)
        client.subscribe_topic(self._spec.topic, self._on_event)
        for index, files in enumerate(self._batches):
            paths = [path for path, _ in files]
            self._open[index] = _Batch(paths)
            future = client.submit(
                push_batch,
                self._spec,
                index,
                paths,
                key=f"fastpush-batch-{self._id}-{index}",
                pure=False,
            )
            future.add_done_callback(lambda f, index=index: self._inbox.put(["done", index, f]))
            self._futures.append(future)

    def _on_event(self, event: tuple[float, list[Any]]) -> None:
        self._inbox.put(event[1])

    def _handle(self, message: list[Any]) -> None:
        kind, index = message[0], message[1]
        batch = self._open.get(index)
        if batch is None:
            log.error("Results of a finished batch arrived late: %s", message)
            return
        if kind == "batch":
            self._deliver(batch, message[2])
            self._client.set_metadata([self._spec.topic, str(index), "done"], sorted(batch.done))
            return
        future: Future[Any] = message[2]
        if future.status == "finished":
            self._deliver(batch, future.result())
            reason = "no result came back for it from its batch"
        else:
            error = future.exception() if future.status == "error" else "cancelled"
            reason = f"its batch failed on the cluster: {error!r}"
        # Whatever became of them there, these files get their one result: they may have been
        # sent before the batch was lost.
        for number, path in enumerate(batch.paths):
            if number not in batch.done:
                lost = Result(path, Outcome.FAILED, maybe_duplicate=True)
                self._ready.append(lost.fail(Failure.TRANSFER, reason))
        del self._open[index]
        future.release()

    def _deliver(self, batch: _Batch, wired: list[WireResult]) -> None:
        for data in wired:
            result = from_wire(data)
            number = batch.numbers.get(result.path or "")
            if number is not None:
                if number in batch.done:
                    log.warning("A second result for %s was dropped: %s", result.path, result)
                    continue
                batch.done.add(number)
            self._ready.append(result)


class _Batch:
    """The driver's record of one batch: its files and which of them have a result."""

    def __init__(self, paths: list[str]) -> None:
        self.paths = paths
        self.numbers = {path: number for number, path in enumerate(paths)}
        self.done: set[int] = set()


def batches(files: list[Sized], max_files: int, max_bytes: int) -> list[list[Sized]]:
    """``files`` cut into batches of at most ``max_files`` files and ``max_bytes`` bytes (a
    file larger than that alone), a folder's files together when the folder fits in one."""
    done: list[list[Sized]] = []
    current: list[Sized] = []
    size = 0
    ordered = sorted(files, key=lambda f: (os.path.dirname(f[0]), f[0]))
    for _, group in groupby(ordered, key=lambda f: os.path.dirname(f[0])):
        folder = list(group)
        folder_bytes = sum(s for _, s in folder)
        fits_alone = len(folder) <= max_files and folder_bytes <= max_bytes
        if (
            current
            and fits_alone
            and (len(current) + len(folder) > max_files or size + folder_bytes > max_bytes)
        ):
            done.append(current)
            current, size = [], 0
        for file in folder:
            if current and (len(current) >= max_files or size + file[1] > max_bytes):
                done.append(current)
                current, size = [], 0
            current.append(file)
            size += file[1]
    if current:
        done.append(current)
    return done


def _batch_files(total: int, workers: int) -> int:
    wanted = math.ceil(total / (workers * _BATCHES_PER_WORKER)) if total else MIN_BATCH_FILES
    return max(MIN_BATCH_FILES, min(MAX_BATCH_FILES, wanted))


def _connect(client: Client | str | None, workers: int) -> tuple[Client, LocalCluster | None]:
    try:
        from distributed import Client, LocalCluster
    except ImportError as exc:
        raise ImportError("a cluster push needs Dask: pip install 'fastpush[dask]'") from exc
    if isinstance(client, str):
        return Client(client), None
    if client is not None:
        return client, None
    # Workers that ignore SIGINT: a Ctrl-C at the terminal reaches the whole process group,
    # and must cancel the push (the driver's business), not kill the cluster under it.
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if main else None
    try:
        cluster = LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
        )
    finally:
        if main:
            signal.signal(signal.SIGINT, previous)
    return Client(cluster), cluster


class ClusterKeywords(BatchKeywords, total=False):
    """The keyword arguments of ``DistributedPush`` (and so of ``push`` and ``iter_push``)."""

    client: Client | str | None
    workers: int
    associations_per_worker: int
    max_associations: int | None
    batch_files: int | None
    batch_bytes: int
    recursive: bool
    skip: Collection[str]


def iter_push(
    paths: Iterable[PathLike], host: str, port: int, **options: Unpack[ClusterKeywords]
) -> DistributedPush:
    """Push the files and folders ``paths`` to ``host:port`` from a Dask cluster; iterate for
    results as they arrive. The keyword arguments are ``DistributedPush``'s."""
    return DistributedPush(paths, host, port, **options)


def push(
    paths: Iterable[PathLike], host: str, port: int, **options: Unpack[ClusterKeywords]
) -> list[Result]:
    """Push the files and folders ``paths`` to ``host:port`` from a Dask cluster; one result
    per input file. The keyword arguments are ``DistributedPush``'s."""
    with DistributedPush(paths, host, port, **options) as pushing:
        return list(pushing)
