"""The hand-written Storage Commitment datasets against pydicom, both ways: what we write
pydicom reads, and what pydicom writes (undefined lengths, extra elements, nested sequences)
we read."""

from __future__ import annotations

from io import BytesIO

import pytest
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.filewriter import write_dataset
from pydicom.sequence import Sequence

from fastpush.errors import ProtocolError
from fastpush.uids import EXPLICIT_VR_LE, IMPLICIT_VR_LE
from fastpush.wire.commitment import (
    NO_SUCH_INSTANCE,
    Reference,
    Report,
    decode_report,
    decode_request,
    encode_report,
    encode_request,
    new_transaction_uid,
)

SYNTAXES = [EXPLICIT_VR_LE, IMPLICIT_VR_LE]
REFS = tuple(Reference("1.2.840.10008.5.1.4.1.1.7", f"1.2.3.{n}") for n in range(5))


def _read(data: bytes, syntax: str) -> Dataset:
    return read_dataset(BytesIO(data), syntax == IMPLICIT_VR_LE, True)


def _write(dataset: Dataset, syntax: str) -> bytes:
    buffer = DicomBytesIO()
    buffer.is_little_endian = True
    buffer.is_implicit_VR = syntax == IMPLICIT_VR_LE
    write_dataset(buffer, dataset)
    return buffer.getvalue()


def _item(ref: Reference, reason: int | None = None) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = ref.sop_class_uid
    item.ReferencedSOPInstanceUID = ref.sop_instance_uid
    if reason is not None:
        item.FailureReason = reason
    return item


@pytest.mark.parametrize("syntax", SYNTAXES)
def test_pydicom_reads_the_request_we_write(syntax: str) -> None:
    dataset = _read(encode_request("1.2.3.99", REFS, syntax), syntax)
    assert dataset.TransactionUID == "1.2.3.99"
    assert [
        (i.ReferencedSOPClassUID, i.ReferencedSOPInstanceUID) for i in dataset.ReferencedSOPSequence
    ] == [(r.sop_class_uid, r.sop_instance_uid) for r in REFS]


@pytest.mark.parametrize("syntax", SYNTAXES)
def test_pydicom_reads_the_report_we_write(syntax: str) -> None:
    report = Report("1.2.3.98", REFS[:3], ((REFS[3], NO_SUCH_INSTANCE), (REFS[4], 0x0110)))
    dataset = _read(encode_report(report, syntax), syntax)
    assert dataset.TransactionUID == "1.2.3.98"
    assert [i.ReferencedSOPInstanceUID for i in dataset.ReferencedSOPSequence] == [
        "1.2.3.0",
        "1.2.3.1",
        "1.2.3.2",
    ]
    assert [(i.ReferencedSOPInstanceUID, i.FailureReason) for i in dataset.FailedSOPSequence] == [
        ("1.2.3.3", NO_SUCH_INSTANCE),
        ("1.2.3.4", 0x0110),
    ]
    assert decode_report(encode_report(report, syntax), syntax) == report


@pytest.mark.parametrize("syntax", SYNTAXES)
@pytest.mark.parametrize("undefined", [False, True])
def test_we_read_what_pydicom_writes(syntax: str, undefined: bool) -> None:
    dataset = Dataset()
    dataset.TransactionUID = "1.2.3.97"
    dataset.RetrieveAETitle = "PACS"
    step = Dataset()
    step.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.3.3"
    step.ReferencedSOPInstanceUID = "1.2.3.96"
    dataset.ReferencedPerformedProcedureStepSequence = Sequence([step])
    dataset.ReferencedSOPSequence = Sequence([_item(r) for r in REFS[:2]])
    dataset.FailedSOPSequence = Sequence([_item(REFS[2], NO_SUCH_INSTANCE)])
    if undefined:
        for element in dataset.iterall():
            if element.VR == "SQ":
                element.is_undefined_length = True
                for item in element.value:
                    item.is_undefined_length_sequence_item = True
    data = _write(dataset, syntax)
    assert decode_report(data, syntax) == Report(
        "1.2.3.97", REFS[:2], ((REFS[2], NO_SUCH_INSTANCE),)
    )
    assert decode_request(data, syntax) == ("1.2.3.97", REFS[:2])


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x08\x00\x95\x11UI\x10\x00short",
        b"\x08\x00\x99\x11SQ\x00\x00\xff\xff\xff\xff\xfe\xff\x00\xe0\x08\x00\x00\x00",
        b"\x08\x00\x99\x11SQ\x00\x00\x08\x00\x00\x00\x08\x00\x50\x11\x00\x00\x00\x00",
    ],
)
def test_broken_datasets_are_protocol_errors(data: bytes) -> None:
    with pytest.raises(ProtocolError):
        decode_report(data, EXPLICIT_VR_LE)


def test_transaction_uids_are_unique_and_valid() -> None:
    uids = {new_transaction_uid() for _ in range(100)}
    assert len(uids) == 100
    assert all(len(uid) <= 64 and uid.startswith("2.25.") for uid in uids)
