"""A scripted storage SCU for fault injection against fastpush's StorageServer: it writes
exactly the bytes a test tells it to (well-formed PDUs built with fastpush's encoders, or
garbage), stops where told, and reads what the server answers. Interop is proven with real
senders elsewhere."""

from __future__ import annotations

import socket
import struct

from fastpush import _core
from fastpush.uids import EXPLICIT_VR_LE, IMPLEMENTATION_CLASS_UID, VERIFICATION
from fastpush.wire import dimse, pdu

CT = "1.2.840.10008.5.1.4.1.1.2"
_HEADER = struct.Struct(">BxI")


def _element(group: int, elem: int, vr: bytes, value: bytes) -> bytes:
    """One Explicit VR Little Endian element; ``value`` padded to even length as its VR pads."""
    if len(value) % 2:
        value += b"\0" if vr in (b"UI", b"OB") else b" "
    if vr in (b"OB", b"OW", b"SQ", b"UN", b"UT"):
        return struct.pack("<HH2s2xI", group, elem, vr, len(value)) + value
    return struct.pack("<HH2sH", group, elem, vr, len(value)) + value


def dataset(
    sop_instance_uid: str,
    *,
    sop_class_uid: str = CT,
    study_uid: str | None = None,
    pixels: int = 1 << 20,
) -> bytes:
    """A small real dataset (Explicit VR Little Endian, what :meth:`FakeSender.associate`
    negotiates): the SOP Class and Instance UIDs the server checks against the command, a Study
    Instance UID (the study layout's folder), ``pixels`` bytes of pixel data after them (many
    PDUs at the sender's 16 KiB). UIDs go in as they are, however hostile."""
    out = _element(0x0008, 0x0016, b"UI", sop_class_uid.encode("latin-1"))
    out += _element(0x0008, 0x0018, b"UI", sop_instance_uid.encode("latin-1"))
    if study_uid is not None:
        out += _element(0x0020, 0x000D, b"UI", study_uid.encode("latin-1"))
    if pixels:
        out += _element(0x7FE0, 0x0010, b"OB", bytes(range(256)) * (pixels // 256))
    return out


class FakeSender:
    def __init__(self, port: int, *, timeout: float = 20.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.peer_max = 0

    def __enter__(self) -> FakeSender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def recv_pdu(self) -> tuple[int, bytes] | None:
        """The next PDU the server sent, or None when it closed the connection."""
        header = self._exactly(_HEADER.size)
        if header is None:
            return None
        pdu_type, length = _HEADER.unpack(header)
        body = self._exactly(length)
        return None if body is None else (pdu_type, body)

    def _exactly(self, n: int) -> bytes | None:
        data = bytearray()
        while len(data) < n:
            try:
                chunk = self.sock.recv(n - len(data))
            except ConnectionResetError:
                return None
            if not chunk:
                return None
            data += chunk
        return bytes(data)

    def associate(
        self, calling_ae: str = "FAKE", max_pdu: int = 16384, syntax: str = EXPLICIT_VR_LE
    ) -> pdu.AssociateAC:
        """Propose CT in ``syntax`` (context 1) and Verification (context 3)."""
        rq = pdu.AssociateRQ(
            "ANY-SCP",
            calling_ae,
            (
                pdu.ContextProposal(1, CT, (syntax,)),
                pdu.ContextProposal(3, VERIFICATION, (EXPLICIT_VR_LE,)),
            ),
            max_pdu,
            IMPLEMENTATION_CLASS_UID,
        )
        self.send(pdu.encode_associate_rq(rq))
        answer = self.recv_pdu()
        assert answer is not None and answer[0] == pdu.ASSOCIATE_AC, answer
        ac = pdu.decode_associate_ac(answer[1])
        self.peer_max = ac.max_length
        return ac

    def store_bytes(
        self, uid: str, dataset: bytes, message_id: int = 1, sop_class_uid: str = CT
    ) -> bytes:
        """The P-DATA-TF PDUs of one C-STORE-RQ of ``dataset`` on context 1."""
        command = dimse.store_rq(message_id, sop_class_uid, uid)
        return _core.frame_message(1, command, dataset, self.peer_max)

    def response(self) -> dimse.Command | None:
        """The next response command set, or None when the server closed or aborted."""
        answer = self.recv_pdu()
        if answer is None or answer[0] != pdu.P_DATA_TF:
            return None
        return dimse.decode(b"".join(bytes(p.data) for p in pdu.decode_pdvs(answer[1])))

    def store(
        self, uid: str, dataset: bytes, message_id: int = 1, sop_class_uid: str = CT
    ) -> int | None:
        """Send a whole C-STORE; the status answered (None if the server went away)."""
        self.send(self.store_bytes(uid, dataset, message_id, sop_class_uid))
        response = self.response()
        return None if response is None else response.status

    def reset(self) -> None:
        """Close with a TCP reset instead of a FIN."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()
