"""Encoding and decoding of the ACSE PDUs (PS3.8 section 9.3) and of P-DATA-TF bodies.

Owns the byte layouts of A-ASSOCIATE-RQ/AC/RJ, A-RELEASE-RQ/RP, A-ABORT and the PDV items of a
received P-DATA-TF, and the Maximum Length each role offers by default. Sending dataset PDVs is
the data path's job (``_core`` / ``transport.pure``); what the PDUs mean for an association is
``association``'s.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass, field

from ..errors import ProtocolError
from ..uids import APPLICATION_CONTEXT
from . import identity
from .identity import UserIdentity

# Re-exported: each role's default PDU length and the AE title rule live in ``limits``, which the
# command line's parser reads without loading this module.
from .limits import ACCEPTOR_MAX_PDU as ACCEPTOR_MAX_PDU
from .limits import REQUESTOR_MAX_PDU as REQUESTOR_MAX_PDU
from .limits import encode_ae_title as encode_ae_title
from .limits import valid_ae_title as valid_ae_title

ASSOCIATE_RQ = 0x01
ASSOCIATE_AC = 0x02
ASSOCIATE_RJ = 0x03
P_DATA_TF = 0x04
RELEASE_RQ = 0x05
RELEASE_RP = 0x06
ABORT = 0x07

PDU_NAMES = {
    ASSOCIATE_RQ: "A-ASSOCIATE-RQ",
    ASSOCIATE_AC: "A-ASSOCIATE-AC",
    ASSOCIATE_RJ: "A-ASSOCIATE-RJ",
    P_DATA_TF: "P-DATA-TF",
    RELEASE_RQ: "A-RELEASE-RQ",
    RELEASE_RP: "A-RELEASE-RP",
    ABORT: "A-ABORT",
}

# Item types inside A-ASSOCIATE-RQ/AC.
_APP_CONTEXT = 0x10
_PC_RQ = 0x20
_PC_AC = 0x21
_ABSTRACT_SYNTAX = 0x30
_TRANSFER_SYNTAX = 0x40
_USER_INFO = 0x50
_MAX_LENGTH = 0x51
_IMPL_CLASS_UID = 0x52
_ROLE_SELECTION = 0x54
_IMPL_VERSION_NAME = 0x55

_HEADER = struct.Struct(">BxI")
_ITEM = struct.Struct(">BxH")
# protocol version, reserved, called AE, calling AE, 32 reserved bytes
_ASSOC_FIXED = struct.Struct(">Hxx16s16s32x")

CONTEXT_RESULTS = {
    0: "acceptance",
    1: "user rejection",
    2: "no reason (provider rejection)",
    3: "abstract syntax not supported",
    4: "transfer syntaxes not supported",
}

_RJ_RESULTS = {1: "rejected-permanent", 2: "rejected-transient"}
_RJ_SOURCES = {
    1: "DICOM UL service-user",
    2: "DICOM UL service-provider (ACSE related function)",
    3: "DICOM UL service-provider (presentation related function)",
}
_RJ_REASONS = {
    (1, 1): "no reason given",
    (1, 2): "application context name not supported",
    (1, 3): "calling AE title not recognized",
    (1, 7): "called AE title not recognized",
    (2, 1): "no reason given",
    (2, 2): "protocol version not supported",
    (3, 1): "temporary congestion",
    (3, 2): "local limit exceeded",
}
_ABORT_SOURCES = {0: "service-user", 1: "reserved", 2: "service-provider"}
_ABORT_REASONS = {
    0: "reason not specified",
    1: "unrecognized PDU",
    2: "unexpected PDU",
    4: "unrecognized PDU parameter",
    5: "unexpected PDU parameter",
    6: "invalid PDU parameter value",
}


@dataclass(frozen=True)
class ContextProposal:
    """One presentation context of an A-ASSOCIATE-RQ."""

    context_id: int
    abstract_syntax: str
    transfer_syntaxes: tuple[str, ...]


@dataclass(frozen=True)
class ContextResult:
    """One presentation context of an A-ASSOCIATE-AC."""

    context_id: int
    result: int
    transfer_syntax: str

    @property
    def accepted(self) -> bool:
        return self.result == 0


@dataclass(frozen=True)
class RoleSelection:
    """An SCP/SCU Role Selection sub-item (PS3.7 D.3.3.4): whether the requestor may act as
    the SCU and as the SCP of ``sop_class_uid``; in an A-ASSOCIATE-AC, what the acceptor
    allows. A report sender (Storage Commitment SCP) opening the association proposes
    ``scu=False, scp=True``."""

    sop_class_uid: str
    scu: bool
    scp: bool


@dataclass(frozen=True)
class AssociateRQ:
    called_ae: str
    calling_ae: str
    contexts: tuple[ContextProposal, ...]
    max_length: int
    implementation_class_uid: str
    implementation_version_name: str = ""
    user_identity: UserIdentity | None = None
    # A bit per version of the upper layer protocol the requestor supports; bit 0 is version 1.
    protocol_version: int = 1
    roles: tuple[RoleSelection, ...] = ()


@dataclass(frozen=True)
class AssociateAC:
    called_ae: str
    calling_ae: str
    contexts: tuple[ContextResult, ...]
    max_length: int
    implementation_class_uid: str = ""
    implementation_version_name: str = ""
    # The acceptor's User Identity server response (0x59 item); None when it sent none.
    user_identity_response: bytes | None = None
    roles: tuple[RoleSelection, ...] = ()


@dataclass(frozen=True)
class AssociateRJ:
    result: int
    source: int
    reason: int

    def describe(self) -> str:
        return (
            f"{_RJ_RESULTS.get(self.result, f'result {self.result}')}, "
            f"source: {_RJ_SOURCES.get(self.source, f'source {self.source}')}, "
            f"reason: {_RJ_REASONS.get((self.source, self.reason), f'reason {self.reason}')}"
        )


@dataclass(frozen=True)
class Abort:
    source: int
    reason: int

    def describe(self) -> str:
        source = _ABORT_SOURCES.get(self.source, f"source {self.source}")
        if self.source == 2:
            return f"A-ABORT from {source}: {_ABORT_REASONS.get(self.reason, self.reason)}"
        return f"A-ABORT from {source}"


@dataclass
class Pdv:
    context_id: int
    is_command: bool
    is_last: bool
    data: memoryview = field(repr=False)


def _pdu(pdu_type: int, body: bytes) -> bytes:
    return _HEADER.pack(pdu_type, len(body)) + body


def _item(item_type: int, value: bytes) -> bytes:
    if len(value) > 0xFFFF:
        raise ValueError(f"item of {len(value)} bytes does not fit a 16-bit length")
    return _ITEM.pack(item_type, len(value)) + value


def _uid(uid: str) -> bytes:
    return uid.encode("ascii")


def _role_items(roles: tuple[RoleSelection, ...]) -> list[bytes]:
    return [
        _item(
            _ROLE_SELECTION,
            struct.pack(">H", len(role.sop_class_uid))
            + _uid(role.sop_class_uid)
            + bytes([role.scu, role.scp]),
        )
        for role in roles
    ]


def _user_info(max_length: int, class_uid: str, version_name: str, *extra: bytes) -> bytes:
    """The user information item; ``extra`` are further encoded sub-items (user identity)."""
    items = _item(_MAX_LENGTH, struct.pack(">I", max_length))
    items += _item(_IMPL_CLASS_UID, _uid(class_uid))
    if version_name:
        items += _item(_IMPL_VERSION_NAME, version_name.encode("ascii"))
    return _item(_USER_INFO, items + b"".join(extra))


def _associate_start(called_ae: str, calling_ae: str, version: int = 1) -> bytearray:
    """The fixed fields and the application context that open an A-ASSOCIATE-RQ/AC body."""
    called, calling = encode_ae_title(called_ae), encode_ae_title(calling_ae)
    body = bytearray(_ASSOC_FIXED.pack(version, called, calling))
    body += _item(_APP_CONTEXT, _uid(APPLICATION_CONTEXT))
    return body


def encode_associate_rq(rq: AssociateRQ) -> bytes:
    body = _associate_start(rq.called_ae, rq.calling_ae, rq.protocol_version)
    for pc in rq.contexts:
        sub = _item(_ABSTRACT_SYNTAX, _uid(pc.abstract_syntax))
        for ts in pc.transfer_syntaxes:
            sub += _item(_TRANSFER_SYNTAX, _uid(ts))
        body += _item(_PC_RQ, bytes([pc.context_id, 0, 0, 0]) + sub)
    extra = _role_items(rq.roles)
    if rq.user_identity is not None:
        extra.append(_item(identity.RQ_ITEM, identity.encode_rq(rq.user_identity)))
    body += _user_info(
        rq.max_length, rq.implementation_class_uid, rq.implementation_version_name, *extra
    )
    return _pdu(ASSOCIATE_RQ, bytes(body))


def encode_associate_ac(ac: AssociateAC) -> bytes:
    body = _associate_start(ac.called_ae, ac.calling_ae)
    for pc in ac.contexts:
        sub = _item(_TRANSFER_SYNTAX, _uid(pc.transfer_syntax))
        body += _item(_PC_AC, bytes([pc.context_id, 0, pc.result, 0]) + sub)
    extra = _role_items(ac.roles)
    if ac.user_identity_response is not None:
        extra.append(_item(identity.AC_ITEM, identity.encode_ac(ac.user_identity_response)))
    body += _user_info(
        ac.max_length, ac.implementation_class_uid, ac.implementation_version_name, *extra
    )
    return _pdu(ASSOCIATE_AC, bytes(body))


def encode_associate_rj(rj: AssociateRJ) -> bytes:
    return _pdu(ASSOCIATE_RJ, bytes([0, rj.result, rj.source, rj.reason]))


def encode_release_rq() -> bytes:
    return _pdu(RELEASE_RQ, bytes(4))


def encode_release_rp() -> bytes:
    return _pdu(RELEASE_RP, bytes(4))


def encode_abort(source: int = 0, reason: int = 0) -> bytes:
    return _pdu(ABORT, bytes([0, 0, source, reason]))


def _items(body: bytes | memoryview, start: int) -> Iterator[tuple[int, memoryview]]:
    view = memoryview(body)
    pos = start
    while pos < len(view):
        if pos + 4 > len(view):
            raise ProtocolError("truncated item header in association PDU")
        item_type, length = _ITEM.unpack_from(view, pos)
        end = pos + 4 + length
        if end > len(view):
            raise ProtocolError(f"item 0x{item_type:02X} claims {length} bytes past the PDU end")
        yield item_type, view[pos + 4 : end]
        pos = end


def _text(value: memoryview) -> str:
    try:
        return bytes(value).decode("ascii").rstrip("\0 ").lstrip(" ")
    except UnicodeDecodeError as exc:
        raise ProtocolError(f"non-ASCII text in association PDU: {bytes(value)!r}") from exc


@dataclass
class _Associate:
    """The parts an A-ASSOCIATE-RQ and -AC share, with each presentation context's fields."""

    called_ae: str
    calling_ae: str
    contexts: list[tuple[int, int, list[tuple[int, str]]]]
    protocol_version: int = 1
    max_length: int = 0
    class_uid: str = ""
    version: str = ""
    user_identity: UserIdentity | None = None
    identity_response: bytes | None = None
    roles: list[RoleSelection] = field(default_factory=list)


def _decode_role(sub: memoryview) -> RoleSelection:
    if len(sub) < 4:
        raise ProtocolError("truncated SCP/SCU role selection item")
    (length,) = struct.unpack_from(">H", sub)
    if len(sub) != 2 + length + 2:
        raise ProtocolError("SCP/SCU role selection item of the wrong length")
    return RoleSelection(_text(sub[2 : 2 + length]), bool(sub[-2]), bool(sub[-1]))


def _decode_user_info(value: memoryview, into: _Associate) -> None:
    for sub_type, sub in _items(value, 0):
        if sub_type == _MAX_LENGTH:
            if len(sub) != 4:
                raise ProtocolError("maximum length item must hold 4 bytes")
            (into.max_length,) = struct.unpack(">I", sub)
        elif sub_type == _IMPL_CLASS_UID:
            into.class_uid = _text(sub)
        elif sub_type == _IMPL_VERSION_NAME:
            into.version = _text(sub)
        elif sub_type == identity.RQ_ITEM:
            into.user_identity = identity.decode_rq(sub)
        elif sub_type == identity.AC_ITEM:
            into.identity_response = identity.decode_ac(sub)
        elif sub_type == _ROLE_SELECTION:
            into.roles.append(_decode_role(sub))


def _decode_associate(body: bytes, context_item: int) -> _Associate:
    """Split an A-ASSOCIATE-RQ/AC body; each context is (ID, result byte, sub-items)."""
    if len(body) < _ASSOC_FIXED.size:
        raise ProtocolError(f"association PDU body of {len(body)} bytes is too short")
    version, called, calling = _ASSOC_FIXED.unpack_from(body)
    decoded = _Associate(_text(memoryview(called)), _text(memoryview(calling)), [], version)
    for item_type, value in _items(body, _ASSOC_FIXED.size):
        if item_type == context_item:
            if len(value) < 4:
                raise ProtocolError("truncated presentation context item")
            subs = [(sub_type, _text(sub)) for sub_type, sub in _items(value, 4)]
            decoded.contexts.append((value[0], value[2], subs))
        elif item_type == _USER_INFO:
            _decode_user_info(value, decoded)
    return decoded


def decode_associate_ac(body: bytes) -> AssociateAC:
    ac = _decode_associate(body, _PC_AC)
    contexts = tuple(
        ContextResult(cid, result, next((v for t, v in subs if t == _TRANSFER_SYNTAX), ""))
        for cid, result, subs in ac.contexts
    )
    return AssociateAC(
        ac.called_ae,
        ac.calling_ae,
        contexts,
        ac.max_length,
        ac.class_uid,
        ac.version,
        ac.identity_response,
        tuple(ac.roles),
    )


def decode_associate_rq(body: bytes) -> AssociateRQ:
    rq = _decode_associate(body, _PC_RQ)
    contexts = tuple(
        ContextProposal(
            cid,
            next((v for t, v in subs if t == _ABSTRACT_SYNTAX), ""),
            tuple(v for t, v in subs if t == _TRANSFER_SYNTAX),
        )
        for cid, _result, subs in rq.contexts
    )
    return AssociateRQ(
        rq.called_ae,
        rq.calling_ae,
        contexts,
        rq.max_length,
        rq.class_uid,
        rq.version,
        rq.user_identity,
        rq.protocol_version,
        tuple(rq.roles),
    )


def decode_associate_rj(body: bytes) -> AssociateRJ:
    if len(body) < 4:
        raise ProtocolError("truncated A-ASSOCIATE-RJ")
    return AssociateRJ(body[1], body[2], body[3])


def decode_abort(body: bytes) -> Abort:
    if len(body) < 4:
        raise ProtocolError("truncated A-ABORT")
    return Abort(body[2], body[3])


def decode_pdvs(body: bytes) -> Iterator[Pdv]:
    """The PDV items of a P-DATA-TF body, as views into it."""
    view = memoryview(body)
    pos = 0
    while pos < len(view):
        if pos + 6 > len(view):
            raise ProtocolError("truncated PDV item header")
        (length,) = struct.unpack_from(">I", view, pos)
        if length < 2 or pos + 4 + length > len(view):
            raise ProtocolError(f"PDV item length {length} does not fit the P-DATA-TF")
        header = view[pos + 5]
        yield Pdv(
            view[pos + 4], bool(header & 1), bool(header & 2), view[pos + 6 : pos + 4 + length]
        )
        pos += 4 + length
