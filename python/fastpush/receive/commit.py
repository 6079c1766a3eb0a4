"""Storage Commitment on the accepting side, both ways round.

As the SCP (``serve``): an N-ACTION is answered, the instances it names are checked (those this
server stored, or an ``on_commit`` hook's verdict), and the N-EVENT-REPORT is sent on the same
association; one not answered there before the association ends is sent on a new association
to the requester, by a ``send_report`` callable given from above (opening associations is the
requestor side's work).

As the SCU's listener (``report_listener``): an N-EVENT-REPORT on an association the SCP opened
to us is answered with what ``on_report`` says.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..logtext import peer_text
from ..wire import commitment, dimse
from ..wire.commitment import Reference, Report

if TYPE_CHECKING:
    from .association import _Context
    from .storage import Storage

log = logging.getLogger("fastpush.receive.server")

CommitCheck = Callable[[Sequence[Reference], str], Mapping[str, int]]
"""Called with the instances an N-ACTION names and the requester's AE title: returns the SOP
Instance UIDs not committed, each with its Failure Reason (e.g. ``0x0112``); the rest are."""

ReportSender = Callable[[str, Report], None]
"""Sends a report on a new association to the AE titled by its first argument; raises
``OSError`` or a ``FastpushError`` when it cannot."""

# The stored instances remembered for the default check: a requester asks about what it has
# just sent, so the most recent suffice, and memory stays bounded.
_REMEMBERED = 1_000_000


@dataclass
class Commitment:
    """What a :class:`~fastpush.StorageServer` does with Storage Commitment.

    ``on_commit`` decides which instances are committed (default: those this server stored
    and still holds). ``send_report(calling_ae, report)`` delivers a report the requester's
    association ended before taking (None: such a report is logged and dropped).
    ``on_report`` makes the server a listener for reports instead (see :class:`ReportListener`).
    """

    on_commit: CommitCheck | None = None
    send_report: ReportSender | None = None
    on_report: Callable[[Report, str], int] | None = None
    _stored: OrderedDict[str, tuple[str, Path | None]] = field(
        default_factory=OrderedDict, init=False, repr=False
    )
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def remember(self, sop_class_uid: str, sop_instance_uid: str, path: Path | None) -> None:
        """An instance was stored (at ``path``, or handed to ``on_store`` when None)."""
        with self._lock:
            self._stored[sop_instance_uid] = (sop_class_uid, path)
            self._stored.move_to_end(sop_instance_uid)
            if len(self._stored) > _REMEMBERED:
                self._stored.popitem(last=False)

    def check(
        self, references: Sequence[Reference], calling_ae: str, storage: Storage | None
    ) -> Report:
        """The report for ``references``, not yet with its transaction UID."""
        if self.on_commit is not None:
            failed = self.on_commit(references, calling_ae)
        else:
            failed = {}
            for ref in references:
                reason = self._missing(ref, storage)
                if reason is not None:
                    failed[ref.sop_instance_uid] = reason
        return Report(
            "",
            tuple(r for r in references if r.sop_instance_uid not in failed),
            tuple(
                (r, failed[r.sop_instance_uid]) for r in references if r.sop_instance_uid in failed
            ),
        )

    def _missing(self, ref: Reference, storage: Storage | None) -> int | None:
        with self._lock:
            known = self._stored.get(ref.sop_instance_uid)
        if known is None:
            if storage is not None and storage.layout.value == "flat":
                # Stored before this server started, perhaps: the flat layout names it.
                named = storage.directory / storage.name(ref.sop_class_uid, ref.sop_instance_uid)
                if named.is_file():
                    return None
            return commitment.NO_SUCH_INSTANCE
        sop_class, path = known
        if sop_class != ref.sop_class_uid:
            return commitment.CLASS_INSTANCE_CONFLICT
        if path is not None and not path.is_file():
            return commitment.NO_SUCH_INSTANCE
        return None


def answer_action(context: _Context, command: dimse.Command, context_id: int) -> None:
    """An N-ACTION-RQ (its dataset not read yet): answer it, then send its report."""
    server = context.server
    transport = context.transport
    data = transport.receive_dataset(server.accept.max_pdu, memory=True)[1]
    syntax = context.syntaxes[context_id]
    message_id = command.message_id or 0
    policy = server.commitment
    if (
        policy is None
        or command.sop_class_uid != commitment.STORAGE_COMMITMENT
        or command.type_id != commitment.REQUEST_COMMITMENT
    ):
        log.warning("Refusing N-ACTION %s", peer_text(command.sop_class_uid))
        transport.send_message(
            context_id,
            commitment.action_rsp(message_id, dimse.UNRECOGNIZED_OPERATION),
            context.peer_max,
        )
        return
    try:
        transaction, references = commitment.decode_request(data or b"", syntax)
    except Exception as exc:
        log.warning("N-ACTION dataset refused: %s", peer_text(exc, 256))
        transport.send_message(
            context_id, commitment.action_rsp(message_id, dimse.CANNOT_UNDERSTAND), context.peer_max
        )
        return
    log.info(
        "Received Storage Commitment Request (transaction %s, %d instances)",
        peer_text(transaction),
        len(references),
    )
    transport.send_message(
        context_id, commitment.action_rsp(message_id, dimse.SUCCESS), context.peer_max
    )
    checked = policy.check(references, context.rq.calling_ae, server.storage)
    report = Report(transaction, checked.committed, checked.failed)
    context.report_id += 1
    context.reports[context.report_id] = (context_id, report)
    event = commitment.event_report_rq(context.report_id, report.event_type)
    for packet in commitment.p_data(
        context_id, event, commitment.encode_report(report, syntax), context.peer_max
    ):
        transport.send_pdu(packet)
    log.info(
        "Sent N-EVENT-REPORT (transaction %s: %d committed, %d failed)",
        peer_text(transaction),
        len(report.committed),
        len(report.failed),
    )


def answered(context: _Context, command: dimse.Command, _context_id: int) -> None:
    """An N-EVENT-REPORT-RSP: the requester took that report."""
    sent = context.reports.pop(command.responded_to or 0, None)
    if sent is not None and dimse.category(command.status or 0) is dimse.StatusCategory.FAILURE:
        log.warning(
            "The requester refused the report of transaction %s (%s)",
            peer_text(sent[1].transaction_uid),
            dimse.describe(command.status or 0),
        )


def deliver_undelivered(context: _Context) -> None:
    """The association ended before the requester answered these reports: send each on an
    association of our own."""
    policy = context.server.commitment
    calling_ae = context.rq.calling_ae
    for _, report in context.reports.values():
        if policy is None or policy.send_report is None:
            log.warning(
                "Cannot send the report of transaction %s: no way to reach %s (--commit-peer)",
                peer_text(report.transaction_uid),
                peer_text(calling_ae),
            )
            continue
        try:
            policy.send_report(calling_ae, report)
        except Exception as exc:
            log.warning(
                "Cannot send the report of transaction %s to %s: %s",
                peer_text(report.transaction_uid),
                peer_text(calling_ae),
                peer_text(exc, 256),
            )
        else:
            log.info(
                "Sent N-EVENT-REPORT of transaction %s to %s on a new association",
                peer_text(report.transaction_uid),
                peer_text(calling_ae),
            )
    context.reports.clear()


def answer_report(context: _Context, command: dimse.Command, context_id: int) -> None:
    """An N-EVENT-REPORT-RQ on an association the SCP opened to our listener."""
    transport = context.transport
    data = transport.receive_dataset(context.server.accept.max_pdu, memory=True)[1]
    policy = context.server.commitment
    event_type = command.type_id or commitment.ALL_COMMITTED
    status = dimse.UNRECOGNIZED_OPERATION
    if policy is not None and policy.on_report is not None:
        try:
            report = commitment.decode_report(data or b"", context.syntaxes[context_id])
        except Exception as exc:
            log.warning("N-EVENT-REPORT dataset refused: %s", peer_text(exc, 256))
            status = dimse.CANNOT_UNDERSTAND
        else:
            status = policy.on_report(report, context.rq.calling_ae)
    transport.send_message(
        context_id,
        commitment.event_report_rsp(command.message_id or 0, event_type, status),
        context.peer_max,
    )
