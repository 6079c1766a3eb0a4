"""Fuzzing the parsers a peer's bytes reach (hypothesis): whatever arrives, ``pdu.decode_*``,
``dimse.decode`` and the user identity items either decode or raise ``ProtocolError`` — never
another exception. Inputs are random bytes and mutations (truncation, overwritten bytes,
inserted bytes) of valid encodings, which get much deeper into the item structure."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from hypothesis import given, settings
from hypothesis import strategies as st

from fastpush.errors import ProtocolError
from fastpush.wire import dimse, identity, pdu
from fastpush.wire.identity import IdentityType, UserIdentity

from support.fuzzing import mutated

CT = "1.2.840.10008.5.1.4.1.1.2"
SYNTAXES = ("1.2.840.10008.1.2.1", "1.2.840.10008.1.2")


def _valid_rq() -> bytes:
    contexts = tuple(pdu.ContextProposal(2 * i + 1, CT, SYNTAXES) for i in range(3))
    who = UserIdentity.user("alice", "secret", positive_response=True)
    rq = pdu.AssociateRQ("SCP", "SCU", contexts, 16384, "1.2.3", "FASTPUSH", who)
    return pdu.encode_associate_rq(rq)[6:]


def _valid_ac() -> bytes:
    contexts = tuple(pdu.ContextResult(2 * i + 1, i % 2 * 3, SYNTAXES[0]) for i in range(3))
    ac = pdu.AssociateAC("SCU", "SCP", contexts, 16384, "1.2.3", "PEER", b"token")
    return pdu.encode_associate_ac(ac)[6:]


def _valid_pdvs() -> bytes:
    """A P-DATA-TF body: a response command set in two PDVs (the second one marked last)."""
    command = dimse.response(dimse.C_STORE_RSP, 1, 0, CT, "1.2.3.4")
    parts = ((command[:40], 0x01), (command[40:], 0x03))
    return b"".join(
        (len(part) + 2).to_bytes(4, "big") + bytes([1, header]) + part for part, header in parts
    )


SEEDS = {
    "rq": _valid_rq(),
    "ac": _valid_ac(),
    "pdvs": _valid_pdvs(),
    "command": dimse.response(dimse.C_STORE_RSP, 7, 0xB000, CT, "1.2.3.4"),
    "identity": identity.encode_rq(UserIdentity.token(IdentityType.JWT, b"a.b.c")),
    "identity_ac": identity.encode_ac(b"ticket"),
}


def _decode_pdvs(body: bytes) -> object:
    return list(pdu.decode_pdvs(body))


PARSERS: dict[str, Callable[[bytes], object]] = {
    "rq": pdu.decode_associate_rq,
    "ac": pdu.decode_associate_ac,
    "pdvs": _decode_pdvs,
    "command": dimse.decode,
    "identity": identity.decode_rq,
    "identity_ac": identity.decode_ac,
}


def _only_protocol_errors(parse: Callable[[bytes], object], data: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        parse(data)


def test_seeds_decode() -> None:
    for name, parse in PARSERS.items():
        parse(SEEDS[name])


@settings(max_examples=400, deadline=None)
@given(name=st.sampled_from(sorted(PARSERS)), data=st.binary(max_size=512))
def test_random_bytes(name: str, data: bytes) -> None:
    _only_protocol_errors(PARSERS[name], data)


@settings(max_examples=1500, deadline=None)
@given(name=st.sampled_from(sorted(PARSERS)), data=st.data())
def test_mutated_encodings(name: str, data: st.DataObject) -> None:
    _only_protocol_errors(PARSERS[name], data.draw(mutated(SEEDS[name])))


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=16))
def test_short_pdus(data: bytes) -> None:
    for parse in (pdu.decode_associate_rj, pdu.decode_abort):
        _only_protocol_errors(parse, data)
