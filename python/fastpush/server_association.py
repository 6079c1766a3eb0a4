"""One association accepted by :class:`~fastpush.server.StorageServer`, from the A-ASSOCIATE-RQ
to the release: negotiation, then each command set the Rust core reassembled answered with a
status, its dataset streamed by the core to where the server stores it.

The log tells the story the way ``storescp -v`` does ("Association Received", "Association
Acknowledged", "Received Store Request", "Association Release").
"""

from __future__ import annotations

import contextlib
import logging
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from . import dimse, pdu
from .errors import AssociationAborted, ProtocolError
from .uids import uid_name

if TYPE_CHECKING:
    from ._core import ServerTransport
    from .server import StorageServer

log = logging.getLogger("fastpush.server")

# The A-ASSOCIATE-RQ may carry many contexts; nothing legitimate comes near this.
_MAX_REQUEST = 1 << 20
# A-ABORT reasons (PS3.8 table 9-26), from the service provider.
_PROVIDER = 2
_UNEXPECTED_PDU = 2
_INVALID_PARAMETER = 6
_UNSPECIFIED = 0
# DIMSE statuses we answer with.
_SUCCESS = 0x0000
_OUT_OF_RESOURCES = 0xA700
_CANNOT_UNDERSTAND = 0xC000
_UNRECOGNIZED_OPERATION = 0x0211


@dataclass
class _Context:
    server: StorageServer
    transport: ServerTransport
    association_id: int
    rq: pdu.AssociateRQ
    syntaxes: dict[int, str] = field(default_factory=dict)
    peer_max: int = 0


def serve_association(
    server: StorageServer, conn: socket.socket, address: tuple[str, int], association_id: int
) -> None:
    from ._core import ServerTransport

    try:
        transport = ServerTransport(conn.detach(), server.timeout, tls=server.tls_config)
    except OSError as exc:  # a TLS handshake that failed, a client gone already
        log.warning("Connection from %s:%d refused: %s", address[0], address[1], exc)
        return
    server.track(transport, True)
    try:
        _serve(server, transport, address, association_id)
    except (AssociationAborted, ConnectionError) as exc:
        log.info("Association %d: %s", association_id, exc or type(exc).__name__)
    except (ProtocolError, TimeoutError) as exc:
        log.warning("Association %d: %s; aborting", association_id, exc)
        _abort(transport, _UNSPECIFIED)
    except OSError as exc:
        log.warning("Association %d: %s", association_id, exc)
    finally:
        server.track(transport, False)
        transport.close()


def _abort(transport: ServerTransport, reason: int) -> None:
    with contextlib.suppress(OSError):
        transport.send_pdu(pdu.encode_abort(_PROVIDER, reason))


def _serve(
    server: StorageServer,
    transport: ServerTransport,
    address: tuple[str, int],
    association_id: int,
) -> None:
    pdu_type, body = transport.recv_pdu(_MAX_REQUEST)
    if pdu_type != pdu.ASSOCIATE_RQ:
        log.warning("Association %d: %s before any association", association_id, _name(pdu_type))
        _abort(transport, _UNEXPECTED_PDU)
        return
    rq = pdu.decode_associate_rq(body)
    log.info(
        "Association Received %s:%d: %s -> %s",
        address[0],
        address[1],
        rq.calling_ae,
        rq.called_ae,
    )
    if not server.admit(association_id):
        log.warning(
            "Refusing Association %d: %d associations running (the limit)",
            association_id,
            server.max_associations,
        )
        transport.send_pdu(pdu.encode_associate_rj(pdu.AssociateRJ(2, 3, 2)))
        return
    try:
        context = _negotiate(server, transport, association_id, rq)
        if context is not None:
            _receive(context)
    finally:
        server.leave(association_id)


def _negotiate(
    server: StorageServer, transport: ServerTransport, association_id: int, rq: pdu.AssociateRQ
) -> _Context | None:
    rejection = server.accept.rejection(rq, server.ae_title)
    response: bytes | None = None
    if rejection is None and server.identity_check is not None:
        verdict = server.identity_check(rq.user_identity, rq.calling_ae)
        if verdict is False:
            rejection = pdu.AssociateRJ(1, 1, 1)
        elif isinstance(verdict, bytes) and rq.user_identity is not None:
            response = verdict if rq.user_identity.positive_response else None
    if rejection is not None:
        log.info("Rejecting Association %d: %s", association_id, rejection.describe())
        transport.send_pdu(pdu.encode_associate_rj(rejection))
        return None
    ac = server.accept.acceptance(rq, response)
    transport.send_pdu(pdu.encode_associate_ac(ac))
    context = _Context(server, transport, association_id, rq)
    context.syntaxes = {r.context_id: r.transfer_syntax for r in ac.contexts if r.accepted}
    context.peer_max = rq.max_length
    log.info(
        "Association Acknowledged (Max Send PDV: %d), %d of %d contexts accepted",
        rq.max_length - 6 if rq.max_length else 0,
        len(context.syntaxes),
        len(ac.contexts),
    )
    for result in ac.contexts:
        proposal = next(p for p in rq.contexts if p.context_id == result.context_id)
        log.debug(
            "  context %d %s: %s%s",
            result.context_id,
            uid_name(proposal.abstract_syntax),
            pdu.CONTEXT_RESULTS.get(result.result, str(result.result)),
            f" ({uid_name(result.transfer_syntax)})" if result.accepted else "",
        )
    return context


def _name(pdu_type: int) -> str:
    return pdu.PDU_NAMES.get(pdu_type, f"PDU of type 0x{pdu_type:02X}")


def _receive(context: _Context) -> None:
    transport = context.transport
    max_pdu = context.server.accept.max_pdu
    while True:
        pdu_type, context_id, data = transport.next_message(max_pdu)
        if pdu_type == pdu.P_DATA_TF:
            _message(context, context_id, data)
        elif pdu_type == pdu.RELEASE_RQ:
            log.info("Association Release")
            # Free the slot before answering: a peer that reconnects at once finds it free.
            context.server.leave(context.association_id)
            transport.send_pdu(pdu.encode_release_rp())
            return
        elif pdu_type == pdu.ABORT:
            log.info("Association Aborted: %s", pdu.decode_abort(data).describe())
            return
        else:
            log.warning("Unexpected %s: aborting", _name(pdu_type))
            _abort(transport, _UNEXPECTED_PDU)
            return


def _message(context: _Context, context_id: int, data: bytes) -> None:
    transport = context.transport
    syntax = context.syntaxes.get(context_id)
    if syntax is None:
        log.warning("Message on presentation context %d, which was not accepted", context_id)
        _abort(transport, _INVALID_PARAMETER)
        raise ConnectionAbortedError("message on a context that was not accepted")
    command = dimse.decode(data)
    message_id = command.message_id or 0
    if command.command_field == dimse.C_STORE_RQ and command.has_dataset:
        status = _store(context, command, syntax)
        reply = dimse.response(
            dimse.C_STORE_RSP,
            message_id,
            status,
            command.sop_class_uid,
            command.sop_instance_uid,
        )
    else:
        if command.has_dataset:
            transport.receive_dataset(max_pdu=context.server.accept.max_pdu)
        if command.command_field == dimse.C_ECHO_RQ:
            log.info("Received Echo Request (MsgID %d)", message_id)
            status = _SUCCESS
        else:
            log.warning("Unsupported command 0x%04X: refused", command.command_field)
            status = _UNRECOGNIZED_OPERATION
        reply = dimse.response(
            command.command_field | 0x8000, message_id, status, command.sop_class_uid
        )
    transport.send_message(context_id, reply, context.peer_max)


def _store(context: _Context, command: dimse.Command, syntax: str) -> int:
    server = context.server
    transport = context.transport
    storage = server.storage
    max_pdu = server.accept.max_pdu
    rq = context.rq
    log.info(
        "Received Store Request (MsgID %s, %s)",
        command.message_id,
        command.sop_instance_uid,
    )
    path: Path | None = None
    if server.before_store is not None:
        refusal = server.before_store(
            command.sop_class_uid, command.sop_instance_uid, rq.calling_ae
        )
        if refusal is not None:
            size = transport.receive_dataset(max_pdu)[0]
            log.warning("Refusing %s: 0x%04X", command.sop_instance_uid, refusal)
            server.count(size, stored=False)
            return refusal
    if storage is None:
        size, data, _head, error = transport.receive_dataset(
            max_pdu, memory=server.on_store is not None
        )
    else:
        placement = storage.place(
            command.sop_class_uid, command.sop_instance_uid, syntax, rq.calling_ae
        )
        size, data, head, error = transport.receive_dataset(
            max_pdu,
            str(placement.temporary),
            placement.header,
            fsync=storage.fsync,
            head=storage.head_bytes,
        )
        if error is None:
            try:
                path = storage.commit(
                    placement,
                    command.sop_class_uid,
                    command.sop_instance_uid,
                    syntax,
                    rq.calling_ae,
                    head,
                )
            except OSError as exc:
                error = exc
    if error is not None:
        log.error("Cannot store %s: %s", command.sop_instance_uid, error)
        server.count(size, stored=False)
        return _OUT_OF_RESOURCES
    status = _handle(context, command, syntax, path, data, size)
    server.count(size, stored=dimse.category(status) is not dimse.StatusCategory.FAILURE)
    log.debug("Sending Store Response (%s)", dimse.describe(status))
    return status


def _handle(
    context: _Context,
    command: dimse.Command,
    syntax: str,
    path: Path | None,
    data: bytes | None,
    size: int,
) -> int:
    from .server import Received

    handler = context.server.on_store
    if handler is None:
        return _SUCCESS
    received = Received(
        path=path,
        data=data,
        sop_class_uid=command.sop_class_uid,
        sop_instance_uid=command.sop_instance_uid,
        transfer_syntax=syntax,
        calling_ae=context.rq.calling_ae,
        called_ae=context.rq.called_ae,
        size=size,
        association_id=context.association_id,
        message_id=command.message_id or 0,
    )
    try:
        status = handler(received)
    except Exception:
        log.exception("on_store raised for %s: answering 0xC000", command.sop_instance_uid)
        return _CANNOT_UNDERSTAND
    return _SUCCESS if status is None else int(status)
