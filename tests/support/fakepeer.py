"""A scripted DICOM acceptor for fault injection (the idea of pynetdicom's ``tests/parrot.py``).

:class:`FakePeer` listens on 127.0.0.1 and runs a script for each connection in a thread of its
own: ``script(conn, index)``, where ``conn`` is a :class:`Conn` with the few moves a script needs
(read a PDU, accept, read a message, respond, abort, reset, stall) and ``index`` counts the
connections from 0 — so a peer can misbehave on its first association and serve the next ones.
It is for making a peer do what real ones do wrong; interop with correct peers is tested against
real implementations. Bytes are built with fastpush's own encoders, except where the point is
to send bytes no encoder would make.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from collections.abc import Callable

from fastpush.wire import dimse, pdu
from fastpush.wire.reassembly import Message, Reassembler

Script = Callable[["Conn", int], None]


class PeerGone(Exception):
    """The requestor closed the connection while the script was reading."""


class Conn:
    """One accepted connection, seen from the script."""

    def __init__(self, sock: socket.socket, stopping: threading.Event) -> None:
        self.sock = sock
        self._stopping = stopping
        self.rq: pdu.AssociateRQ | None = None
        self._unread: tuple[int, bytes] | None = None  # a PDU read ahead by serve()
        self._messages = Reassembler(range(1, 256))

    # -- reading ---------------------------------------------------------------------------

    def _exact(self, n: int) -> bytes:
        data = bytearray()
        while len(data) < n:
            chunk = self.sock.recv(min(n - len(data), 1 << 20))
            if not chunk:
                raise PeerGone
            data += chunk
        return bytes(data)

    def read_pdu(self) -> tuple[int, bytes]:
        if self._unread is not None:
            pushed, self._unread = self._unread, None
            return pushed
        pdu_type, length = struct.unpack(">BxI", self._exact(6))
        return pdu_type, self._exact(length)

    def read_rq(self) -> pdu.AssociateRQ:
        pdu_type, body = self.read_pdu()
        assert pdu_type == pdu.ASSOCIATE_RQ, pdu_type
        self.rq = pdu.decode_associate_rq(body)
        return self.rq

    def _read_until(self, command_only: bool) -> Message:
        while True:
            pdu_type, body = self.read_pdu()
            assert pdu_type == pdu.P_DATA_TF, pdu_type
            done = self._messages.feed(body)
            if done:
                return done[0]
            if command_only and self._messages.pending is not None:
                return self._messages.pending

    def read_command(self) -> Message:
        """Read PDUs until a whole command set arrived (the dataset, if any, not yet read)."""
        return self._read_until(command_only=True)

    def read_message(self) -> Message:
        """Read one whole message; its dataset is counted (``dataset_size``), not kept."""
        return self._read_until(command_only=False)

    # -- answering -------------------------------------------------------------------------

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def accept(self, max_length: int = 16384) -> None:
        """Read the A-ASSOCIATE-RQ and accept every context in its first transfer syntax."""
        rq = self.read_rq()
        contexts = tuple(
            pdu.ContextResult(pc.context_id, 0, pc.transfer_syntaxes[0]) for pc in rq.contexts
        )
        ac = pdu.AssociateAC(rq.called_ae, rq.calling_ae, contexts, max_length, "1.2.3.4")
        self.send(pdu.encode_associate_ac(ac))

    def respond(self, message: Message, status: int = 0, *, message_id: int | None = None) -> None:
        command = message.command
        answer = dimse.response(
            command.command_field | 0x8000,
            command.message_id if message_id is None else message_id,
            status,
            command.sop_class_uid,
            command.sop_instance_uid,
        )
        self.send_pdv(message.context_id, answer, command=True)

    def send_pdv(self, context_id: int, data: bytes, *, command: bool, last: bool = True) -> None:
        header = (0x01 if command else 0x00) | (0x02 if last else 0x00)
        pdv = struct.pack(">IBB", len(data) + 2, context_id, header) + data
        self.send(struct.pack(">BxI", pdu.P_DATA_TF, len(pdv)) + pdv)

    def abort(self) -> None:
        self.send(pdu.encode_abort(0, 0))

    def reset(self) -> None:
        """Close with a TCP RST (SO_LINGER 0) instead of a FIN."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()

    def stall(self) -> None:
        """Do nothing until the peer is stopped: no reading, no answering."""
        self._stopping.wait()

    def serve(self) -> None:
        """Behave from here on: success for every message, the release answered."""
        while True:
            try:
                pdu_type, body = self.read_pdu()
            except PeerGone:
                return
            if pdu_type != pdu.P_DATA_TF:
                if pdu_type == pdu.RELEASE_RQ:
                    self.send(pdu.encode_release_rp())
                return
            self._unread = (pdu_type, body)
            self.respond(self.read_message())


class FakePeer:
    """A listening socket on 127.0.0.1; every connection runs ``script(conn, index)``."""

    def __init__(self, script: Script) -> None:
        self._script = script
        self._stopping = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.host = "127.0.0.1"
        self.port: int = self._listener.getsockname()[1]
        self.connections = 0
        self.errors: list[BaseException] = []
        self._socks: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._acceptor = threading.Thread(target=self._accept_loop, daemon=True)
        self._acceptor.start()

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            index = self.connections
            self.connections += 1
            self._socks.append(sock)
            thread = threading.Thread(target=self._run, args=(sock, index), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _run(self, sock: socket.socket, index: int) -> None:
        try:
            self._script(Conn(sock, self._stopping), index)
        except (PeerGone, OSError):
            pass  # the requestor gave up on us: what most scripts provoke
        except BaseException as exc:  # a broken script: reported by stop()
            self.errors.append(exc)
        finally:
            with contextlib.suppress(OSError):
                sock.close()

    def stop(self) -> None:
        self._stopping.set()
        # shutdown() wakes the thread blocked in accept(); close() alone does not (Linux).
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        for sock in self._socks:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        for thread in self._threads:
            thread.join(timeout=5)
        self._acceptor.join(timeout=5)
        if self.errors:
            raise self.errors[0]

    def __enter__(self) -> FakePeer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
