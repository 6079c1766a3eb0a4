"""A scripted storage SCU for fault injection against fastpush's StorageServer: it writes
exactly the bytes a test tells it to (well-formed PDUs built with fastpush's encoders, or
garbage), stops where told, and reads what the server answers. Interop is proven with real
senders elsewhere."""

from __future__ import annotations

import socket
import struct

from fastpush import _core, dimse, pdu
from fastpush.uids import EXPLICIT_VR_LE, IMPLEMENTATION_CLASS_UID, VERIFICATION

CT = "1.2.840.10008.5.1.4.1.1.2"
_HEADER = struct.Struct(">BxI")


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

    def associate(self, calling_ae: str = "FAKE", max_pdu: int = 16384) -> pdu.AssociateAC:
        """Propose CT in Explicit VR LE (context 1) and Verification (context 3)."""
        rq = pdu.AssociateRQ(
            "ANY-SCP",
            calling_ae,
            (
                pdu.ContextProposal(1, CT, (EXPLICIT_VR_LE,)),
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

    def store_bytes(self, uid: str, dataset: bytes, message_id: int = 1) -> bytes:
        """The P-DATA-TF PDUs of one C-STORE-RQ of ``dataset`` on context 1."""
        command = dimse.store_rq(message_id, CT, uid)
        return _core.frame_message(1, command, dataset, self.peer_max)

    def response(self) -> dimse.Command | None:
        """The next response command set, or None when the server closed or aborted."""
        answer = self.recv_pdu()
        if answer is None or answer[0] != pdu.P_DATA_TF:
            return None
        return dimse.decode(b"".join(bytes(p.data) for p in pdu.decode_pdvs(answer[1])))

    def store(self, uid: str, dataset: bytes, message_id: int = 1) -> int | None:
        """Send a whole C-STORE; the status answered (None if the server went away)."""
        self.send(self.store_bytes(uid, dataset, message_id))
        response = self.response()
        return None if response is None else response.status

    def reset(self) -> None:
        """Close with a TCP reset instead of a FIN."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()
