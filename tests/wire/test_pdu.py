"""Our ACSE PDUs against pynetdicom's encoder and decoder, and malformed input."""

from __future__ import annotations

import pytest
from pynetdicom.pdu import A_ASSOCIATE_AC, A_ASSOCIATE_RQ

from fastpush.errors import ProtocolError
from fastpush.uids import EXPLICIT_VR_LE, IMPLICIT_VR_LE
from fastpush.wire import pdu

CT = "1.2.840.10008.5.1.4.1.1.2"
MR = "1.2.840.10008.5.1.4.1.1.4"


def _rq() -> pdu.AssociateRQ:
    return pdu.AssociateRQ(
        "STORESCP",
        "FASTPUSH",
        (
            pdu.ContextProposal(1, CT, (EXPLICIT_VR_LE, IMPLICIT_VR_LE)),
            pdu.ContextProposal(3, MR, (IMPLICIT_VR_LE,)),
        ),
        16384,
        "1.2.3.4",
        "FASTPUSH_010",
    )


def test_associate_rq_decodes_with_pynetdicom() -> None:
    raw = pdu.encode_associate_rq(_rq())
    decoded = A_ASSOCIATE_RQ()
    decoded.decode(raw)
    assert decoded.called_ae_title == "STORESCP"
    assert decoded.calling_ae_title == "FASTPUSH"
    contexts = {c.context_id: c for c in decoded.presentation_context}
    assert contexts[1].abstract_syntax == CT
    assert contexts[1].transfer_syntax == [EXPLICIT_VR_LE, IMPLICIT_VR_LE]
    assert contexts[3].transfer_syntax == [IMPLICIT_VR_LE]
    user = {type(i).__name__: i for i in decoded.user_information.user_data}
    assert user["MaximumLengthSubItem"].maximum_length_received == 16384
    assert user["ImplementationClassUIDSubItem"].implementation_class_uid == "1.2.3.4"


def test_associate_rq_round_trips_through_our_decoder() -> None:
    rq = _rq()
    raw = pdu.encode_associate_rq(rq)
    assert raw[0] == pdu.ASSOCIATE_RQ
    assert int.from_bytes(raw[2:6], "big") == len(raw) - 6
    assert pdu.decode_associate_rq(raw[6:]) == rq


def test_associate_ac_from_pynetdicom_decodes() -> None:
    ac = pdu.AssociateAC(
        "STORESCP",
        "FASTPUSH",
        (pdu.ContextResult(1, 0, EXPLICIT_VR_LE), pdu.ContextResult(3, 3, IMPLICIT_VR_LE)),
        4096,
        "1.2.3",
        "PEER",
    )
    ours = pdu.encode_associate_ac(ac)
    theirs = A_ASSOCIATE_AC()
    theirs.decode(ours)
    # Re-encoded by pynetdicom and decoded by us: both sides agree on every field.
    decoded = pdu.decode_associate_ac(theirs.encode()[6:])
    assert decoded == ac
    assert [c.accepted for c in decoded.contexts] == [True, False]


def test_reject_and_abort_are_told_in_words() -> None:
    rj = pdu.decode_associate_rj(pdu.encode_associate_rj(pdu.AssociateRJ(1, 1, 7))[6:])
    assert rj.describe() == (
        "rejected-permanent, source: DICOM UL service-user, reason: called AE title not recognized"
    )
    transient = pdu.AssociateRJ(2, 3, 1).describe()
    assert "rejected-transient" in transient and "temporary congestion" in transient
    ab = pdu.decode_abort(pdu.encode_abort(2, 6)[6:])
    assert ab.describe() == "A-ABORT from service-provider: invalid PDU parameter value"


@pytest.mark.parametrize(
    "body",
    [
        b"\x00" * 10,  # shorter than the fixed fields
        bytes(68) + b"\x21\x00\x00\x10\x01",  # item claims 16 bytes, has 1
        bytes(68) + b"\x21\x00",  # truncated item header
    ],
)
def test_malformed_associate_ac_raises_protocol_error(body: bytes) -> None:
    with pytest.raises(ProtocolError):
        pdu.decode_associate_ac(body)


def test_pdvs_are_split_and_flagged() -> None:
    body = b"\x00\x00\x00\x04\x01\x03ab" + b"\x00\x00\x00\x03\x01\x02c"
    pdvs = list(pdu.decode_pdvs(body))
    assert [(p.context_id, p.is_command, p.is_last, bytes(p.data)) for p in pdvs] == [
        (1, True, True, b"ab"),
        (1, False, True, b"c"),
    ]
    with pytest.raises(ProtocolError):
        list(pdu.decode_pdvs(b"\x00\x00\x00\x09\x01\x03ab"))


def test_ae_titles_are_checked() -> None:
    with pytest.raises(ValueError, match="AE title"):
        pdu.encode_associate_rq(pdu.AssociateRQ("X" * 17, "A", (), 0, "1.2"))
