"""Storage Commitment as the SCU: after the files of an association are stored, one N-ACTION
for the batch, then the N-EVENT-REPORT, and each result marked committed or not.

The report comes on the same association (the SCP sends it while we wait), or on a new
association the SCP opens to us: listening for that is acceptor work, so it arrives through a
:class:`ReportWaiter` given from above (``receive.commit.ReportListener``, wired by the CLI or
the caller). ``client`` decides when a batch is committed; ``association`` moves the messages.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from ..errors import AssociationAborted, ProtocolError
from ..wire import dimse
from ..wire.commitment import (
    STORAGE_COMMITMENT,
    SYNTAXES,
    CommitmentError,
    Reference,
    Report,
    failure_text,
    new_transaction_uid,
)
from ..wire.pdu import RoleSelection
from .association import Association
from .failure import Failure
from .options import ConnectionKeywords, ConnectionOptions, connection_options
from .results import Result

if TYPE_CHECKING:
    from typing_extensions import Unpack

log = logging.getLogger(__name__)


class ReportWaiter(Protocol):
    """Hands over the N-EVENT-REPORTs that arrive on associations the SCP opens to us."""

    def expect(self, transaction_uid: str, ae_title: str) -> None:
        """Await a report of ``transaction_uid`` from the AE titled ``ae_title`` (only)."""

    def wait(self, transaction_uid: str, timeout: float | None) -> Report | None:
        """The report once it arrived, or None after ``timeout`` seconds; forgets it."""

    def forget(self, transaction_uid: str) -> None:
        """No report of ``transaction_uid`` is awaited any more."""


@dataclass(frozen=True)
class CommitOptions:
    """Ask the peer to commit to keeping what it stored (Storage Commitment Push Model).

    ``timeout``: seconds to wait for the N-EVENT-REPORT (None: no limit); a file not reported
    by then is not committed. ``waiter``: receives reports on associations the peer opens to
    us (a ``ReportListener``); without one the report is awaited on the association that
    stored the files. ``batch``: the most instances one N-ACTION asks about; an association
    is released after that many stores, or when no more files wait.
    """

    timeout: float | None = 60.0
    waiter: ReportWaiter | None = None
    batch: int = 1000

    def __post_init__(self) -> None:
        if self.batch < 1:
            raise ValueError(f"a commitment batch holds at least 1 instance, not {self.batch}")


def commit(
    association: Association,
    results: Sequence[Result],
    options: CommitOptions,
    transaction_uid: str | None = None,
) -> None:
    """Ask ``association``'s peer to commit to ``results`` (stored on it, or on another of our
    associations), release the association, and mark each result committed or failed with the
    reason. ``transaction_uid``: the one to use (default: a new one)."""
    transaction = transaction_uid or new_transaction_uid()
    references = [Reference(r.sop_class_uid or "", r.sop_instance_uid or "") for r in results]
    waiter = options.waiter
    try:
        if waiter is not None:
            waiter.expect(transaction, association.connection.called_ae)
        association.request_commitment(transaction, references)
        if waiter is None:
            report = association.wait_report(transaction, options.timeout)
            association.release()
        else:
            # A report sent on this association while it is released is dropped: the peer
            # sends it again on one of its own.
            association.release()
            found = waiter.wait(transaction, options.timeout)
            if found is None:
                raise TimeoutError(f"no N-EVENT-REPORT within {options.timeout:g} s")
            report = found
    except (CommitmentError, OSError, ProtocolError, AssociationAborted) as exc:
        if waiter is not None:
            waiter.forget(transaction)
        reason = f"not committed: {exc or type(exc).__name__}"
        log.warning("%d instances %s", len(results), reason)
        for result in results:
            not_committed(result, reason)
        return
    settle(results, report)


def send_report(
    host: str,
    port: int,
    report: Report,
    *,
    connection: ConnectionOptions | None = None,
    **options: Unpack[ConnectionKeywords],
) -> None:
    """Send ``report`` to the requester at ``host:port`` on an association of our own, as the
    Storage Commitment SCP (proposing that role); ``connection`` or its fields as keywords say
    how. Raises ``OSError`` or a ``FastpushError`` (the requester refused the association, the
    context or the report)."""
    with Association(
        host,
        port,
        [(STORAGE_COMMITMENT, SYNTAXES)],
        connection=connection_options(connection, options),
        roles=[RoleSelection(STORAGE_COMMITMENT, scu=False, scp=True)],
    ) as association:
        status = association.send_report(report)
    if dimse.category(status) is dimse.StatusCategory.FAILURE:
        raise CommitmentError(f"the requester refused the report: {dimse.describe(status)}")


def settle(results: Sequence[Result], report: Report) -> None:
    """Mark ``results`` as ``report`` says: committed, failed with its Failure Reason, or
    failed because the report does not mention it."""
    failed = {ref.sop_instance_uid: reason for ref, reason in report.failed}
    committed = {ref.sop_instance_uid for ref in report.committed}
    for result in results:
        uid = result.sop_instance_uid or ""
        if uid in failed:
            not_committed(result, failure_text(failed[uid]))
        elif uid in committed:
            result.committed = True
        else:
            not_committed(result, "not committed: the N-EVENT-REPORT does not mention it")


def not_committed(result: Result, reason: str) -> None:
    """``result`` was stored but is not committed: a failure (exit code, ``--resume``)."""
    status = result.status
    result.fail(Failure.COMMITMENT, reason, status=status)
    result.committed = False
