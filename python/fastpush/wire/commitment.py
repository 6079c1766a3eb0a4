"""Storage Commitment Push Model (PS3.4 Annex J): its SOP class, the N-ACTION request and the
N-EVENT-REPORT it is answered with, as datasets, and the P-DATA-TF PDUs that carry them.

The datasets are flat (a Transaction UID and sequences of two UIDs per item), so they are
written and read by hand, as ``dataset.meta`` writes the file meta: a batch of thousands of
references costs milliseconds, and no pydicom import on the sender's path. Who sends them
when is ``send.commit``'s (the SCU) and ``receive.commit``'s (the SCP) business.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from ..errors import FastpushError, ProtocolError
from ..uids import EXPLICIT_VR_LE, IMPLICIT_VR_LE
from . import dimse

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


# The elements of the two datasets (PS3.4 J.3): tag -> VR.
TRANSACTION_UID = 0x00081195
REFERENCED_SOP_SEQUENCE = 0x00081199
FAILED_SOP_SEQUENCE = 0x00081198
REFERENCED_SOP_CLASS_UID = 0x00081150
REFERENCED_SOP_INSTANCE_UID = 0x00081155
FAILURE_REASON = 0x00081197
# In Implicit VR only the tag says a defined-length element is a sequence; the others we skip.
_SEQUENCES = frozenset((REFERENCED_SOP_SEQUENCE, FAILED_SOP_SEQUENCE))
_ITEM = 0xFFFEE000
_ITEM_END = 0xFFFEE00D
_SEQUENCE_END = 0xFFFEE0DD
_UNDEFINED = 0xFFFFFFFF
# Explicit VRs whose length is 4 bytes after two reserved ones (PS3.5 7.1.2).
_LONG_VRS = frozenset(b"OB OD OF OL OV OW SQ SV UC UN UR UT UV".split())
# Nesting a peer may send (Referenced Performed Procedure Step Sequence holds one more level).
_MAX_DEPTH = 8

_TAG = struct.Struct("<HH")
_SHORT = struct.Struct("<HH2sH")
_LONG = struct.Struct("<HH2s2xI")
_IMPLICIT = struct.Struct("<HHI")
_US = struct.Struct("<H")


def _header(tag: int, vr: bytes, length: int, implicit: bool) -> bytes:
    group, element = tag >> 16, tag & 0xFFFF
    if implicit:
        return _IMPLICIT.pack(group, element, length)
    if vr in _LONG_VRS:
        return _LONG.pack(group, element, vr, length)
    return _SHORT.pack(group, element, vr, length)


def _uid(tag: int, uid: str, implicit: bool) -> bytes:
    raw = uid.encode("ascii")
    if len(raw) % 2:
        raw += b"\0"
    return _header(tag, b"UI", len(raw), implicit) + raw


def _sequence(
    tag: int, references: Iterable[Reference], reasons: list[int] | None, implicit: bool
) -> bytes:
    items = []
    for index, ref in enumerate(references):
        body = _uid(REFERENCED_SOP_CLASS_UID, ref.sop_class_uid, implicit) + _uid(
            REFERENCED_SOP_INSTANCE_UID, ref.sop_instance_uid, implicit
        )
        if reasons is not None:
            body += _header(FAILURE_REASON, b"US", 2, implicit) + _US.pack(reasons[index])
        items.append(_IMPLICIT.pack(0xFFFE, 0xE000, len(body)) + body)
    value = b"".join(items)
    return _header(tag, b"SQ", len(value), implicit) + value


def encode_request(transaction_uid: str, references: Iterable[Reference], syntax: str) -> bytes:
    """The N-ACTION-RQ dataset: Transaction UID and Referenced SOP Sequence (in ``syntax``,
    Explicit or Implicit VR Little Endian; defined lengths)."""
    implicit = syntax == IMPLICIT_VR_LE
    # Elements in ascending tag order, as PS3.5 7.1 requires.
    return _uid(TRANSACTION_UID, transaction_uid, implicit) + _sequence(
        REFERENCED_SOP_SEQUENCE, references, None, implicit
    )


def encode_report(report: Report, syntax: str) -> bytes:
    """The N-EVENT-REPORT-RQ dataset: Transaction UID, Referenced SOP Sequence (committed),
    Failed SOP Sequence (with Failure Reasons) when some failed."""
    implicit = syntax == IMPLICIT_VR_LE
    parts = [_uid(TRANSACTION_UID, report.transaction_uid, implicit)]
    if report.failed:
        parts.append(
            _sequence(
                FAILED_SOP_SEQUENCE,
                (ref for ref, _ in report.failed),
                [reason for _, reason in report.failed],
                implicit,
            )
        )
    if report.committed:
        parts.append(_sequence(REFERENCED_SOP_SEQUENCE, report.committed, None, implicit))
    return b"".join(parts)


_Elements = dict[int, "bytes | list[_Elements]"]


class _Reader:
    """Reads a dataset into ``{tag: value bytes, or a list of items for a sequence}``: every
    element, so that elements we do not use (Retrieve AE Title, a Referenced Performed
    Procedure Step Sequence) are stepped over whatever their lengths."""

    def __init__(self, data: bytes, implicit: bool) -> None:
        self.data = memoryview(data)
        self.implicit = implicit

    def _fail(self, what: str, pos: int) -> ProtocolError:
        return ProtocolError(f"Storage Commitment dataset does not parse: {what} at byte {pos}")

    def dataset(self, pos: int, end: int, depth: int) -> tuple[_Elements, int]:
        """The elements from ``pos`` to ``end`` or to an Item Delimitation (then past it)."""
        if depth > _MAX_DEPTH:
            raise self._fail("sequences nested too deep", pos)
        data = self.data
        elements: _Elements = {}
        while pos < end:
            if pos + 8 > end:
                raise self._fail("truncated element header", pos)
            group, element = _TAG.unpack_from(data, pos)
            tag = group << 16 | element
            vr = b""
            if self.implicit or group == 0xFFFE:
                length = _IMPLICIT.unpack_from(data, pos)[2]
                pos += 8
            else:
                vr = bytes(data[pos + 4 : pos + 6])
                if vr in _LONG_VRS:
                    if pos + 12 > end:
                        raise self._fail("truncated element header", pos)
                    length = _LONG.unpack_from(data, pos)[3]
                    pos += 12
                else:
                    length = _SHORT.unpack_from(data, pos)[3]
                    pos += 8
            if tag == _ITEM_END:
                return elements, pos
            if vr == b"SQ" or length == _UNDEFINED or (self.implicit and tag in _SEQUENCES):
                elements[tag], pos = self.sequence(pos, length, end, depth + 1)
                continue
            if pos + length > end:
                raise self._fail(f"element ({group:04X},{element:04X}) runs past the end", pos)
            elements[tag] = bytes(data[pos : pos + length])
            pos += length
        return elements, pos

    def sequence(self, pos: int, length: int, end: int, depth: int) -> tuple[list[_Elements], int]:
        stop = end if length == _UNDEFINED else pos + length
        if stop > end:
            raise self._fail("sequence runs past the end", pos)
        items: list[_Elements] = []
        while pos < stop:
            if pos + 8 > stop:
                raise self._fail("truncated item header", pos)
            group, element, item_length = _IMPLICIT.unpack_from(self.data, pos)
            tag = group << 16 | element
            pos += 8
            if tag == _SEQUENCE_END:
                return items, pos
            if tag != _ITEM:
                raise self._fail(f"({group:04X},{element:04X}) where an item belongs", pos - 8)
            if item_length == _UNDEFINED:
                item, pos = self.dataset(pos, stop, depth)
            else:
                if pos + item_length > stop:
                    raise self._fail("item runs past its sequence", pos)
                item, _ = self.dataset(pos, pos + item_length, depth)
                pos += item_length
            items.append(item)
        if length == _UNDEFINED:
            raise self._fail("sequence without its delimitation", pos)
        return items, pos


def _decode(data: bytes, syntax: str) -> _Elements:
    return _Reader(data, syntax == IMPLICIT_VR_LE).dataset(0, len(data), 0)[0]


def _text(value: bytes | list[_Elements] | None) -> str:
    if not isinstance(value, bytes):
        return ""
    return value.rstrip(b"\0 ").decode("ascii", "replace").strip()


def _references(dataset: _Elements, tag: int) -> list[tuple[Reference, int]]:
    items = dataset.get(tag)
    found = []
    for item in items if isinstance(items, list) else ():
        ref = Reference(
            _text(item.get(REFERENCED_SOP_CLASS_UID)),
            _text(item.get(REFERENCED_SOP_INSTANCE_UID)),
        )
        reason = item.get(FAILURE_REASON)
        code = _US.unpack(reason)[0] if isinstance(reason, bytes) and len(reason) == 2 else None
        found.append((ref, PROCESSING_FAILURE if code is None else code))
    return found


def _transaction(dataset: _Elements) -> str:
    transaction = _text(dataset.get(TRANSACTION_UID))
    if not transaction:
        raise ProtocolError("Storage Commitment dataset without a Transaction UID")
    return transaction


def decode_request(data: bytes, syntax: str) -> tuple[str, tuple[Reference, ...]]:
    """The Transaction UID and the references of an N-ACTION-RQ dataset."""
    dataset = _decode(data, syntax)
    refs = tuple(ref for ref, _ in _references(dataset, REFERENCED_SOP_SEQUENCE))
    return _transaction(dataset), refs


def decode_report(data: bytes, syntax: str) -> Report:
    """An N-EVENT-REPORT-RQ dataset."""
    dataset = _decode(data, syntax)
    return Report(
        _transaction(dataset),
        tuple(ref for ref, _ in _references(dataset, REFERENCED_SOP_SEQUENCE)),
        tuple(_references(dataset, FAILED_SOP_SEQUENCE)),
    )


def new_transaction_uid() -> str:
    """A fresh Transaction UID: ``2.25.`` and a random UUID as an integer (PS3.5 B.2)."""
    # Here rather than at import: uuid brings platform along (~3 ms), and every sender loads
    # this module while only --commit needs a UID.
    import uuid

    return f"2.25.{uuid.uuid4().int}"


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
