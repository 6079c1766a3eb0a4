"""One association with a storage SCP, as the requestor: negotiate, C-ECHO, C-STORE, release.

Owns the association's state and its story (events and log lines). Bytes are built by ``pdu`` and
``dimse`` and moved by a transport (``transport``); which files go over which association is
``api``'s business.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING

from ..dataset.item import Item, Skip, Storable
from ..dataset.payload import Live, Payload, prepare
from ..dataset.scan import to_item
from ..errors import (
    AssociationAborted,
    AssociationRejected,
    ConversionError,
    IdentityRejected,
    NoAcceptedContext,
    ProtocolError,
    SourceError,
)
from ..transport.connect import Transport, connect, resolve_engine
from ..uids import (
    IMPLEMENTATION_CLASS_UID,
    IMPLEMENTATION_VERSION_NAME,
    VERIFICATION,
    uid_name,
)
from ..wire import commitment, dimse, pdu
from ..wire.reassembly import Message, Reassembler
from .failure import Failure
from .options import ConnectionKeywords, ConnectionOptions, connection_options
from .plan import DEFAULT_PROPOSAL, AcceptedContext, Proposal, Routes
from .results import Event, EventKind, Outcome, Result

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ..dataset.edits import EditPlan

log = logging.getLogger(__name__)

# An A-ASSOCIATE-AC is not bound by our Maximum Length; this caps what a peer can make us read.
_MIN_RECV_LIMIT = 1 << 20
_UNLIMITED_RECV_LIMIT = 64 << 20
# A C-STORE/C-ECHO response is a command set of a few hundred bytes: a peer that keeps sending
# fragments (or PDUs) past this is refused rather than buffered or waited on forever.
_MAX_RESPONSE_BYTES = 1 << 20
# An N-EVENT-REPORT lists every instance of a batch: far more than a response, still bounded.
_MAX_REPORT_BYTES = 64 << 20
# The smallest Maximum Length Received that carries a PDV (6 bytes of header, 2 of payload).
_MIN_PEER_MAX_PDU = 8

EventHandler = Callable[[Event], None]
ContextSpec = tuple[str, str | Sequence[str]]
# What a failure in the middle of a message looks like: the association cannot go on.
_LOST = (OSError, ProtocolError, AssociationAborted)
# Raised before any byte of a message is sent: that item's failure, the association goes on.
_SOURCE = (SourceError, ConversionError)


class Association:
    """An association to one storage SCP at ``host:port``; a context manager that opens it on
    entry and releases it on exit (aborts it when the block raised).

    ``contexts`` lists ``(abstract syntax, transfer syntax or syntaxes)`` to propose, one
    presentation context each. A file goes over the accepted context whose syntax comes first
    in ``proposal.send_order`` (its own syntax, unless ``prefer`` says otherwise), converted
    or decompressed when that is not the file's syntax. ``connection``
    (:class:`~fastpush.ConnectionOptions`) says how to connect and negotiate; its fields may
    also be given as keyword arguments (``calling_ae``, ``called_ae``, ``engine``, ``max_pdu``,
    ``max_send_pdu``, ``connect_timeout``, ``acse_timeout``, ``dimse_timeout``, ``tls``,
    ``identity``), which replace those of ``connection``. ``edits``
    (:class:`~fastpush.EditPlan`) are applied to every dataset on the way, by the Rust data path
    (the pure-Python engine refuses them: ``ValueError``); the C-STORE request names the edited
    SOP Instance UID, and a dataset the edits cannot apply to fails with ``Failure.SOURCE``,
    never sent unedited. ``on_event(event)`` gets each
    :class:`~fastpush.Event` of the association's story; ``number`` is the association's
    number in events and results. ``roles`` are SCP/SCU Role Selection items to propose (a
    Storage Commitment report sender proposes the SCP role).

    Not thread-safe: use one association from one thread at a time (``interrupt()`` excepted).
    """

    def __init__(
        self,
        host: str,
        port: int,
        contexts: Iterable[ContextSpec],
        *,
        connection: ConnectionOptions | None = None,
        on_event: EventHandler | None = None,
        number: int = 1,
        proposal: Proposal = DEFAULT_PROPOSAL,
        edits: EditPlan | None = None,
        roles: Sequence[pdu.RoleSelection] = (),
        **options: Unpack[ConnectionKeywords],
    ) -> None:
        self.host = host
        self.roles = tuple(roles)
        self.port = port
        self.connection = connection_options(connection, options)
        if edits is not None and resolve_engine(self.connection.engine) != "rust":
            raise ValueError("tag edits and de-identification need the Rust engine")
        self.edits = edits
        self.number = number
        self.proposal = proposal
        self._on_event = on_event
        self._proposed = tuple(
            pdu.ContextProposal(
                2 * index + 1,
                abstract,
                (syntaxes,) if isinstance(syntaxes, str) else tuple(syntaxes),
            )
            for index, (abstract, syntaxes) in enumerate(contexts)
        )
        if not self._proposed:
            raise ValueError("an association needs at least one presentation context")
        if len(self._proposed) > 128:
            raise ValueError(f"{len(self._proposed)} presentation contexts; at most 128 fit")
        self._transport: Transport | None = None
        # Set while negotiating, so that interrupt() can cut an association not yet open.
        self._connecting: Transport | None = None
        self._interrupted = False
        self._message_id = 0
        self._message_sent = False
        self.accepted: dict[int, AcceptedContext] = {}
        self._context_ids: list[int] = []
        self._routes = Routes((), proposal)
        self.peer_max_pdu = 0
        max_pdu = self.connection.max_pdu
        self._recv_limit = max(max_pdu + 6, _MIN_RECV_LIMIT) if max_pdu else _UNLIMITED_RECV_LIMIT

    # -- the story ---------------------------------------------------------------------------

    def _emit(
        self, kind: EventKind, message: str, level: int = logging.INFO, **details: object
    ) -> None:
        log.log(level, message)
        if self._on_event is not None:
            self._on_event(Event(kind, self.number, message, dict(details)))

    @property
    def is_open(self) -> bool:
        return self._transport is not None

    @property
    def send_limit(self) -> int:
        """The PDU length we send with: the peer's maximum, lowered by ``max_send_pdu``."""
        limit = self.connection.max_send_pdu
        if limit and (self.peer_max_pdu == 0 or limit < self.peer_max_pdu):
            return limit
        return self.peer_max_pdu

    # -- establishment and release -------------------------------------------------------------

    def open(self) -> None:
        """Connect and negotiate. Raises ``OSError`` (connection), ``AssociationRejected``,
        ``AssociationAborted`` or ``ProtocolError``."""
        self._emit(
            EventKind.REQUESTING,
            f"Requesting Association with {self.connection.called_ae} at {self.host}:{self.port}",
            contexts=len(self._proposed),
        )
        try:
            transport = connect(
                self.host,
                self.port,
                engine=self.connection.engine,
                connect_timeout=self.connection.connect_timeout,
                timeout=self.connection.acse_timeout,
                tls=self.connection.tls,
            )
        except OSError as exc:
            self._emit(
                EventKind.CONNECT_FAILED,
                f"Association Request Failed: cannot connect to {self.host}:{self.port}: {exc}",
                logging.ERROR,
            )
            raise
        self._connecting = transport
        if self._interrupted:
            transport.close()
        if transport.tls is not None:
            log.info("TLS connection established (%s, %s)", *transport.tls)
        rq = pdu.AssociateRQ(
            self.connection.called_ae,
            self.connection.calling_ae,
            self._proposed,
            self.connection.max_pdu,
            IMPLEMENTATION_CLASS_UID,
            IMPLEMENTATION_VERSION_NAME,
            self.connection.identity,
            roles=self.roles,
        )
        if self.connection.identity is not None:
            log.debug("Offering user identity: %s", self.connection.identity.describe())
        try:
            transport.send_pdu(pdu.encode_associate_rq(rq))
            pdu_type, body = transport.recv_pdu(self._recv_limit)
            if pdu_type == pdu.ASSOCIATE_AC:
                ac = pdu.decode_associate_ac(body)
                if 0 < ac.max_length < _MIN_PEER_MAX_PDU:
                    raise ProtocolError(f"peer's maximum PDU length {ac.max_length} is too small")
            elif pdu_type == pdu.ASSOCIATE_RJ:
                rj = pdu.decode_associate_rj(body)
                # Peers refuse an identity with a plain rejection (no reason code says so).
                kind = AssociationRejected
                hint = ""
                if self.connection.identity is not None and rj.source in (1, 2):
                    kind, hint = IdentityRejected, " (was the user identity refused?)"
                raise kind(
                    rj.result, rj.source, rj.reason, f"Association Rejected: {rj.describe()}{hint}"
                )
            elif pdu_type == pdu.ABORT:
                ab = pdu.decode_abort(body)
                raise AssociationAborted(
                    ab.source, ab.reason, f"Association Aborted: {ab.describe()}"
                )
            else:
                raise ProtocolError(
                    f"expected A-ASSOCIATE-AC, got {pdu.PDU_NAMES.get(pdu_type, hex(pdu_type))}"
                )
        except BaseException as exc:
            if isinstance(exc, AssociationRejected):
                self._emit(
                    EventKind.REJECTED,
                    str(exc),
                    logging.ERROR,
                    result=exc.result,
                    source=exc.source,
                    reason=exc.reason,
                )
            else:
                if isinstance(exc, ProtocolError):
                    _quietly(transport.send_pdu, pdu.encode_abort(2, 0))
                self._emit(EventKind.ABORTED, f"Association Request Failed: {exc}", logging.ERROR)
            transport.close()
            raise
        finally:
            self._connecting = None
        self._accept(ac, transport)

    def _accept(self, ac: pdu.AssociateAC, transport: Transport) -> None:
        proposed = {pc.context_id: pc for pc in self._proposed}
        for result in ac.contexts:
            pc = proposed.get(result.context_id)
            if pc is None:
                log.warning(
                    "peer answered presentation context %d that was never proposed",
                    result.context_id,
                )
                continue
            if result.accepted:
                self.accepted[result.context_id] = AcceptedContext(
                    result.context_id, pc.abstract_syntax, result.transfer_syntax
                )
            elif log.isEnabledFor(logging.INFO):
                # uid_name imports pydicom (~0.2 s): only when the line is wanted. With the
                # fallback contexts a rejected context is routine, not an error.
                log.info(
                    "Presentation context %d (%s) rejected: %s",
                    result.context_id,
                    uid_name(pc.abstract_syntax),
                    pdu.CONTEXT_RESULTS.get(result.result, result.result),
                )
        self._routes = Routes(self.accepted.values(), self.proposal)
        self._context_ids = list(self.accepted)  # what a response may come on
        self.peer_max_pdu = ac.max_length
        self._transport = transport
        max_pdv = self.send_limit - 6 if self.send_limit else "unlimited"
        identity = self._identity_story(ac)
        self._emit(
            EventKind.ACCEPTED,
            f"Association Accepted (Max Send PDV: {max_pdv}; "
            f"{len(self.accepted)} of {len(self._proposed)} contexts accepted{identity})",
            peer_max_pdu=ac.max_length,
            accepted=len(self.accepted),
            implementation=ac.implementation_version_name or ac.implementation_class_uid,
            identity_response=ac.user_identity_response,
        )

    def _identity_story(self, ac: pdu.AssociateAC) -> str:
        """What the acceptor said about our user identity, for the accepted line."""
        if self.connection.identity is None:
            return ""
        response = ac.user_identity_response
        if response is not None:
            return f"; user identity confirmed, server response of {len(response)} bytes"
        if self.connection.identity.positive_response:
            log.warning(
                "The peer accepted the association without confirming the user identity "
                "(it may not support user identity negotiation)"
            )
            return "; user identity not confirmed"
        return ""

    def release(self) -> None:
        """Ask the peer to release, wait for its answer (ACSE timeout), close."""
        transport = self._transport
        if transport is None:
            return
        self._emit(EventKind.RELEASED, "Releasing Association")
        try:
            timeout = self.connection.acse_timeout
            transport.timeout = timeout
            transport.send_pdu(pdu.encode_release_rq())
            # Whatever else arrives first is dropped, for at most the ACSE timeout in all.
            deadline = None if timeout is None else time.monotonic() + timeout
            while True:
                pdu_type, _ = transport.recv_pdu(self._recv_limit)
                if pdu_type in (pdu.RELEASE_RP, pdu.ABORT):
                    break
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError("no A-RELEASE-RP within the ACSE timeout")
        except (OSError, ProtocolError) as exc:
            log.warning("Release did not complete cleanly: %s", exc)
        finally:
            self._close()

    def abort(self, reason: str = "") -> None:
        """Send an A-ABORT and close; never raises."""
        transport = self._transport
        if transport is None:
            return
        self._emit(
            EventKind.ABORTED,
            f"Aborting Association{': ' + reason if reason else ''}",
            logging.WARNING,
        )
        _quietly(transport.send_pdu, pdu.encode_abort(0, 0))
        self._close()

    def interrupt(self) -> None:
        """Cut the connection now, from any thread; a send, a receive or a negotiation in
        progress fails.

        An A-ABORT cannot be put in the middle of a P-DATA-TF PDU, so the peer sees the
        connection close (an A-P-ABORT) and discards the partial message.
        """
        self._interrupted = True
        transport = self._transport or self._connecting
        if transport is not None:
            self._emit(EventKind.ABORTED, "Aborting Association: interrupted", logging.WARNING)
            transport.close()

    def _close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    def __enter__(self) -> Association:
        if not self.is_open:
            self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            self.release()
        else:
            self.abort(f"{type(exc).__name__}: {exc}")

    # -- DIMSE -------------------------------------------------------------------------------------

    def _next_message_id(self) -> int:
        self._message_id = self._message_id % 0xFFFF + 1
        return self._message_id

    def _exchange(
        self,
        ctx: AcceptedContext,
        command: bytes,
        payload: Payload | None,
        message_id: int,
    ) -> dimse.Command:
        transport = self._transport
        if transport is None:
            raise ProtocolError("the association is not open")
        transport.timeout = self.connection.dimse_timeout
        self._message_sent = False
        if payload is None:
            transport.send_message(ctx.context_id, command, None, self.send_limit)
        elif payload.live is not None:
            # Only the Rust transport takes a live dataset (checked by store_live).
            live, send = payload.live, transport.send_live  # type: ignore[attr-defined]
            sent = send(ctx.context_id, command, live.dataset, self.send_limit, stall=live.stall)
            if not live.wanted():
                raise ConnectionAbortedError("the receiver did not keep it: given up")
            send(ctx.context_id, None, live.dataset, self.send_limit, sent, True)
        elif payload.edits is not None:
            # Only the Rust transport takes edits (checked when the association was made).
            transport.send_message(
                ctx.context_id,
                command,
                payload.dataset,
                self.send_limit,
                payload.convert,
                edits=payload.edits,  # type: ignore[call-arg]
            )
        else:
            transport.send_message(
                ctx.context_id,
                command,
                payload.dataset,
                self.send_limit,
                payload.convert,
                payload.verify,
            )
        # A failure from here on lost only the response: the peer may have stored the data.
        self._message_sent = True
        response = self._receive_command(transport)
        if response.responded_to != message_id:
            raise ProtocolError(
                f"response answers message {response.responded_to}, expected {message_id}"
            )
        if response.status is None:
            raise ProtocolError("response has no Status (0000,0900)")
        return response

    def _receive_command(self, transport: Transport) -> dimse.Command:
        # A response dataset (none is defined for C-STORE/C-ECHO) is read and dropped, by the
        # transport: one call per response.
        pdu_type, _, data = transport.recv_command(
            self._recv_limit, self._context_ids, _MAX_RESPONSE_BYTES
        )
        return dimse.decode(_pdata(pdu_type, data, "P-DATA-TF"))

    def _fail_connection(self, exc: BaseException) -> str:
        """The association cannot go on after a failure in the middle of a message: abort it."""
        reason = _reason(exc)
        if isinstance(exc, AssociationAborted):
            self._emit(EventKind.ABORTED, f"Association Aborted by peer: {exc}", logging.ERROR)
            self._close()
        else:
            self.abort(reason)
        return reason

    def echo(self) -> int:
        """Send a C-ECHO; return its status. Raises on a connection or protocol failure."""
        ctx = self._routes.any(VERIFICATION)
        message_id = self._next_message_id()
        return self._status_of("Echo", ctx, dimse.echo_rq(message_id), None, message_id)

    def _status_of(
        self,
        name: str,
        ctx: AcceptedContext,
        command: bytes,
        payload: Payload | None,
        message_id: int,
    ) -> int:
        """Exchange a request whose answer is a status alone, tell it and return it; a lost
        connection ends the association first."""
        try:
            response = self._exchange(ctx, command, payload, message_id)
        except _LOST as exc:
            self._fail_connection(exc)
            raise
        status = response.status
        assert status is not None
        described = dimse.describe(status)
        self._emit(EventKind.RESPONSE, f"Received {name} Response ({described})", status=status)
        return status

    def store(self, item: Storable) -> Result:
        """C-STORE one input: a path, Part-10 bytes, a pydicom Dataset or a described ``Item``.

        Always returns a result. After a failure in the middle of a message the association is
        aborted (``is_open`` turns false) and the result says why.
        """
        described = to_item(item)
        if isinstance(described, Skip):
            return Result.skipped(described)
        return self._store(described)

    def store_live(self, item: Item, live: Live) -> Result:
        """C-STORE a dataset while it is still being received (cut-through): ``item`` says
        what it is (its path, offset and length are the file's so far), ``live`` where it
        stands. Sent verbatim, as it arrives, its last fragment only once ``live.wanted()``;
        else, or when the receive is cut, the association is aborted (a ``TRANSFER`` failure,
        nothing stored at the peer). A dataset the peer would need converted or edited, or a
        pure-Python transport, is not sent (a ``SOURCE`` failure): it goes once whole."""
        return self._store(item, live)

    def _store(self, item: Item, live: Live | None = None) -> Result:
        result = Result.of(item, association=self.number, attempts=1)
        try:
            ctx = self._routes.route(*item.pair)
        except NoAcceptedContext as exc:
            result.association = None
            return result.fail(Failure.REFUSED, str(exc))
        result.sent_syntax = ctx.transfer_syntax
        compiled = None
        if live is not None:
            if (
                ctx.transfer_syntax != item.transfer_syntax
                or self.edits is not None
                or not hasattr(self._transport, "send_live")
            ):
                return result.fail(Failure.SOURCE, "not sent while received: sent once whole")
            payload = Payload(item.source, live=live)
        else:
            try:
                compiled = None if self.edits is None else self.edits.compiled
                payload = prepare(
                    item, ctx.transfer_syntax, strict=self.proposal.strict, edits=compiled
                )
            except (*_SOURCE, OSError, ValueError) as exc:
                return result.fail(Failure.SOURCE, _reason(exc))
        message_id = self._next_message_id()
        instance = item.sop_instance_uid
        if compiled is not None:
            instance = compiled.instance_uid(instance)
        command = dimse.store_rq(message_id, item.sop_class_uid, instance)
        self._emit(
            EventKind.SENDING,
            f"Sending file: {item.name}",
            logging.INFO,
            path=item.path,
            bytes=item.length,
            context_id=ctx.context_id,
            transfer_syntax=ctx.transfer_syntax,
        )
        if ctx.transfer_syntax != item.transfer_syntax and log.isEnabledFor(logging.DEBUG):
            # uid_name imports pydicom: only when the line is wanted.
            log.debug(
                "Converting from %s to %s",
                uid_name(item.transfer_syntax),
                uid_name(ctx.transfer_syntax),
            )
        started = time.perf_counter()
        try:
            response = self._exchange(ctx, command, payload, message_id)
        except _SOURCE as exc:
            result.seconds = time.perf_counter() - started
            return result.fail(Failure.SOURCE, _reason(exc))
        except _LOST as exc:
            result.seconds = time.perf_counter() - started
            result.maybe_duplicate = self._message_sent
            return result.fail(Failure.TRANSFER, self._fail_connection(exc))
        except BaseException as exc:
            # Whatever broke, the message may be half sent: the association cannot go on.
            self.abort(_reason(exc))
            raise
        result.seconds = time.perf_counter() - started
        status = response.status
        assert status is not None
        category = dimse.category(status)
        described = dimse.describe(status)
        if response.error_comment:
            described += f": {response.error_comment}"
        if category is dimse.StatusCategory.SUCCESS:
            result.outcome = Outcome.WARNING if payload.warning else Outcome.STORED
            result.reason = payload.warning
            result.status = status
        elif category is dimse.StatusCategory.WARNING:
            result.outcome = Outcome.WARNING
            result.reason = "; ".join(r for r in (described, payload.warning) if r)
            result.status = status
        else:
            result.fail(Failure.STATUS, described, status=status)
        self._emit(
            EventKind.RESPONSE,
            f"Received Store Response ({described})",
            logging.INFO,
            status=status,
            path=item.path,
        )
        return result

    # -- Storage Commitment ------------------------------------------------------------------

    def request_commitment(
        self, transaction_uid: str, references: Sequence[commitment.Reference]
    ) -> None:
        """Send the N-ACTION asking the peer to commit to ``references`` under
        ``transaction_uid``. Raises ``CommitmentError`` when the peer did not accept the
        Storage Commitment context or answered a failure; like :meth:`echo` when the
        connection fails."""
        ctx = self._commitment_context()
        message_id = self._next_message_id()
        data = commitment.encode_request(transaction_uid, references, ctx.transfer_syntax)
        self._emit(
            EventKind.SENDING,
            f"Requesting Storage Commitment of {len(references)} instances "
            f"(transaction {transaction_uid})",
            transaction_uid=transaction_uid,
        )
        command = commitment.action_rq(message_id)
        status = self._status_of("N-ACTION", ctx, command, Payload(data), message_id)
        described = dimse.describe(status)
        if dimse.category(status) is dimse.StatusCategory.FAILURE:
            raise commitment.CommitmentError(
                f"the peer refused the commitment request: {described}"
            )

    def wait_report(self, transaction_uid: str, timeout: float | None) -> commitment.Report:
        """Wait on this association for the N-EVENT-REPORT of ``transaction_uid``, answer it and
        return it. A report of another transaction is answered with a failure and ignored.
        Raises ``TimeoutError`` after ``timeout`` seconds (the association is then aborted)."""
        transport = self._transport
        if transport is None:
            raise ProtocolError("the association is not open")
        deadline = None if timeout is None else time.monotonic() + timeout
        late = f"no N-EVENT-REPORT within {timeout:g} s" if timeout is not None else ""
        messages = Reassembler(self.accepted, keep_datasets=True)
        received = 0
        try:
            while True:
                if deadline is not None:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise TimeoutError(late)
                    transport.timeout = remaining
                try:
                    body = _pdata_body(transport, self._recv_limit, "an N-EVENT-REPORT")
                except TimeoutError as exc:
                    raise TimeoutError(late or str(exc)) from exc
                received += 6 + len(body)
                if received > _MAX_REPORT_BYTES:
                    raise ProtocolError(f"N-EVENT-REPORT runs past {_MAX_REPORT_BYTES} bytes")
                for message in messages.feed(body):
                    report = self._answer_report(transport, message, transaction_uid)
                    if report is not None:
                        return report
        except _LOST as exc:
            self._fail_connection(exc)
            raise

    def send_report(self, report: commitment.Report) -> int:
        """Send ``report`` as the Storage Commitment SCP (an N-EVENT-REPORT); return the
        status the requester answered. Raises ``CommitmentError`` when it did not accept the
        Storage Commitment context, and like :meth:`echo` when the connection fails."""
        ctx = self._commitment_context()
        message_id = self._next_message_id()
        data = commitment.encode_report(report, ctx.transfer_syntax)
        command = commitment.event_report_rq(message_id, report.event_type)
        return self._status_of("N-EVENT-REPORT", ctx, command, Payload(data), message_id)

    def _commitment_context(self) -> AcceptedContext:
        for ctx in self.accepted.values():
            if ctx.abstract_syntax == commitment.STORAGE_COMMITMENT:
                return ctx
        raise commitment.CommitmentError("the peer does not support Storage Commitment")

    def _answer_report(
        self, transport: Transport, message: Message, transaction_uid: str
    ) -> commitment.Report | None:
        command = message.command
        if command.command_field != dimse.N_EVENT_REPORT_RQ or message.dataset is None:
            raise ProtocolError(
                f"expected an N-EVENT-REPORT, got command 0x{command.command_field:04X}"
            )
        syntax = self.accepted[message.context_id].transfer_syntax
        report = commitment.decode_report(message.dataset, syntax)
        ours = report.transaction_uid == transaction_uid
        status = dimse.SUCCESS if ours else commitment.PROCESSING_FAILURE
        answer = commitment.event_report_rsp(
            command.message_id or 0, command.type_id or report.event_type, status
        )
        transport.send_message(message.context_id, answer, None, self.send_limit)
        if not ours:
            log.warning(
                "N-EVENT-REPORT of transaction %s, not the one awaited (%s): refused",
                report.transaction_uid,
                transaction_uid,
            )
            return None
        self._emit(
            EventKind.RESPONSE,
            f"Received N-EVENT-REPORT: {len(report.committed)} committed, "
            f"{len(report.failed)} failed",
            transaction_uid=transaction_uid,
        )
        return report


def _quietly(send: Callable[[bytes], None], data: bytes) -> None:
    with contextlib.suppress(OSError, ProtocolError):
        send(data)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, SourceError):
        return f"cannot read the dataset (changed since the scan?): {exc}"
    if isinstance(exc, TimeoutError):
        return f"timed out: {exc}" if str(exc) else "timed out waiting for the peer"
    text = str(exc) or type(exc).__name__
    if isinstance(exc, ConnectionError):
        return f"connection lost: {text}"
    if isinstance(exc, AssociationAborted):
        return f"association aborted by the peer ({text})"
    return text


def _pdata_body(transport: Transport, limit: int, expected: str) -> bytes:
    """The body of the next PDU, which must be a P-DATA-TF: an A-ABORT raises
    ``AssociationAborted``, any other PDU a ``ProtocolError`` saying ``expected`` was not it."""
    pdu_type, body = transport.recv_pdu(limit)
    return _pdata(pdu_type, body, expected)


def _pdata(pdu_type: int, body: bytes, expected: str) -> bytes:
    """``body``, when ``pdu_type`` is P-DATA-TF (or what the transport read of one): an
    A-ABORT raises ``AssociationAborted``, any other PDU a ``ProtocolError``."""
    if pdu_type == pdu.ABORT:
        ab = pdu.decode_abort(body)
        raise AssociationAborted(ab.source, ab.reason, ab.describe())
    if pdu_type != pdu.P_DATA_TF:
        name = pdu.PDU_NAMES.get(pdu_type, f"PDU type 0x{pdu_type:02X}")
        raise ProtocolError(f"expected {expected}, got {name}")
    return body
