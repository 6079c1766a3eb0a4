"""A small storage SCP for ``python -m fastpush demo``: accepts associations on loopback,
answers C-ECHO and C-STORE, and keeps what it received.

It is the embedded default target, not an interop oracle: tests prove interop against DCMTK,
Orthanc and pynetdicom. It speaks through the pure-Python data path.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from dataclasses import dataclass
from pathlib import Path

from . import dimse, pdu
from .errors import ProtocolError
from .pytransport import PyTransport
from .uids import EXPLICIT_VR_LE, IMPLEMENTATION_CLASS_UID, IMPLICIT_VR_LE

log = logging.getLogger(__name__)

_RECV_LIMIT = 1 << 20


@dataclass(frozen=True)
class Received:
    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax: str
    length: int


class StorageSCP:
    """A threaded storage SCP on ``host:port`` (port 0 picks a free one); a context manager.

    Accepts any storage SOP class in Explicit or Implicit VR Little Endian, or in whichever
    syntax is proposed first when ``any_syntax`` is true. Writes each dataset as a Part-10 file
    under ``directory`` when one is given.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        ae_title: str = "FASTPUSH-SCP",
        directory: Path | None = None,
        any_syntax: bool = True,
        max_pdu: int = 65536,
    ) -> None:
        self.ae_title = ae_title
        self.directory = directory
        self.any_syntax = any_syntax
        self.max_pdu = max_pdu
        self.received: list[Received] = []
        self._lock = threading.Lock()
        self._listener = socket.create_server((host, port))
        self.host, self.port = self._listener.getsockname()[:2]
        self._thread = threading.Thread(target=self._accept_loop, name="fastpush-scp", daemon=True)
        self._stopping = threading.Event()

    def __enter__(self) -> StorageSCP:
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
        command = bytearray()
        dataset = bytearray()
        decoded: dimse.Command | None = None
        while True:
            pdu_type, body = transport.recv_pdu(_RECV_LIMIT + self.max_pdu)
            if pdu_type == pdu.RELEASE_RQ:
                transport.send_pdu(pdu.encode_release_rp())
                return
            if pdu_type != pdu.P_DATA_TF:
                return
            for pdv in pdu.decode_pdvs(body):
                if pdv.context_id not in syntaxes:
                    transport.send_pdu(pdu.encode_abort(2, 6))
                    return
                if decoded is None:
                    command += pdv.data
                    if not pdv.is_last:
                        continue
                    decoded = dimse.decode(bytes(command))
                    command.clear()
                    if decoded.has_dataset:
                        continue
                else:
                    self._dataset_fragment(transport, decoded, len(dataset), pdv.is_last)
                    dataset += pdv.data
                    if not pdv.is_last:
                        continue
                reply = self._handle(decoded, syntaxes[pdv.context_id], bytes(dataset))
                transport.send_message(pdv.context_id, reply, None, peer_max)
                decoded = None
                dataset.clear()

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
        if self.directory is not None:
            self._write(received, dataset)
        with self._lock:
            self.received.append(received)
        return dimse.response(
            dimse.C_STORE_RSP, message_id, 0x0000, command.sop_class_uid, command.sop_instance_uid
        )

    def _write(self, received: Received, dataset: bytes) -> None:
        from pydicom.dataset import FileMetaDataset
        from pydicom.filebase import DicomBytesIO
        from pydicom.filewriter import write_file_meta_info
        from pydicom.uid import UID

        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = UID(received.sop_class_uid)
        meta.MediaStorageSOPInstanceUID = UID(received.sop_instance_uid)
        meta.TransferSyntaxUID = UID(received.transfer_syntax)
        meta.ImplementationClassUID = UID(IMPLEMENTATION_CLASS_UID)
        buffer = DicomBytesIO()
        buffer.write(b"\0" * 128 + b"DICM")
        write_file_meta_info(buffer, meta, enforce_standard=True)
        assert self.directory is not None
        target = self.directory / f"{received.sop_instance_uid}.dcm"
        target.write_bytes(buffer.getvalue() + dataset)
