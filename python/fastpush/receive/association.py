"""One association accepted by :class:`~fastpush.receive.server.StorageServer`, from the
A-ASSOCIATE-RQ to the release: negotiation, then each command set the Rust core reassembled
answered with a status, its dataset streamed by the core to where the server stores it.

The log tells the story the way ``storescp -v`` does ("Association Received", "Association
Acknowledged", "Received Store Request", "Association Release").
"""

from __future__ import annotations

import contextlib
import errno
import logging
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..dataset.header import Unreadable, head_identity
from ..errors import AssociationAborted, ProtocolError
from ..logtext import peer_text
from ..uids import uid_name
from ..wire import dimse, pdu
from ..wire.commitment import Report
from . import commit
from .negotiation import known_transfer_syntaxes, malformed
from .received import CutThrough, Incoming, Received
from .storage import STUDY_HEAD, Placement, UnsafeName

if TYPE_CHECKING:
    from .._core import LiveDataset, ServerTransport
    from .server import StorageServer

log = logging.getLogger("fastpush.receive.server")

# The A-ASSOCIATE-RQ may carry many contexts; nothing legitimate comes near this.
_MAX_REQUEST = 1 << 20
# A-ABORT (PS3.8 table 9-26), from the service provider, with its reasons.
_PROVIDER = 2
_NOT_SPECIFIED = 0
_UNRECOGNIZED_PDU = 1
_UNEXPECTED_PDU = 2
_INVALID_PARAMETER = 6
# File system errors a second try cannot cure: the name itself is refused. Everything else
# (a full disk, a quota, descriptors, a folder gone) may pass, and is answered as transient.
_PERMANENT_ERRNOS = frozenset({errno.ENAMETOOLONG, errno.EILSEQ, errno.EINVAL})


@dataclass
class _Context:
    server: StorageServer
    transport: ServerTransport
    association_id: int
    rq: pdu.AssociateRQ
    syntaxes: dict[int, str] = field(default_factory=dict)
    abstract_syntaxes: dict[int, str] = field(default_factory=dict)
    peer_max: int = 0
    # Storage Commitment reports sent and not answered yet, by Message ID, with their context.
    reports: dict[int, tuple[int, Report]] = field(default_factory=dict)
    report_id: int = 0
    address: str = ""


@dataclass
class _Outcome:
    """What became of one C-STORE, until its response is sent."""

    status: int
    size: int
    comment: str = ""
    # The file written, until the sender has been told it is stored.
    path: Path | None = None
    # on_store saw it: the handler owns it now, it cannot be taken back.
    handled: bool = False


def serve_association(
    server: StorageServer, conn: socket.socket, address: tuple[str, int], association_id: int
) -> None:
    from .._core import ServerTransport

    try:
        transport = ServerTransport(conn.detach(), server.timeout, tls=server.tls_config)
    except OSError as exc:  # a TLS handshake that failed, a client gone already
        log.warning(
            "Connection from %s:%d refused: %s", address[0], address[1], peer_text(exc, 256)
        )
        return
    server.track(transport, True)
    try:
        _serve(server, transport, address, association_id)
    except (AssociationAborted, ConnectionError) as exc:
        log.info("Association %d: %s", association_id, peer_text(exc or type(exc).__name__, 256))
    except ProtocolError as exc:
        # Whatever the peer sent does not parse (a PDU, a PDV, a command set, a request).
        log.warning("Association %d: %s; aborting", association_id, peer_text(exc, 256))
        _abort(transport, _INVALID_PARAMETER)
    except TimeoutError as exc:
        # PS3.8 has no reason for a peer that went quiet.
        log.warning("Association %d: %s; aborting", association_id, exc)
        _abort(transport, _NOT_SPECIFIED)
    except OSError as exc:
        log.warning("Association %d: %s", association_id, peer_text(exc, 256))
    finally:
        server.track(transport, False)
        transport.close()


def _abort(transport: ServerTransport, reason: int) -> None:
    with contextlib.suppress(OSError):
        transport.send_pdu(pdu.encode_abort(_PROVIDER, reason))


def _unexpected(pdu_type: int) -> int:
    return _UNEXPECTED_PDU if pdu_type in pdu.PDU_NAMES else _UNRECOGNIZED_PDU


def _serve(
    server: StorageServer,
    transport: ServerTransport,
    address: tuple[str, int],
    association_id: int,
) -> None:
    pdu_type, body = transport.recv_pdu(_MAX_REQUEST)
    if pdu_type != pdu.ASSOCIATE_RQ:
        log.warning("Association %d: %s before any association", association_id, _name(pdu_type))
        _abort(transport, _unexpected(pdu_type))
        return
    rq = pdu.decode_associate_rq(body)
    log.info(
        "Association Received %s:%d: %s -> %s",
        address[0],
        address[1],
        peer_text(rq.calling_ae),
        peer_text(rq.called_ae),
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
            context.address = address[0]
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
        why = malformed(rq) if rq.protocol_version & 1 else f"version {rq.protocol_version}"
        log.info(
            "Rejecting Association %d: %s%s",
            association_id,
            rejection.describe(),
            f" ({why})" if why else "",
        )
        transport.send_pdu(pdu.encode_associate_rj(rejection))
        return None
    ac = server.accept.acceptance(rq, response)
    try:
        accept = pdu.encode_associate_ac(ac)
    except ValueError as exc:  # an identity response too long for its item
        log.warning("Association %d: cannot answer: %s; aborting", association_id, exc)
        _abort(transport, _INVALID_PARAMETER)
        return None
    transport.send_pdu(accept)
    context = _Context(server, transport, association_id, rq)
    proposals = {p.context_id: p for p in rq.contexts}
    for result in ac.contexts:
        if result.accepted:
            context.syntaxes[result.context_id] = result.transfer_syntax
            context.abstract_syntaxes[result.context_id] = proposals[
                result.context_id
            ].abstract_syntax
    context.peer_max = rq.max_length
    log.info(
        "Association Acknowledged (Max Send PDV: %d), %d of %d contexts accepted",
        rq.max_length - 6 if rq.max_length else 0,
        len(context.syntaxes),
        len(ac.contexts),
    )
    for result in ac.contexts:
        log.debug(
            "  context %d %s: %s%s",
            result.context_id,
            peer_text(uid_name(proposals[result.context_id].abstract_syntax)),
            pdu.CONTEXT_RESULTS.get(result.result, str(result.result)),
            f" ({peer_text(uid_name(result.transfer_syntax))})" if result.accepted else "",
        )
    return context


def _name(pdu_type: int) -> str:
    return pdu.PDU_NAMES.get(pdu_type, f"PDU of type 0x{pdu_type:02X}")


def _receive(context: _Context) -> None:
    try:
        _messages(context)
    finally:
        # A report the requester did not answer goes on an association of our own.
        commit.deliver_undelivered(context)


def _messages(context: _Context) -> None:
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
            _abort(transport, _unexpected(pdu_type))
            return


def _message(context: _Context, context_id: int, data: bytes) -> None:
    transport = context.transport
    syntax = context.syntaxes.get(context_id)
    if syntax is None:
        log.warning("Message on presentation context %d, which was not accepted", context_id)
        _abort(transport, _INVALID_PARAMETER)
        raise ConnectionAbortedError("message on a context that was not accepted")
    command = dimse.decode(data, strict=True)
    answer = _COMMITMENT.get(command.command_field)
    if answer is not None:
        answer(context, command, context_id)
        return
    message_id = command.message_id or 0
    outcome: _Outcome | None = None
    if command.command_field == dimse.C_STORE_RQ and command.has_dataset:
        outcome = _store(context, command, context_id, syntax)
        status, comment = outcome.status, outcome.comment
        field, instance = dimse.C_STORE_RSP, command.sop_instance_uid
    else:
        if command.has_dataset:
            transport.receive_dataset(max_pdu=context.server.accept.max_pdu)
        comment = ""
        if command.command_field == dimse.C_ECHO_RQ:
            log.info("Received Echo Request (MsgID %d)", message_id)
            status = dimse.SUCCESS
        else:
            log.warning("Unsupported command 0x%04X: refused", command.command_field)
            status = dimse.UNRECOGNIZED_OPERATION
        field, instance = command.command_field | dimse.RESPONSE, ""
    try:
        reply = dimse.response(
            field, message_id, status, command.sop_class_uid, instance, error_comment=comment
        )
        transport.send_message(context_id, reply, context.peer_max)
    except (ValueError, struct.error) as exc:  # what the peer negotiated cannot carry it
        _untold(context, command, outcome)
        log.warning("Cannot send the response: %s; aborting", exc)
        _abort(transport, _INVALID_PARAMETER)
        raise ConnectionAbortedError("a response that could not be sent") from exc
    except OSError:
        _untold(context, command, outcome)
        raise
    if outcome is not None:
        stored = dimse.category(status) is not dimse.StatusCategory.FAILURE
        context.server.count(outcome.size, stored=stored)


_COMMITMENT: dict[int, Callable[[_Context, dimse.Command, int], None]] = {
    dimse.N_ACTION_RQ: commit.answer_action,
    dimse.N_EVENT_REPORT_RQ: commit.answer_report,
    dimse.N_EVENT_REPORT_RSP: commit.answered,
}


def _untold(context: _Context, command: dimse.Command, outcome: _Outcome | None) -> None:
    """The sender never heard the answer to a C-STORE: it will send the instance again, so a
    file stored for it is taken back and it counts as failed."""
    if outcome is None:
        return
    storage = context.server.storage
    uid = peer_text(command.sop_instance_uid)
    if outcome.path is not None and storage is not None and not outcome.handled:
        try:
            storage.remove(outcome.path)
            log.warning("Removed %s: its response could not be sent", outcome.path)
        except OSError as exc:
            log.error("Cannot remove %s, whose response was not sent: %s", outcome.path, exc)
    elif outcome.handled and dimse.category(outcome.status) is not dimse.StatusCategory.FAILURE:
        log.warning("%s was handed on, but its response could not be sent", uid)
    context.server.count(outcome.size, stored=False)


def _failure(error: BaseException) -> tuple[int, str]:
    """The status for a dataset that could not be stored, and its error comment."""
    if isinstance(error, UnsafeName):
        return dimse.CANNOT_UNDERSTAND, "file name refused"
    if isinstance(error, OSError) and error.errno in _PERMANENT_ERRNOS:
        return dimse.CANNOT_UNDERSTAND, "file name refused by the file system"
    return dimse.OUT_OF_RESOURCES, "cannot store now"


def _with_path(error: OSError, path: Path) -> OSError:
    """The core reports file errors without the file's name; give it back."""
    if error.filename or error.errno is None:
        return error
    return OSError(error.errno, error.strerror, str(path))


def _check(command: dimse.Command, syntax: str, head: bytes) -> tuple[int, str, str] | None:
    """Why a received dataset is not the instance its command announced: (status, error
    comment, log reason); None when it is."""
    if syntax not in known_transfer_syntaxes():
        return None  # a private syntax (promiscuous): its encoding is anybody's guess
    try:
        sop_class, sop_instance = head_identity(head, syntax)
    except Unreadable as exc:
        return dimse.CANNOT_UNDERSTAND, "dataset does not parse", str(exc)
    if not sop_class and not sop_instance:
        return dimse.CANNOT_UNDERSTAND, "dataset does not parse", "no SOP Class/Instance UID"
    if sop_class != command.sop_class_uid:
        reason = f"its SOP Class UID is {sop_class!r}, the command's {command.sop_class_uid!r}"
        return dimse.DATASET_MISMATCH, "SOP Class UID differs from the command's", reason
    if sop_instance != command.sop_instance_uid:
        reason = (
            f"its SOP Instance UID is {sop_instance!r}, the command's {command.sop_instance_uid!r}"
        )
        return dimse.DATASET_MISMATCH, "SOP Instance UID differs from the command's", reason
    return None


def _store(context: _Context, command: dimse.Command, context_id: int, syntax: str) -> _Outcome:
    cut = context.server.cut_through
    if cut is None:
        return _receive_store(context, command, context_id, syntax, None)
    started: list[Incoming] = []
    status = dimse.CANNOT_UNDERSTAND  # what an exception leads to
    try:
        outcome = _receive_store(context, command, context_id, syntax, (cut, started))
        status = outcome.status
        return outcome
    finally:
        if started:
            cut.end(started[0], status)


def _watch(
    cut: CutThrough,
    started: list[Incoming],
    placement: Placement,
    command: dimse.Command,
    syntax: str,
    context: _Context,
) -> tuple[int, Callable[[LiveDataset, bytes], None]]:
    """``receive_dataset``'s ``live`` argument: ``cut`` is told once the dataset is large."""

    def start(dataset: LiveDataset, head: bytes) -> None:
        incoming = Incoming(
            dataset,
            placement.temporary,
            len(placement.header),
            command.sop_class_uid,
            command.sop_instance_uid,
            syntax,
            context.rq.calling_ae,
            context.rq.called_ae,
            context.address,
            head,
        )
        started.append(incoming)
        try:
            cut.start(incoming)
        except Exception:  # the dataset is still received, and forwarded once whole
            log.exception("cut_through.start raised for %s", peer_text(command.sop_instance_uid))

    return cut.threshold, start


def _receive_store(
    context: _Context,
    command: dimse.Command,
    context_id: int,
    syntax: str,
    live: tuple[CutThrough, list[Incoming]] | None,
) -> _Outcome:
    server = context.server
    transport = context.transport
    storage = server.storage
    max_pdu = server.accept.max_pdu
    rq = context.rq
    uid = peer_text(command.sop_instance_uid)
    log.info("Received Store Request (MsgID %s, %s)", command.message_id, uid)
    check = server.dataset_check
    abstract_syntax = context.abstract_syntaxes.get(context_id)
    if check and command.sop_class_uid != abstract_syntax:
        size = transport.receive_dataset(max_pdu)[0]
        log.warning(
            "Refusing %s: its SOP class %s is not context %d's %s",
            uid,
            peer_text(command.sop_class_uid),
            context_id,
            peer_text(abstract_syntax),
        )
        return _Outcome(dimse.DATASET_MISMATCH, size, "SOP class does not fit the context")
    if server.before_store is not None:
        refusal = server.before_store(
            command.sop_class_uid, command.sop_instance_uid, rq.calling_ae
        )
        if refusal is not None:
            size = transport.receive_dataset(max_pdu)[0]
            log.warning("Refusing %s: 0x%04X", uid, refusal)
            return _Outcome(refusal, size)
    # The identity check reads only up to (0008,0018); the study layout and on_store (a router's
    # rules and study) read on to (0020,000D) and beyond.
    head_size = STUDY_HEAD if check or server.on_store is not None else 0
    placement: Placement | None = None
    if storage is None:
        size, data, head, error = transport.receive_dataset(
            max_pdu, memory=server.on_store is not None, head=head_size
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
            head=max(head_size, storage.head_bytes),
            reuse=placement.reuse,
            live=None if live is None else _watch(*live, placement, command, syntax, context),
        )
        if error is not None:
            error = _with_path(error, placement.temporary)
    if error is None and check:
        problem = _check(command, syntax, head)
        if problem is not None:
            status, comment, reason = problem
            if placement is not None and storage is not None:
                storage.discard(placement)
            log.warning("Refusing %s: %s", uid, peer_text(reason, 256))
            return _Outcome(status, size, comment)
    path: Path | None = None
    failure: OSError | UnsafeName | None = error
    if error is None and placement is not None and storage is not None:
        try:
            path = storage.commit(
                placement,
                command.sop_class_uid,
                command.sop_instance_uid,
                syntax,
                rq.calling_ae,
                head,
            )
        except (OSError, UnsafeName) as exc:
            failure = exc
    if failure is not None:
        status, comment = _failure(failure)
        log.error("Cannot store %s: %s", uid, peer_text(failure, 512))
        return _Outcome(status, size, comment)
    outcome = _Outcome(dimse.SUCCESS, size, path=path)
    outcome.status = _handle(context, command, syntax, path, data, size, head)
    outcome.handled = context.server.on_store is not None
    if server.commitment is not None and outcome.status == dimse.SUCCESS:
        server.commitment.remember(command.sop_class_uid, command.sop_instance_uid, path)
    log.debug("Sending Store Response (%s)", dimse.describe(outcome.status))
    return outcome


def _handle(
    context: _Context,
    command: dimse.Command,
    syntax: str,
    path: Path | None,
    data: bytes | None,
    size: int,
    head: bytes,
) -> int:
    handler = context.server.on_store
    if handler is None:
        return dimse.SUCCESS
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
        address=context.address,
        head=head,
    )
    try:
        status = handler(received)
    except Exception:
        log.exception(
            "on_store raised for %s: answering 0xC000", peer_text(command.sop_instance_uid)
        )
        return dimse.CANNOT_UNDERSTAND
    return dimse.SUCCESS if status is None else int(status)
