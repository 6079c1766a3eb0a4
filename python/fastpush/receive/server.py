"""A storage SCP: :class:`StorageServer` accepts associations and receives C-STORE requests.

Python listens, negotiates (``negotiation``), checks identities and the association limit, and
answers each C-STORE / C-ECHO with a status built by ``dimse``; the Rust core
(``_core.ServerTransport``) runs the P-DATA-TF loop of each association with the GIL released,
streaming every dataset to a file (``storage``), memory or nowhere. One thread per association.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import itertools
import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .association import serve_association
from .commit import Commitment
from .negotiation import AcceptPolicy, known_transfer_syntaxes, storage_sop_classes
from .received import CutThrough, IdentityCheck, StoreGate, StoreHandler
from .storage import Layout, Storage

if TYPE_CHECKING:
    from .._core import ServerTlsConfig, ServerTransport
    from ..transport.tls import TLSOptions

log = logging.getLogger(__name__)

# accept() failing for want of descriptors or memory: the pending connection waits in the
# backlog until connections close, so back off briefly and try again; never fatal.
_STARVED = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
# A connection reset before accept() got to it: nothing to do but take the next one.
_GONE = frozenset({errno.ECONNABORTED, errno.EPROTO})
_BACKOFF = 0.1


@dataclass
class Stats:
    """Running totals, for progress lines (read without locking: approximate mid-run)."""

    associations: int = 0
    active: int = 0
    rejected: int = 0
    files: int = 0
    failed: int = 0
    bytes: int = 0
    connections: int = 0
    """TCP connections open (accepted, not yet closed)."""
    refused_connections: int = 0
    """TCP connections closed at once because ``max_connections`` were open."""


def _server_tls(tls: TLSOptions) -> ServerTlsConfig:
    from .._core import ServerTlsConfig

    if tls.cert_file is None or tls.key_file is None:
        raise ValueError("a TLS server needs a certificate file and a key file")
    return ServerTlsConfig(tls.cert_file, tls.key_file, ca_file=tls.ca_file)


class StorageServer:
    """A storage SCP on ``host:port`` (port 0 picks a free one: read ``.port``), answering as
    ``ae_title`` (the called AE title it accepts when ``accept`` checks it).

    Where datasets go: with ``directory``, each is written as a Part-10 file (like ``storescp
    +B``: the received bytes untouched after a file meta header) under a temporary name and
    renamed when complete, named ``<modality>.<SOP Instance UID>`` (``unique_filenames``: never
    overwrite, add ``.1``, ``.2``...) in the folder ``layout`` says; ``fsync`` answers success only
    once the file and its folder are durable (``named_by_handler``: the file's data only, and it
    stays at its temporary name for ``on_store``, which links it under names of its own in
    folders it fsyncs itself and removes that name, as the router does). Without
    ``directory``, ``on_store`` gets the bytes in memory; with neither, datasets are received
    and dropped (a benchmark sink).

    ``on_store(received)`` runs in the association's thread for each dataset and returns the
    status to answer (None: success). An exception answers ``0xC000`` (the reason is logged) and
    the association goes on; it must be thread-safe when several associations run. A dataset
    that cannot be written (full disk, unwritable folder) is answered ``0xA700`` without calling
    ``on_store``, and nothing of it is left.

    ``before_store(sop_class_uid, sop_instance_uid, calling_ae)`` runs before a dataset is
    received: returning a status (e.g. ``0xA700`` when the disk is full) answers it without
    writing anything; None receives it as usual.

    ``accept`` (:class:`AcceptPolicy`) decides what is negotiated; ``identity_check`` vets user
    identities; above ``max_associations`` running associations a request is rejected
    (transient, "local limit exceeded"). ``timeout`` bounds every wait for the peer, counted by
    whole PDUs so a peer trickling bytes cannot stretch it: a PDU must be in whole within
    ``timeout`` of its first byte, and an association idle between PDUs for ``timeout`` is
    aborted. ``acse_timeout`` is ARTIM (PS3.8): the A-ASSOCIATE-RQ must be in whole within it of
    the connection's accept (TLS handshake included), else the connection is closed.

    ``max_connections`` caps the open TCP connections, from accept to close, negotiated or not
    (default ``2 * max_associations + 8``: room for every association plus as many still
    negotiating or refused); beyond it a new connection is closed at once, before any thread or
    buffer is spent on it. ``accept()`` failing for want of descriptors or memory (EMFILE,
    ENFILE, ENOBUFS, ENOMEM) is logged once and retried after a short pause.

    ``dataset_check``: check each dataset's header carries the command's SOP Class/Instance
    UIDs; False keeps the lenient behaviour for senders known to send mismatched meta.

    ``tls``: DICOM TLS (rustls, TLS 1.2/1.3) with ``TLSOptions(cert_file=..., key_file=...)``,
    our certificate chain and key (PEM); with ``ca_file`` too, clients must present a
    certificate signed by one of those CAs. A bad file raises ``TLSError`` here; a client whose
    handshake fails costs only its own connection.

    ``commitment`` (:class:`~fastpush.receive.commit.Commitment`) makes it a Storage Commitment
    SCP: an N-ACTION is answered with a report of the instances it stored (or its
    ``on_commit`` hook's verdict), sent on the same association or, once that ended, by its
    ``send_report``.

    ``cut_through`` (:class:`~fastpush.receive.received.CutThrough`) is told of each dataset
    written to a file once it passed its ``threshold`` bytes, while it still arrives (a router
    forwards it meanwhile), and of the status it is answered with.

    Use as a context manager (serves in a background thread) or call :meth:`serve_forever`;
    :meth:`shutdown` stops accepting and lets running associations finish. Thread-safe.
    """

    def __init__(
        self,
        host: str = "",
        port: int = 11112,
        *,
        ae_title: str = "FASTPUSH",
        directory: str | Path | None = None,
        on_store: StoreHandler | None = None,
        accept: AcceptPolicy | None = None,
        max_associations: int = 64,
        tls: TLSOptions | None = None,
        identity_check: IdentityCheck | None = None,
        layout: Layout | str = Layout.FLAT,
        unique_filenames: bool = False,
        fsync: bool = False,
        timeout: float | None = 60.0,
        before_store: StoreGate | None = None,
        dataset_check: bool = True,
        max_connections: int | None = None,
        acse_timeout: float | None = 30.0,
        commitment: Commitment | None = None,
        named_by_handler: bool = False,
        cut_through: CutThrough | None = None,
    ) -> None:
        from ..wire import pdu

        pdu.encode_ae_title(ae_title)  # ValueError now rather than at the first association
        if max_associations < 1:
            raise ValueError(f"max_associations must be at least 1, not {max_associations}")
        if named_by_handler and on_store is None:
            raise ValueError("named_by_handler needs an on_store to name the files")
        if cut_through is not None and directory is None:
            raise ValueError("cut_through needs a directory: datasets are forwarded from files")
        if max_connections is None:
            max_connections = 2 * max_associations + 8
        if max_connections < 1:
            raise ValueError(f"max_connections must be at least 1, not {max_connections}")
        self.tls_config = None if tls is None else _server_tls(tls)
        self.ae_title = ae_title
        self.on_store = on_store
        self.before_store = before_store
        self.cut_through = cut_through
        self.accept = accept if accept is not None else AcceptPolicy()
        self.commitment = commitment
        if commitment is not None and not self.accept.commitment:
            self.accept = dataclasses.replace(self.accept, commitment=True)
        self.max_associations = max_associations
        self.max_connections = max_connections
        self.acse_timeout = acse_timeout
        self.identity_check = identity_check
        self.timeout = timeout
        self.dataset_check = dataset_check
        self.storage = (
            None
            if directory is None
            else Storage(
                Path(directory),
                layout=Layout(layout),
                unique_filenames=unique_filenames,
                fsync=fsync,
                named_by_handler=named_by_handler,
            )
        )
        # The UID tables the first association would load (pydicom's dictionary): at start-up,
        # not in the middle of a sender's first request.
        storage_sop_classes()
        known_transfer_syntaxes()
        self.stats = Stats()
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._threads: set[threading.Thread] = set()
        self._connections: set[ServerTransport] = set()
        self._running: set[int] = set()
        self._accepted = threading.local()
        self._crowded = False
        self._stopping = threading.Event()
        self._serving: threading.Thread | None = None
        self._listener = socket.create_server((host, port), backlog=128)
        self.host, self.port = self._listener.getsockname()[:2]

    def __enter__(self) -> StorageServer:
        self._serving = threading.Thread(
            target=self.serve_forever, name=f"fastpush-serve-{self.port}", daemon=True
        )
        self._serving.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    def serve_forever(self) -> None:
        """Accept associations until :meth:`shutdown` (each served in its own thread)."""
        log.info("Listening on %s:%s as %s", self.host, self.port, self.ae_title)
        starved = False
        while not self._stopping.is_set():
            try:
                conn, address = self._listener.accept()
            except OSError as exc:
                if self._stopping.is_set():
                    return
                if exc.errno in _GONE:
                    continue
                if exc.errno not in _STARVED:
                    raise
                if not starved:
                    log.error(
                        "Cannot accept connections: %s (%d open); retrying until some close",
                        exc.strerror or exc,
                        self.stats.connections,
                    )
                    starved = True
                self._stopping.wait(_BACKOFF)
                continue
            if starved:
                log.warning("Accepting connections again")
                starved = False
            self._start(conn, address)

    def _start(self, conn: socket.socket, address: tuple[str, int]) -> None:
        accepted = time.monotonic()
        with self._lock:
            full = self.stats.connections >= self.max_connections
            if full:
                self.stats.refused_connections += 1
                crowded, self._crowded = self._crowded, True
            else:
                self.stats.connections += 1
                self._crowded = False
        if full:
            conn.close()
            if not crowded:
                log.warning(
                    "Closing new connections: %d open (--max-connections)", self.max_connections
                )
            return
        thread = threading.Thread(
            target=self._run,
            args=(serve_association, conn, address, next(self._ids), accepted),
            name=f"fastpush-scp-{address[0]}:{address[1]}",
            daemon=True,
        )
        with self._lock:
            self._threads.add(thread)
        try:
            thread.start()
        except RuntimeError as exc:  # no thread to be had (memory, a cgroup's task limit)
            log.error("Connection from %s:%d dropped: %s", address[0], address[1], exc)
            conn.close()
            with self._lock:
                self._threads.discard(thread)
                self.stats.connections -= 1

    def _run(
        self,
        serve: Callable[[StorageServer, socket.socket, tuple[str, int], int], None],
        conn: socket.socket,
        address: tuple[str, int],
        association_id: int,
        accepted: float,
    ) -> None:
        self._accepted.at = accepted
        try:
            serve(self, conn, address, association_id)
        except Exception:  # the thread's last resort: log it, never kill the server
            log.exception("association %d failed", association_id)
        finally:
            conn.close()  # detached by then: a no-op, unless serve failed before
            with self._lock:
                self._threads.discard(threading.current_thread())
                self.stats.connections -= 1

    def admit(self, association_id: int) -> bool:
        """Count one more running association, unless at the limit."""
        with self._lock:
            if len(self._running) >= self.max_associations:
                self.stats.rejected += 1
                return False
            self._running.add(association_id)
            self.stats.active = len(self._running)
            self.stats.associations += 1
            return True

    def leave(self, association_id: int) -> None:
        """The association no longer counts against the limit (idempotent)."""
        with self._lock:
            self._running.discard(association_id)
            self.stats.active = len(self._running)

    def track(self, connection: ServerTransport, running: bool) -> None:
        """Remember open connections, so an abortive shutdown can close them; a new one's
        ARTIM timer starts, counted from its accept."""
        if running:
            accepted = getattr(self._accepted, "at", None)
            if self.acse_timeout is None or accepted is None:
                connection.start_artim(self.acse_timeout)
            else:
                connection.start_artim(self.acse_timeout - (time.monotonic() - accepted))
        with self._lock:
            if running:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)

    def count(self, size: int, stored: bool) -> None:
        with self._lock:
            self.stats.bytes += size
            if stored:
                self.stats.files += 1
            else:
                self.stats.failed += 1

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def shutdown(self, *, abort: bool = False, timeout: float | None = None) -> None:
        """Stop accepting; wait for running associations to end (``abort``: cut them now).

        Idempotent and callable from any thread (not from ``on_store``)."""
        self._stopping.set()
        # shutdown() wakes an accept() blocked in another thread; close() alone does not.
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        if abort:
            with self._lock:
                connections = list(self._connections)
            for connection in connections:
                connection.close()
        if self._serving is not None and self._serving is not threading.current_thread():
            self._serving.join(timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._lock:
                threads = [t for t in self._threads if t is not threading.current_thread()]
            if not threads:
                return
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            threads[0].join(remaining)
            if deadline is not None and time.monotonic() >= deadline:
                return
