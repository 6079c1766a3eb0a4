"""A storage SCP with scripted faults, for fault injection only (interop is proven against
DCMTK, Orthanc and pynetdicom; fastpush's own SCP is ``fastpush.StorageServer``). A small
pure-Python SCP with faults at its seams."""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from collections.abc import Collection
from dataclasses import dataclass

from fastpush.errors import ProtocolError
from fastpush.transport.pure import PyTransport
from fastpush.uids import EXPLICIT_VR_LE, IMPLEMENTATION_CLASS_UID, IMPLICIT_VR_LE
from fastpush.wire import dimse, pdu
from fastpush.wire.reassembly import Message, Reassembler

log = logging.getLogger(__name__)

_RECV_LIMIT = 1 << 20


@dataclass(frozen=True)
class Received:
    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax: str
    length: int


class ScriptedSCP:
    """A threaded storage SCP on ``host:port`` (port 0 picks a free one); a context manager.

    Pure Python (``PyTransport``) with seams a subclass scripts faults at. Accepts any SOP
    class in Explicit or Implicit VR Little Endian, or in whichever syntax is proposed first
    when ``any_syntax`` is true, and keeps what it received in memory.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        ae_title: str = "FASTPUSH-SCP",
        any_syntax: bool = True,
        max_pdu: int = 65536,
    ) -> None:
        self.ae_title = ae_title
        self.any_syntax = any_syntax
        self.max_pdu = max_pdu
        self.received: list[Received] = []
        self._lock = threading.Lock()
        self._listener = socket.create_server((host, port))
        self.host, self.port = self._listener.getsockname()[:2]
        self._thread = threading.Thread(target=self._accept_loop, name="fastpush-scp", daemon=True)
        self._stopping = threading.Event()

    def __enter__(self) -> ScriptedSCP:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._stopping.set()
        # shutdown() wakes the accept() blocked in the server thread.
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        transport = PyTransport(conn, timeout=60.0)
        try:
            self._associate_and_serve(transport)
        except (OSError, ProtocolError) as exc:
            log.debug("SCP connection ended: %s", exc)
        finally:
            transport.close()

    def _associate_and_serve(self, transport: PyTransport) -> None:
        pdu_type, body = transport.recv_pdu(_RECV_LIMIT)
        if pdu_type != pdu.ASSOCIATE_RQ:
            transport.send_pdu(pdu.encode_abort(2, 2))
            return
        rq = pdu.decode_associate_rq(body)
        results = []
        for pc in rq.contexts:
            syntax = next(
                (
                    s
                    for s in pc.transfer_syntaxes
                    if self.any_syntax or s in (EXPLICIT_VR_LE, IMPLICIT_VR_LE)
                ),
                "",
            )
            results.append(pdu.ContextResult(pc.context_id, 0 if syntax else 4, syntax))
        transport.send_pdu(
            pdu.encode_associate_ac(
                pdu.AssociateAC(
                    rq.called_ae,
                    rq.calling_ae,
                    tuple(results),
                    self.max_pdu,
                    IMPLEMENTATION_CLASS_UID,
                    "FASTPUSH_SCP",
                )
            )
        )
        syntaxes = {r.context_id: r.transfer_syntax for r in results if r.accepted}
        self._serve_messages(transport, syntaxes, rq.max_length)

    def _serve_messages(
        self, transport: PyTransport, syntaxes: dict[int, str], peer_max: int
    ) -> None:
        messages = Reassembler(syntaxes, keep_datasets=True)
        announced: Message | None = None
        while True:
            pdu_type, body = transport.recv_pdu(_RECV_LIMIT + self.max_pdu)
            if pdu_type == pdu.RELEASE_RQ:
                transport.send_pdu(pdu.encode_release_rp())
                return
            if pdu_type != pdu.P_DATA_TF:
                return
            arriving = messages.pending
            if arriving is not None and arriving.dataset_size:
                self._dataset_fragment(transport, arriving.command, arriving.dataset_size, False)
            try:
                done = messages.feed(body)
            except ProtocolError:
                transport.send_pdu(pdu.encode_abort(2, 6))
                return
            for message in done:
                dataset = message.dataset or b""
                if message.dataset is not None:
                    if message is not announced:  # the whole dataset came in one PDU
                        self._dataset_fragment(transport, message.command, 0, False)
                    self._dataset_fragment(transport, message.command, len(dataset), True)
                reply = self._handle(message.command, syntaxes[message.context_id], dataset)
                transport.send_message(message.context_id, reply, None, peer_max)
            if messages.pending is not None and messages.pending is not announced:
                announced = messages.pending
                self._dataset_fragment(transport, announced.command, 0, False)

    def _dataset_fragment(
        self, transport: PyTransport, command: dimse.Command, received: int, last: bool
    ) -> None:
        """Called before each dataset fragment is taken in: the seam for fault injection in
        tests (a subclass may abort or drop the connection here)."""

    def _handle(self, command: dimse.Command, syntax: str, dataset: bytes) -> bytes:
        message_id = command.message_id or 0
        if command.command_field == dimse.C_ECHO_RQ:
            return dimse.response(dimse.C_ECHO_RSP, message_id, 0x0000, command.sop_class_uid)
        if command.command_field != dimse.C_STORE_RQ:
            return dimse.response(
                command.command_field | 0x8000, message_id, 0x0211, command.sop_class_uid
            )
        received = Received(command.sop_class_uid, command.sop_instance_uid, syntax, len(dataset))
        with self._lock:
            self.received.append(received)
        return dimse.response(
            dimse.C_STORE_RSP, message_id, 0x0000, command.sop_class_uid, command.sop_instance_uid
        )


class FaultySCP(ScriptedSCP):
    """Faults by C-STORE request number (0-based, counting every attempt the SCP sees):

    - ``reject_transient``: reject the first N associations (rejected-transient, congestion);
    - ``abort_during``: send A-ABORT in the middle of those requests' datasets;
    - ``drop_during``: close the TCP connection in the middle of those datasets;
    - ``drop_before_response``: take the whole dataset, then close without answering.
    """

    def __init__(
        self,
        *,
        reject_transient: int = 0,
        abort_during: Collection[int] = (),
        drop_during: Collection[int] = (),
        drop_before_response: Collection[int] = (),
    ) -> None:
        super().__init__(ae_title="FAULTY")
        self.rejects_left = reject_transient
        self.abort_during = set(abort_during)
        self.drop_during = set(drop_during)
        self.drop_before_response = set(drop_before_response)
        self.requests: list[str] = []  # SOP Instance UID of every C-STORE begun
        self.unanswered: list[str] = []  # fully received, then the connection was dropped
        self._fault_lock = threading.Lock()

    def _associate_and_serve(self, transport: PyTransport) -> None:
        with self._fault_lock:
            reject = self.rejects_left > 0
            self.rejects_left -= reject
        if reject:
            transport.recv_pdu(1 << 20)
            transport.send_pdu(pdu.encode_associate_rj(pdu.AssociateRJ(2, 3, 1)))
            return
        super()._associate_and_serve(transport)

    def _dataset_fragment(
        self, transport: PyTransport, command: dimse.Command, received: int, last: bool
    ) -> None:
        with self._fault_lock:
            if received == 0:
                self.requests.append(command.sop_instance_uid)
            index = len(self.requests) - 1
        if index in self.abort_during and received > 0:
            transport.send_pdu(pdu.encode_abort(2, 0))
            raise ConnectionAbortedError("scripted A-ABORT")
        if index in self.drop_during and received > 0:
            raise ConnectionResetError("scripted drop")
        if index in self.drop_before_response and last:
            self.unanswered.append(command.sop_instance_uid)
            raise ConnectionResetError("scripted drop before the response")
