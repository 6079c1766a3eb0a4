"""Hypothesis strategies for fuzzing what a peer's bytes reach.

:func:`mutated` damages a valid encoding at the byte level (truncation, overwritten, inserted
and deleted bytes). Byte damage alone rarely leaves something that decodes, so
:func:`command_sets` and :func:`associate_requests` build valid structures from drawn values
(command fields, message IDs, UIDs, AE titles, presentation contexts, user identities), then
break them the way senders do — a field of the wrong size, a wrong group length, an item
repeated or dropped — and only now and then damage the bytes too: most of what they make
decodes, so tests reach what happens after decoding.
"""

from __future__ import annotations

import struct

from hypothesis import strategies as st

from fastpush.uids import (
    EXPLICIT_VR_BE,
    EXPLICIT_VR_LE,
    IMPLICIT_VR_LE,
    VERIFICATION,
)
from fastpush.wire import dimse, pdu
from fastpush.wire.identity import IdentityType, UserIdentity

__all__ = ["associate_requests", "command_sets", "mutated", "uids"]

CT = "1.2.840.10008.5.1.4.1.1.2"
MR = "1.2.840.10008.5.1.4.1.1.4"
UNKNOWN_CLASS = "1.2.3.4.5.6"
JPEG = "1.2.840.10008.1.2.4.50"
C_FIND_RQ = 0x0020


@st.composite
def mutated(draw: st.DrawFn, seed: bytes, max_mutations: int = 4) -> bytes:
    """``seed`` with 1 to ``max_mutations`` byte-level mutations."""
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, max_mutations))):
        action = draw(st.sampled_from(["cut", "set", "insert", "delete"]))
        at = draw(st.integers(0, len(data)))
        if action == "cut":
            del data[at:]
        elif action == "set" and at < len(data):
            data[at] = draw(st.integers(0, 255))
        elif action == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif action == "delete":
            del data[at : at + draw(st.integers(1, 8))]
    return bytes(data)


def _sometimes_mutated(draw: st.DrawFn, data: bytes) -> bytes:
    """About one time in four, one or two byte-level mutations on top. (Hypothesis leans to
    small numbers: the rare branch is the largest one.)"""
    if draw(st.integers(0, 3)) == 3:
        return draw(mutated(data, max_mutations=2))
    return data


def uids() -> st.SearchStrategy[str]:
    """UIDs as senders write them: well-formed ones mostly, then too long, empty, with a
    trailing space or NUL, with characters a file name must not carry, or not ASCII."""
    well_formed = st.lists(st.integers(0, 99999), min_size=2, max_size=12).map(
        lambda parts: "1.2." + ".".join(map(str, parts))
    )
    return st.one_of(
        st.sampled_from([CT, MR, VERIFICATION, UNKNOWN_CLASS]),
        well_formed,
        well_formed.map(lambda uid: uid + ".1" * 40),  # past the 64 characters a UID may have
        st.sampled_from(["", " ", "1.2.3 ", "1.2.3\0", "../../etc", "1.2/3", "1.2\\3", "CON"]),
        st.text(min_size=1, max_size=20),
    )


# -- command sets -------------------------------------------------------------------------------

_FIELD = 0x0100
_ELEMENT_TAGS = {
    "sop_class": 0x0002,
    "message_id": 0x0110,
    "priority": 0x0700,
    "dataset_type": 0x0800,
    "sop_instance": 0x1000,
    "move_destination": 0x0600,
    "comment": 0x0902,
}


def _us(value: int) -> bytes:
    return struct.pack("<H", value)


def _value(draw: st.DrawFn, name: str) -> bytes:
    if name in ("sop_class", "sop_instance"):
        return draw(uids()).encode("utf-8")
    if name == "message_id":
        return _us(draw(st.integers(0, 0xFFFF)))
    if name == "priority":
        return _us(draw(st.sampled_from([0, 1, 2, 0xFFFF])))
    if name == "dataset_type":
        return _us(draw(st.sampled_from([dimse.DATASET_PRESENT, dimse.NO_DATASET, 0, 0xFEFE])))
    return draw(st.binary(max_size=20))


@st.composite
def command_sets(draw: st.DrawFn) -> bytes:
    """A command set (Implicit VR LE, group 0000) as a sender writes one: a C-STORE-RQ,
    C-ECHO-RQ, C-FIND-RQ, a response sent the wrong way or an unknown command field, with
    drawn values, elements left out now and then; then, sometimes, one fault (a US element
    of the wrong size, an odd length, a wrong or missing group length, an element of another
    group, elements out of order) and, sometimes, byte damage."""
    field = draw(
        st.sampled_from([dimse.C_STORE_RQ] * 4 + [dimse.C_ECHO_RQ] * 2 + [C_FIND_RQ, 0x8001])
        | st.integers(0, 0xFFFF)
    )
    wanted = ["sop_class", "message_id", "dataset_type"]
    if field != dimse.C_ECHO_RQ:
        wanted += ["priority", "sop_instance"]
    wanted += draw(st.lists(st.sampled_from(["move_destination", "comment"]), max_size=1))
    elements = {_FIELD: _us(field)}
    for name in wanted:
        if draw(st.integers(0, 9)) == 9:  # left out
            continue
        elements[_ELEMENT_TAGS[name]] = _value(draw, name)
    if field == dimse.C_STORE_RQ and _ELEMENT_TAGS["dataset_type"] in elements:
        elements[_ELEMENT_TAGS["dataset_type"]] = _us(
            draw(st.sampled_from([dimse.DATASET_PRESENT] * 3 + [dimse.NO_DATASET]))
        )
    fault = draw(
        st.sampled_from(
            ["none"] * 6 + ["us-size", "odd", "group-length", "no-group-length", "group", "order"]
        )
    )
    if fault == "us-size":
        tag = draw(st.sampled_from(sorted(t for t in elements if t in (0x0100, 0x0110, 0x0800))))
        elements[tag] = draw(st.sampled_from([b"", b"\x01", b"\x01\x00\x00"]))
    items = sorted(elements.items())
    if fault == "order":
        items = draw(st.permutations(items))
    body = b""
    for elem, value in items:
        if len(value) % 2 and fault != "odd":
            value += b"\0" if elem in (0x0002, 0x1000) else b" "
        body += struct.pack("<HHI", 0, elem, len(value)) + value
    if fault == "group":
        body += struct.pack("<HHI", 0x0008, 0x0016, 2) + b"1\0"
    if fault == "no-group-length":
        data = body
    else:
        length = len(body)
        if fault == "group-length":
            length = draw(st.sampled_from([0, length - 2, length + 2, 0xFFFFFFFF]))
        data = struct.pack("<HHII", 0, 0, 4, length % (1 << 32)) + body
    return _sometimes_mutated(draw, data)


# -- A-ASSOCIATE-RQ ---------------------------------------------------------------------------

_SYNTAXES = [EXPLICIT_VR_LE, IMPLICIT_VR_LE, EXPLICIT_VR_BE, JPEG, "1.2.3.999"]


def _ascii_uids() -> st.SearchStrategy[str]:
    """What an A-ASSOCIATE-RQ can carry (its encoder writes ASCII; damage comes later)."""
    return uids().filter(lambda uid: uid.isascii() and len(uid) <= 0xFFF0)


def _ae_titles() -> st.SearchStrategy[str]:
    ascii_title = st.text(
        st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="\\"),
        min_size=1,
        max_size=16,
    )
    return st.sampled_from(["ANY-SCP", "STORESCU", "FASTPUSH"]) | ascii_title


def _identities() -> st.SearchStrategy[UserIdentity | None]:
    names = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=12)
    return st.one_of(
        st.none(),
        st.builds(UserIdentity.user, names, st.none() | names, positive_response=st.booleans()),
        st.builds(
            UserIdentity.token,
            st.sampled_from([IdentityType.JWT, IdentityType.SAML, IdentityType.KERBEROS]),
            st.binary(min_size=1, max_size=40),
            positive_response=st.booleans(),
        ),
    )


@st.composite
def _contexts(draw: st.DrawFn) -> tuple[pdu.ContextProposal, ...]:
    count = draw(st.integers(1, 6))
    ids = [2 * i + 1 for i in range(count)]  # as the standard says: odd, distinct
    if draw(st.integers(0, 5)) == 5:  # now and then: even, zero or repeated
        ids = draw(st.lists(st.integers(0, 255), min_size=count, max_size=count))
    classes = st.sampled_from([CT, MR, VERIFICATION, UNKNOWN_CLASS]) | _ascii_uids()
    return tuple(
        pdu.ContextProposal(
            context_id,
            draw(classes),
            tuple(
                draw(st.lists(st.sampled_from(_SYNTAXES) | _ascii_uids(), min_size=1, max_size=4))
            ),
        )
        for context_id in ids
    )


@st.composite
def associate_requests(draw: st.DrawFn) -> bytes:
    """An A-ASSOCIATE-RQ body (without the PDU header) as senders write one: drawn AE titles,
    1 to 6 presentation contexts (classes known and unknown, syntaxes plain, compressed and
    made up, sometimes ids that are even or repeated), a maximum length, an implementation
    version name, sometimes a user identity; then, sometimes, a title no encoder would write
    (blank, a backslash, not ASCII) patched in, a protocol version other than 1, an unknown
    item, or byte damage."""
    rq = pdu.AssociateRQ(
        draw(_ae_titles()),
        draw(_ae_titles()),
        draw(_contexts()),
        draw(st.sampled_from([16384, 0, 4096, 1 << 20, 0xFFFFFFFF, 1, 4095])),
        draw(st.sampled_from(["1.2.3", "1.2.826.0.1.3680043.8.498.1"]) | _ascii_uids()),
        draw(st.sampled_from(["", "SENDER", "X" * 16])),
        draw(_identities()),
    )
    body = bytearray(pdu.encode_associate_rq(rq)[6:])
    fault = draw(st.sampled_from(["none"] * 6 + ["title", "version", "item"]))
    if fault == "title":
        offset = draw(st.sampled_from([4, 20]))
        title = draw(
            st.sampled_from([b" " * 16, b"STORE\\SCU".ljust(16), "ÄÖÜ".encode().ljust(16)])
        )
        body[offset : offset + 16] = title
    elif fault == "version":
        body[0:2] = struct.pack(">H", draw(st.sampled_from([0, 2, 0xFFFF])))
    elif fault == "item":
        item_type = draw(st.sampled_from([0x10, 0x20, 0x30, 0x50, 0x99]))
        value = draw(st.binary(max_size=16))
        body += struct.pack(">BxH", item_type, len(value)) + value
    return _sometimes_mutated(draw, bytes(body))
