"""Storage Commitment Push Model (PS3.4 Annex J): its SOP class, the N-ACTION request and the
N-EVENT-REPORT it is answered with, as datasets, and the P-DATA-TF PDUs that carry them.

The datasets are tiny (a Transaction UID and a list of references) and never on the per-file
path, so pydicom encodes and decodes them. Who sends them when is ``send.commit``'s (the SCU)
and ``receive.commit``'s (the SCP) business.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from io import BytesIO
from typing import TYPE_CHECKING

from ..errors import FastpushError, ProtocolError
from ..uids import EXPLICIT_VR_LE, IMPLICIT_VR_LE
from . import dimse

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

STORAGE_COMMITMENT = "1.2.840.10008.1.20.1"
"""Storage Commitment Push Model SOP Class."""
WELL_KNOWN_INSTANCE = "1.2.840.10008.1.20.1.1"
"""Its well-known SOP Instance, the one every N-ACTION and N-EVENT-REPORT names."""
SYNTAXES = (EXPLICIT_VR_LE, IMPLICIT_VR_LE)
"""The transfer syntaxes proposed for its presentation context."""

REQUEST_COMMITMENT = 1
"""Action Type ID of the N-ACTION: request storage commitment."""
ALL_COMMITTED = 1
"""Event Type ID of an N-EVENT-REPORT whose every instance is committed."""
SOME_FAILED = 2
"""Event Type ID of an N-EVENT-REPORT with a Failed SOP Sequence."""

# Failure Reasons (PS3.3 C.14.1.1).
PROCESSING_FAILURE = 0x0110
NO_SUCH_INSTANCE = 0x0112
CLASS_INSTANCE_CONFLICT = 0x0119
FAILURE_REASONS = {
    PROCESSING_FAILURE: "processing failure",
    NO_SUCH_INSTANCE: "no such object instance",
    0x0213: "resource limitation",
    0x0122: "referenced SOP class not supported",
    CLASS_INSTANCE_CONFLICT: "class/instance conflict",
    0x0131: "duplicate transaction UID",
}


class CommitmentError(FastpushError):
    """Storage Commitment could not be asked for: the peer did not accept its presentation
    context ("the peer does not support Storage Commitment") or refused the N-ACTION."""


@dataclass(frozen=True)
class Reference:
    """One instance asked about: its SOP Class and SOP Instance UIDs."""

    sop_class_uid: str
    sop_instance_uid: str


@dataclass(frozen=True)
class Report:
    """What an N-EVENT-REPORT says of one transaction: the instances committed, and those
    that failed with their Failure Reason."""

    transaction_uid: str
    committed: tuple[Reference, ...] = ()
    failed: tuple[tuple[Reference, int], ...] = field(default=())

    @property
    def event_type(self) -> int:
        return SOME_FAILED if self.failed else ALL_COMMITTED


def failure_text(reason: int) -> str:
    """``0x0112`` → ``"not committed: 0x0112 no such object instance"``."""
    return f"not committed: 0x{reason:04X} {FAILURE_REASONS.get(reason, 'failure')}"


def _encode(dataset: Dataset, syntax: str) -> bytes:
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset

    buffer = DicomBytesIO()
    buffer.is_little_endian = True
    buffer.is_implicit_VR = syntax == IMPLICIT_VR_LE
    write_dataset(buffer, dataset)
    return buffer.getvalue()


def _items(references: Iterable[Reference], reasons: Iterable[int] | None = None) -> list[Dataset]:
    from pydicom.dataset import Dataset

    items = []
    reason_list = None if reasons is None else list(reasons)
    for index, ref in enumerate(references):
        item = Dataset()
        item.ReferencedSOPClassUID = ref.sop_class_uid
        item.ReferencedSOPInstanceUID = ref.sop_instance_uid
        if reason_list is not None:
            item.FailureReason = reason_list[index]
        items.append(item)
    return items


def encode_request(transaction_uid: str, references: Iterable[Reference], syntax: str) -> bytes:
    """The N-ACTION-RQ dataset: Transaction UID and Referenced SOP Sequence."""
    from pydicom.dataset import Dataset

    dataset = Dataset()
    dataset.TransactionUID = transaction_uid
    dataset.ReferencedSOPSequence = _items(references)
    return _encode(dataset, syntax)


def encode_report(report: Report, syntax: str) -> bytes:
    """The N-EVENT-REPORT-RQ dataset: Transaction UID, Referenced SOP Sequence (committed),
    Failed SOP Sequence (with Failure Reasons) when some failed."""
    from pydicom.dataset import Dataset

    dataset = Dataset()
    dataset.TransactionUID = report.transaction_uid
    if report.committed:
        dataset.ReferencedSOPSequence = _items(report.committed)
    if report.failed:
        dataset.FailedSOPSequence = _items(
            (ref for ref, _ in report.failed), (reason for _, reason in report.failed)
        )
    return _encode(dataset, syntax)


def _decode(data: bytes, syntax: str) -> Dataset:
    from pydicom.filereader import read_dataset

    try:
        return read_dataset(BytesIO(data), syntax == IMPLICIT_VR_LE, True)
    except Exception as exc:  # pydicom raises whatever the bytes provoke
        raise ProtocolError(f"Storage Commitment dataset does not parse: {exc}") from exc


def _references(dataset: Dataset, keyword: str) -> list[tuple[Reference, int]]:
    found = []
    for item in getattr(dataset, keyword, None) or ():
        ref = Reference(
            str(getattr(item, "ReferencedSOPClassUID", "")),
            str(getattr(item, "ReferencedSOPInstanceUID", "")),
        )
        found.append((ref, int(getattr(item, "FailureReason", PROCESSING_FAILURE))))
    return found


def _transaction(dataset: Dataset) -> str:
    transaction = str(getattr(dataset, "TransactionUID", "") or "")
    if not transaction:
        raise ProtocolError("Storage Commitment dataset without a Transaction UID")
    return transaction


def decode_request(data: bytes, syntax: str) -> tuple[str, tuple[Reference, ...]]:
    """The Transaction UID and the references of an N-ACTION-RQ dataset."""
    dataset = _decode(data, syntax)
    refs = tuple(ref for ref, _ in _references(dataset, "ReferencedSOPSequence"))
    return _transaction(dataset), refs


def decode_report(data: bytes, syntax: str) -> Report:
    """An N-EVENT-REPORT-RQ dataset."""
    dataset = _decode(data, syntax)
    return Report(
        _transaction(dataset),
        tuple(ref for ref, _ in _references(dataset, "ReferencedSOPSequence")),
        tuple(_references(dataset, "FailedSOPSequence")),
    )


def action_rq(message_id: int) -> bytes:
    return dimse.n_command(
        dimse.N_ACTION_RQ,
        STORAGE_COMMITMENT,
        WELL_KNOWN_INSTANCE,
        REQUEST_COMMITMENT,
        message_id=message_id,
        has_dataset=True,
    )


def action_rsp(responded_to: int, status: int) -> bytes:
    return dimse.n_command(
        dimse.N_ACTION_RSP,
        STORAGE_COMMITMENT,
        WELL_KNOWN_INSTANCE,
        REQUEST_COMMITMENT,
        responded_to=responded_to,
        status=status,
    )


def event_report_rq(message_id: int, event_type: int) -> bytes:
    return dimse.n_command(
        dimse.N_EVENT_REPORT_RQ,
        STORAGE_COMMITMENT,
        WELL_KNOWN_INSTANCE,
        event_type,
        message_id=message_id,
        has_dataset=True,
    )


def event_report_rsp(responded_to: int, event_type: int, status: int) -> bytes:
    return dimse.n_command(
        dimse.N_EVENT_REPORT_RSP,
        STORAGE_COMMITMENT,
        WELL_KNOWN_INSTANCE,
        event_type,
        responded_to=responded_to,
        status=status,
    )


_PDV = struct.Struct(">BxIIBB")


def p_data(context_id: int, command: bytes, dataset: bytes, max_pdu: int) -> Iterator[bytes]:
    """The P-DATA-TF PDUs of one small message, one PDV each, within the peer's ``max_pdu``
    (0: no limit): for a side whose transport sends only commands."""
    room = max_pdu - 6 if max_pdu else max(len(command), len(dataset), 2)
    for data, flags in ((command, 1), (dataset, 0)):
        for start in range(0, len(data), room):
            fragment = data[start : start + room]
            last = 2 if start + room >= len(data) else 0
            yield (
                _PDV.pack(0x04, 6 + len(fragment), 2 + len(fragment), context_id, flags | last)
                + fragment
            )
