"""DIMSE command sets (group 0000, always Implicit VR Little Endian) and status meanings (PS3.7).

Owns the bytes of C-ECHO/C-STORE requests and the parsing of their responses. When and where
they are sent is ``association``'s business.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from ..errors import ProtocolError

C_STORE_RQ = 0x0001
C_STORE_RSP = 0x8001
C_ECHO_RQ = 0x0030
C_ECHO_RSP = 0x8030
N_EVENT_REPORT_RQ = 0x0100
N_EVENT_REPORT_RSP = 0x8100
N_ACTION_RQ = 0x0130
N_ACTION_RSP = 0x8130

RESPONSE = 0x8000
"""The bit a response's Command Field adds to its request's."""

NO_DATASET = 0x0101
DATASET_PRESENT = 0x0001

# The statuses fastpush answers with, as an SCP (PS3.4 B.2.3, PS3.7 C).
SUCCESS = 0x0000
UNRECOGNIZED_OPERATION = 0x0211
# Transient, as a peer may answer it: it cannot take more now.
RESOURCE_LIMITATION = 0x0213
# Transient: the sender may try again later (full disk, descriptors exhausted).
OUT_OF_RESOURCES = 0xA700
# Permanent: the dataset is not the instance the command announced, or its class does not fit
# the presentation context.
DATASET_MISMATCH = 0xA900
# Permanent: the dataset does not parse, or what it needs cannot be done with it at all (a name
# the file system cannot hold). Sending it again would fail again.
CANNOT_UNDERSTAND = 0xC000

_GROUP_LENGTH = 0x00000000
_AFFECTED_SOP_CLASS = 0x00000002
_REQUESTED_SOP_CLASS = 0x00000003
_COMMAND_FIELD = 0x00000100
_MESSAGE_ID = 0x00000110
_RESPONDED_TO = 0x00000120
_PRIORITY = 0x00000700
_DATASET_TYPE = 0x00000800
_STATUS = 0x00000900
_ERROR_COMMENT = 0x00000902
_AFFECTED_SOP_INSTANCE = 0x00001000
_REQUESTED_SOP_INSTANCE = 0x00001001
_EVENT_TYPE = 0x00001002
_ACTION_TYPE = 0x00001008

_US_TAGS = {_COMMAND_FIELD, _MESSAGE_ID, _RESPONDED_TO, _PRIORITY, _DATASET_TYPE, _STATUS}
_UID_TAGS = {
    _AFFECTED_SOP_CLASS,
    _AFFECTED_SOP_INSTANCE,
    _REQUESTED_SOP_CLASS,
    _REQUESTED_SOP_INSTANCE,
}
_ELEMENT = struct.Struct("<HHI")
_UNPACK = _ELEMENT.unpack_from


def _element(tag: int, value: bytes) -> bytes:
    if len(value) % 2:
        value += b"\0" if tag in _UID_TAGS else b" "
    return _ELEMENT.pack(tag >> 16, tag & 0xFFFF, len(value)) + value


def _command(elements: list[tuple[int, bytes]]) -> bytes:
    body = b"".join(_element(tag, value) for tag, value in sorted(elements))
    return _element(_GROUP_LENGTH, struct.pack("<I", len(body))) + body


def _us(value: int) -> bytes:
    return struct.pack("<H", value)


def echo_rq(message_id: int) -> bytes:
    return _command(
        [
            (_AFFECTED_SOP_CLASS, b"1.2.840.10008.1.1"),
            (_COMMAND_FIELD, _us(C_ECHO_RQ)),
            (_MESSAGE_ID, _us(message_id)),
            (_DATASET_TYPE, _us(NO_DATASET)),
        ]
    )


def store_rq(
    message_id: int, sop_class_uid: str, sop_instance_uid: str, priority: int = 0
) -> bytes:
    return _command(
        [
            (_AFFECTED_SOP_CLASS, sop_class_uid.encode("ascii")),
            (_COMMAND_FIELD, _us(C_STORE_RQ)),
            (_MESSAGE_ID, _us(message_id)),
            (_PRIORITY, _us(priority)),
            (_DATASET_TYPE, _us(DATASET_PRESENT)),
            (_AFFECTED_SOP_INSTANCE, sop_instance_uid.encode("ascii")),
        ]
    )


def response(
    command_field: int,
    responded_to: int,
    status: int,
    sop_class_uid: str,
    sop_instance_uid: str = "",
    error_comment: str = "",
) -> bytes:
    """A response command set; what an SCP (the embedded one, test peers) sends back.
    ``error_comment`` (0000,0902), for a failure, says why (ASCII, at most 64 characters)."""
    elements = [
        (_AFFECTED_SOP_CLASS, sop_class_uid.encode("ascii")),
        (_COMMAND_FIELD, _us(command_field)),
        (_RESPONDED_TO, _us(responded_to)),
        (_DATASET_TYPE, _us(NO_DATASET)),
        (_STATUS, _us(status)),
    ]
    if sop_instance_uid:
        elements.append((_AFFECTED_SOP_INSTANCE, sop_instance_uid.encode("ascii")))
    if error_comment:
        elements.append((_ERROR_COMMENT, error_comment[:64].encode("ascii", "replace")))
    return _command(elements)


def n_command(
    command_field: int,
    sop_class_uid: str,
    sop_instance_uid: str,
    type_id: int,
    *,
    message_id: int | None = None,
    responded_to: int | None = None,
    status: int | None = None,
    has_dataset: bool = False,
) -> bytes:
    """An N-ACTION or N-EVENT-REPORT request or response (PS3.7 10.3). A request names the
    instance acted on as Requested (N-ACTION) or Affected (N-EVENT-REPORT) SOP Class/Instance,
    a response as Affected; ``type_id`` is the Action or Event Type ID."""
    requested = command_field == N_ACTION_RQ
    type_tag = _ACTION_TYPE if command_field & ~RESPONSE == N_ACTION_RQ else _EVENT_TYPE
    elements = [
        (_REQUESTED_SOP_CLASS if requested else _AFFECTED_SOP_CLASS, sop_class_uid.encode("ascii")),
        (
            _REQUESTED_SOP_INSTANCE if requested else _AFFECTED_SOP_INSTANCE,
            sop_instance_uid.encode("ascii"),
        ),
        (_COMMAND_FIELD, _us(command_field)),
        (_DATASET_TYPE, _us(DATASET_PRESENT if has_dataset else NO_DATASET)),
        (type_tag, _us(type_id)),
    ]
    if message_id is not None:
        elements.append((_MESSAGE_ID, _us(message_id)))
    if responded_to is not None:
        elements.append((_RESPONDED_TO, _us(responded_to)))
    if status is not None:
        elements.append((_STATUS, _us(status)))
    return _command(elements)


@dataclass(frozen=True)
class Command:
    """The fields of a received command set that fastpush acts on."""

    command_field: int
    message_id: int | None
    responded_to: int | None
    status: int | None
    has_dataset: bool
    sop_class_uid: str
    sop_instance_uid: str
    error_comment: str
    type_id: int | None = None
    """The Action Type ID of an N-ACTION, the Event Type ID of an N-EVENT-REPORT."""


def decode(data: bytes, *, strict: bool = False) -> Command:
    """Parse a command set; raise ProtocolError when it is malformed.

    ``strict`` (what a received request gets): a Command Group Length (0000,0000) that is not
    the length of the rest of the command set is malformed too. Responses from peers are read
    leniently: a sloppy SCP's length does not make its status unreadable."""
    # Module-level helpers and no memoryview: a router decodes two command sets per file.
    if type(data) is not bytes:
        data = bytes(data)
    values: dict[int, bytes] = {}
    pos, size = 0, len(data)
    while pos < size:
        if pos + 8 > size:
            raise ProtocolError("command set ends inside an element header")
        group, elem, length = _UNPACK(data, pos)
        if group != 0:
            raise ProtocolError(f"command set holds element ({group:04X},{elem:04X})")
        end = pos + 8 + length
        if end > size:
            raise ProtocolError(f"command element (0000,{elem:04X}) runs past the command set")
        values[elem] = data[pos + 8 : end]
        pos = end
    if strict and _GROUP_LENGTH in values:
        raw = values[_GROUP_LENGTH]
        if len(raw) != 4 or int.from_bytes(raw, "little") != size - 12:
            raise ProtocolError(
                f"Command Group Length (0000,0000) is not the {size - 12} bytes that follow it"
            )
    field = _decoded_us(values, _COMMAND_FIELD)
    if field is None:
        raise ProtocolError("command set has no Command Field (0000,0100)")
    dataset_type = _decoded_us(values, _DATASET_TYPE)
    comment = values.get(_ERROR_COMMENT)
    type_tag = _ACTION_TYPE if _ACTION_TYPE in values else _EVENT_TYPE
    return Command(
        command_field=field,
        message_id=_decoded_us(values, _MESSAGE_ID),
        responded_to=_decoded_us(values, _RESPONDED_TO),
        status=_decoded_us(values, _STATUS),
        has_dataset=dataset_type is not None and dataset_type != NO_DATASET,
        # An N-ACTION request names its instance as Requested; everything else as Affected.
        sop_class_uid=_decoded_uid(values, _AFFECTED_SOP_CLASS)
        or _decoded_uid(values, _REQUESTED_SOP_CLASS),
        sop_instance_uid=_decoded_uid(values, _AFFECTED_SOP_INSTANCE)
        or _decoded_uid(values, _REQUESTED_SOP_INSTANCE),
        error_comment="" if comment is None else comment.decode("ascii", "replace").rstrip("\0 "),
        type_id=_decoded_us(values, type_tag),
    )


def _decoded_us(values: dict[int, bytes], tag: int) -> int | None:
    raw = values.get(tag)
    if raw is None:
        return None
    if len(raw) != 2:
        raise ProtocolError(f"command element (0000,{tag:04X}) must be 2 bytes, got {len(raw)}")
    return raw[0] | raw[1] << 8


def _decoded_uid(values: dict[int, bytes], tag: int) -> str:
    raw = values.get(tag)
    if not raw:
        return ""
    try:
        return raw.rstrip(b"\0 ").decode("ascii")
    except UnicodeDecodeError:
        # A UID is digits and dots: one that is not ASCII could not even be answered.
        raise ProtocolError(f"command element (0000,{tag:04X}) is not an ASCII UID") from None


class StatusCategory(enum.Enum):
    SUCCESS = "success"
    WARNING = "warning"
    FAILURE = "failure"
    CANCEL = "cancel"
    PENDING = "pending"


_KNOWN = {
    0x0000: "Success",
    0x0001: "Requested optional attributes are not supported",
    0x0107: "Attribute list error",
    0x0116: "Attribute value out of range",
    0xB000: "Coercion of data elements",
    0xB006: "Elements discarded",
    0xB007: "Data set does not match SOP class",
    0x0105: "No such attribute",
    0x0106: "Invalid attribute value",
    0x0110: "Processing failure",
    0x0111: "Duplicate SOP Instance",
    0x0112: "No such SOP Instance",
    0x0117: "Invalid object instance",
    0x0118: "No such SOP class",
    0x0119: "Class-instance conflict",
    0x0120: "Missing attribute",
    0x0121: "Missing attribute value",
    0x0122: "SOP class not supported",
    0x0124: "Not authorized",
    0x0210: "Duplicate invocation",
    0x0211: "Unrecognized operation",
    0x0212: "Mistyped argument",
    0x0213: "Resource limitation",
    0xFE00: "Cancel",
}


def category(status: int) -> StatusCategory:
    """The class of a DIMSE status, as PS3.7 Annex C and the C-STORE service define it."""
    if status == 0x0000:
        return StatusCategory.SUCCESS
    if status in (0x0001, 0x0107, 0x0116) or 0xB000 <= status <= 0xBFFF:
        return StatusCategory.WARNING
    if status == 0xFE00:
        return StatusCategory.CANCEL
    if status in (0xFF00, 0xFF01):
        return StatusCategory.PENDING
    return StatusCategory.FAILURE


def out_of_resources(status: int) -> bool:
    """An Out of Resources status of C-STORE: any ``0xA7xx``."""
    return status >> 8 == OUT_OF_RESOURCES >> 8


def describe(status: int) -> str:
    """``0xA700`` → ``"0xA700 Out of resources"`` and the like."""
    text = _KNOWN.get(status)
    if text is None:
        high = status >> 8
        if high == 0xA7:
            text = "Out of resources"
        elif high == 0xA9:
            text = "Data set does not match SOP class"
        elif 0xA0 <= high <= 0xAF:
            text = "Refused"
        elif 0xC0 <= high <= 0xCF:
            text = "Cannot understand"
        elif 0xB0 <= high <= 0xBF:
            text = "Warning"
        else:
            text = category(status).value.capitalize()
    return f"0x{status:04X} {text}"
