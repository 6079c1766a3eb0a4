"""Command sets as pydicom reads them, and the meaning of statuses."""

from __future__ import annotations

import pytest
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset

from fastpush.errors import ProtocolError
from fastpush.wire import dimse

CT = "1.2.840.10008.5.1.4.1.1.2"


def _read(raw: bytes):  # type: ignore[no-untyped-def]
    return read_dataset(DicomBytesIO(raw), is_implicit_VR=True, is_little_endian=True)


def test_store_rq_is_a_valid_command_set() -> None:
    raw = dimse.store_rq(7, CT, "1.2.3.4.5")
    ds = _read(raw)
    assert ds.CommandGroupLength == len(raw) - 12
    assert ds.AffectedSOPClassUID == CT
    assert ds.AffectedSOPInstanceUID == "1.2.3.4.5"
    assert ds.CommandField == 0x0001
    assert ds.MessageID == 7
    assert ds.CommandDataSetType != 0x0101
    assert len(raw) % 2 == 0


def test_echo_rq_has_no_dataset() -> None:
    ds = _read(dimse.echo_rq(1))
    assert ds.CommandField == 0x0030 and ds.CommandDataSetType == 0x0101


def test_response_round_trips() -> None:
    raw = dimse.response(dimse.C_STORE_RSP, 9, 0xA700, CT, "1.2.3")
    cmd = dimse.decode(raw)
    assert (cmd.command_field, cmd.responded_to, cmd.status) == (0x8001, 9, 0xA700)
    assert cmd.sop_instance_uid == "1.2.3" and not cmd.has_dataset


@pytest.mark.parametrize(
    "raw",
    [
        b"\x00\x00\x00\x01",  # ends inside an element header
        b"\x08\x00\x00\x01\x02\x00\x00\x00\x01\x00",  # group 0008 in a command set
        b"\x00\x00\x00\x01\x10\x00\x00\x00\x01\x00",  # element runs past the end
        dimse._command([(0x0110, b"\x01\x00")]),  # no Command Field
    ],
)
def test_malformed_command_sets_raise(raw: bytes) -> None:
    with pytest.raises(ProtocolError):
        dimse.decode(raw)


@pytest.mark.parametrize(
    ("status", "category", "text"),
    [
        (0x0000, dimse.StatusCategory.SUCCESS, "Success"),
        (0x0001, dimse.StatusCategory.WARNING, "optional attributes"),
        (0xB000, dimse.StatusCategory.WARNING, "Coercion"),
        (0x0107, dimse.StatusCategory.WARNING, "Attribute list"),
        (0x0116, dimse.StatusCategory.WARNING, "out of range"),
        (0x0111, dimse.StatusCategory.FAILURE, "Duplicate SOP Instance"),
        (0x0122, dimse.StatusCategory.FAILURE, "SOP class not supported"),
        (0xA700, dimse.StatusCategory.FAILURE, "Out of resources"),
        (0xA7FF, dimse.StatusCategory.FAILURE, "Out of resources"),
        (0xC000, dimse.StatusCategory.FAILURE, "Cannot understand"),
        (0x0213, dimse.StatusCategory.FAILURE, "Resource limitation"),
    ],
)
def test_status_meaning(status: int, category: dimse.StatusCategory, text: str) -> None:
    assert dimse.category(status) is category
    assert text in dimse.describe(status)
    assert dimse.describe(status).startswith(f"0x{status:04X}")
