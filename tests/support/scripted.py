"""The scripted peer: a DICOM acceptor for fault injection (the idea of pynetdicom's
``tests/parrot.py``), the one every test that needs a peer to misbehave uses.

:class:`ScriptedPeer` listens on 127.0.0.1 and runs a script for each connection in a thread of
its own: ``script(conn, index)``, where ``conn`` is a :class:`Conn` with the moves a script needs
(read a PDU, accept or reject, read a message, respond, abort, reset, stall, serve) and ``index``
counts the connections from 0 — so a peer can misbehave on its first association and serve the
next ones. :meth:`Conn.serve` is a well-behaved storage SCP from there on; its ``on_dataset``
hook is called as each C-STORE's dataset arrives, which is where faults in the middle of a
dataset are scripted. :func:`faulty` is the ready-made script for faults by request number
(rejections, aborts and drops mid-dataset, a response never sent). Every peer records what it
was asked to store (``requests``), what it answered for (``received``) and what it took in
without answering (``unanswered``).

It is for making a peer do what real ones do wrong; interop with correct peers is tested against
real implementations. Bytes are built with fastpush's own encoders, except where the point is
to send bytes no encoder would make.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from collections.abc import Callable, Collection
from dataclasses import dataclass

from fastpush.errors import ProtocolError
from fastpush.wire import dimse, pdu
from fastpush.wire.reassembly import Message, Reassembler

__all__ = [
    "Conn",
    "DatasetHook",
    "Hangup",
    "Message",
    "PeerGone",
    "Script",
    "ScriptedPeer",
    "Stored",
    "faulty",
]

Script = Callable[["Conn", int], None]
DatasetHook = Callable[["Conn", int, dimse.Command, int, bool], None]
"""``hook(conn, request, command, received, last)``: called by :meth:`Conn.serve` before each
dataset fragment of a C-STORE is taken in (``received`` bytes of it so far) and once more when
the whole dataset arrived (``last``), before the response. ``request`` numbers the C-STOREs the
peer saw from 0, across connections and attempts. Raise :class:`Hangup` to end the connection."""


class PeerGone(Exception):
    """The requestor closed the connection while the script was reading."""


class Hangup(Exception):
    """Raised by a script to end its connection here (the socket is closed after it)."""


@dataclass(frozen=True)
class Stored:
    """A C-STORE the peer answered with success."""

    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax: str
    length: int


class Conn:
    """One accepted connection, seen from the script."""

    def __init__(self, sock: socket.socket, peer: ScriptedPeer) -> None:
        self.sock = sock
        self.peer = peer
        self.rq: pdu.AssociateRQ | None = None
        self.syntaxes: dict[int, str] = {}
        """The accepted presentation contexts and their transfer syntaxes."""
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
        self.syntaxes = {c.context_id: c.transfer_syntax for c in contexts}
        ac = pdu.AssociateAC(rq.called_ae, rq.calling_ae, contexts, max_length, "1.2.3.4")
        self.send(pdu.encode_associate_ac(ac))

    def reject(self, result: int = 2, source: int = 3, reason: int = 1) -> None:
        """Read the A-ASSOCIATE-RQ and reject it (by default: transient, congestion)."""
        self.read_rq()
        self.send(pdu.encode_associate_rj(pdu.AssociateRJ(result, source, reason)))

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

    def abort(self, source: int = 0, reason: int = 0) -> None:
        self.send(pdu.encode_abort(source, reason))

    def reset(self) -> None:
        """Close with a TCP RST (SO_LINGER 0) instead of a FIN."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()

    def stall(self) -> None:
        """Do nothing until the peer is stopped: no reading, no answering."""
        self.peer.stopping.wait()

    # -- behaving --------------------------------------------------------------------------

    def serve(self, on_dataset: DatasetHook | None = None, *, answer_release: bool = True) -> None:
        """Behave from here on: success for every C-STORE and C-ECHO (0x0211 for any other
        command), the release answered (unless ``answer_release`` is false: then it returns
        when the A-RELEASE-RQ arrives). A malformed P-DATA-TF is answered with an A-ABORT.
        ``on_dataset`` sees each C-STORE's dataset arrive (see :data:`DatasetHook`)."""
        messages = self._messages
        begun: tuple[Message, int] | None = None  # the C-STORE whose dataset is arriving
        while True:
            try:
                pdu_type, body = self.read_pdu()
            except PeerGone:
                return
            if pdu_type == pdu.RELEASE_RQ:
                if answer_release:
                    self.send(pdu.encode_release_rp())
                return
            if pdu_type != pdu.P_DATA_TF:
                return
            arriving = messages.pending
            if on_dataset and begun and arriving is begun[0] and arriving.dataset_size:
                on_dataset(self, begun[1], arriving.command, arriving.dataset_size, False)
            try:
                done = messages.feed(body)
            except ProtocolError:
                self.abort(2, 6)
                return
            for message in done:
                if message.command.has_dataset:
                    if begun is None or message is not begun[0]:  # the whole dataset in one PDU
                        begun = (message, self.peer.begin(message.command))
                    if on_dataset:
                        on_dataset(self, begun[1], message.command, message.dataset_size, True)
                self._answer(message)
            if messages.pending is not None and (begun is None or messages.pending is not begun[0]):
                begun = (messages.pending, self.peer.begin(messages.pending.command))

    def _answer(self, message: Message) -> None:
        command = message.command
        if command.command_field == dimse.C_STORE_RQ:
            syntax = self.syntaxes.get(message.context_id, "")
            self.peer.stored(
                Stored(
                    command.sop_class_uid,
                    command.sop_instance_uid,
                    syntax,
                    message.dataset_size,
                )
            )
            self.respond(message)
        elif command.command_field == dimse.C_ECHO_RQ:
            self.respond(message)
        else:
            self.respond(message, 0x0211)


class ScriptedPeer:
    """A listening socket on 127.0.0.1; every connection runs ``script(conn, index)``; a
    context manager (``stop()`` re-raises the first error a script made)."""

    def __init__(self, script: Script) -> None:
        self._script = script
        self.stopping = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.host = "127.0.0.1"
        self.port: int = self._listener.getsockname()[1]
        self.connections = 0
        self.errors: list[BaseException] = []
        self.requests: list[str] = []
        """SOP Instance UID of every C-STORE whose dataset began to arrive (every attempt)."""
        self.received: list[Stored] = []
        """Every C-STORE answered with success."""
        self.unanswered: list[str] = []
        """SOP Instance UIDs of datasets taken in whole, then the connection dropped."""
        self._lock = threading.Lock()
        self._socks: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._acceptor = threading.Thread(target=self._accept_loop, daemon=True)
        self._acceptor.start()

    def begin(self, command: dimse.Command) -> int:
        """Record a C-STORE whose dataset begins; its request number (from 0)."""
        with self._lock:
            self.requests.append(command.sop_instance_uid)
            return len(self.requests) - 1

    def stored(self, stored: Stored) -> None:
        with self._lock:
            self.received.append(stored)

    def _accept_loop(self) -> None:
        while not self.stopping.is_set():
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
            self._script(Conn(sock, self), index)
        except (PeerGone, Hangup, OSError):
            pass  # the requestor gave up on us, or the script hung up: what scripts provoke
        except BaseException as exc:  # a broken script: reported by stop()
            self.errors.append(exc)
        finally:
            with contextlib.suppress(OSError):
                sock.close()

    def stop(self) -> None:
        self.stopping.set()
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

    def __enter__(self) -> ScriptedPeer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def faulty(
    *,
    reject_transient: int = 0,
    abort_during: Collection[int] = (),
    drop_during: Collection[int] = (),
    drop_before_response: Collection[int] = (),
    max_length: int = 65536,
) -> Script:
    """A storage SCP with faults by C-STORE request number (0-based, counting every attempt):

    - ``reject_transient``: reject the first N associations (rejected-transient, congestion);
    - ``abort_during``: send A-ABORT in the middle of those requests' datasets;
    - ``drop_during``: close the TCP connection in the middle of those datasets;
    - ``drop_before_response``: take the whole dataset, then close without answering (recorded
      in the peer's ``unanswered``).
    """
    aborts, drops, silent = set(abort_during), set(drop_during), set(drop_before_response)

    def on_dataset(
        conn: Conn, request: int, command: dimse.Command, received: int, last: bool
    ) -> None:
        if request in aborts and received > 0:
            conn.abort(2, 0)
            raise Hangup("scripted A-ABORT")
        if request in drops and received > 0:
            raise Hangup("scripted drop")
        if request in silent and last:
            conn.peer.unanswered.append(command.sop_instance_uid)
            raise Hangup("scripted drop before the response")

    def script(conn: Conn, index: int) -> None:
        if index < reject_transient:
            conn.reject(2, 3, 1)
            return
        conn.accept(max_length)
        conn.serve(on_dataset)

    return script
