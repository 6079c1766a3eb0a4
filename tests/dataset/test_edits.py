"""The Rust editor through ``EditPlan``: every edit kind, value lengths that change, nested
sequences, every uncompressed syntax in and out, compressed datasets edited in their own syntax,
UID maps consistent across a study and keyed, and datasets that cannot be edited."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom import Dataset, Sequence, dcmread
from pydicom.data import get_testdata_file
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset

from fastpush.dataset.edits import Copy, EditPlan, MapUids, Prefix, Remove, Set
from fastpush.dataset.scan import read_file
from fastpush.errors import ConversionError
from fastpush.uids import DEFLATED_EXPLICIT_VR_LE, EXPLICIT_VR_BE, EXPLICIT_VR_LE, IMPLICIT_VR_LE

from support.peers import encode_dataset

SYNTAXES = [IMPLICIT_VR_LE, EXPLICIT_VR_LE, EXPLICIT_VR_BE]


@pytest.fixture
def key_file(tmp_path: Path) -> str:
    path = tmp_path / "deid.key"
    path.write_bytes(b"a secret key of the site, 32 b\n")
    return str(path)


def decode(data: bytes, syntax: str) -> Dataset:
    return read_dataset(
        DicomBytesIO(data),
        is_implicit_VR=syntax == IMPLICIT_VR_LE,
        is_little_endian=syntax != EXPLICIT_VR_BE,
    )


def source() -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.SOPInstanceUID = "1.2.3.4.5"
    ds.StudyInstanceUID = "1.2.3"
    ds.InstitutionName = "A HOSPITAL WITH A LONG NAME"
    ds.PatientName = "DOE^JANE"
    ds.PatientID = "ID-7"
    ds.OtherPatientNames = "SMITH^JANE"
    ds.AccessionNumber = "ACC1"
    ref = Dataset()
    ref.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ref.ReferencedSOPInstanceUID = "1.2.3.4.5"
    ds.ReferencedImageSequence = Sequence([ref])
    ds.Rows = 2
    ds.Columns = 2
    ds.BitsAllocated = 16
    ds.PixelRepresentation = 0
    ds.PixelData = b"\x01\x02\x03\x04\x05\x06\x07\x08"
    return ds


def edit(plan: EditPlan, ds: Dataset, from_syntax: str, to_syntax: str) -> Dataset:
    data = (
        _deflate(encode_dataset(ds, EXPLICIT_VR_LE))
        if from_syntax == DEFLATED_EXPLICIT_VR_LE
        else encode_dataset(ds, from_syntax)
    )
    return decode(plan.compiled.edit_dataset(data, from_syntax, to_syntax), to_syntax)


def _deflate(data: bytes) -> bytes:
    import zlib

    z = zlib.compressobj(6, zlib.DEFLATED, -15)
    return z.compress(data) + z.flush()


@pytest.mark.parametrize("to_syntax", SYNTAXES)
@pytest.mark.parametrize("from_syntax", [*SYNTAXES, DEFLATED_EXPLICIT_VR_LE])
def test_every_edit_kind(from_syntax: str, to_syntax: str, key_file: str) -> None:
    plan = EditPlan(
        (
            Set("InstitutionName", "SITE A"),  # shorter
            Set("StudyDescription", "ADDED BY AN EDIT"),  # missing: added
            Set("Rows", "2"),
            Remove("(0010,1001)"),
            Copy("StudyID", "AccessionNumber"),
            Prefix("PatientName", "RESEARCH^"),  # longer
            Set("ReferencedImageSequence.ReferencedSOPClassUID", "1.2.840.10008.5.1.4.1.1.7"),
            MapUids(),
        ),
        key_file=key_file,
    )
    ds = source()
    out = edit(plan, ds, from_syntax, to_syntax)
    mapped = plan.compiled.map_uid
    assert out.InstitutionName == "SITE A"
    assert out.StudyDescription == "ADDED BY AN EDIT"
    assert "OtherPatientNames" not in out
    assert out.StudyID == "ACC1"
    assert out.PatientName == "RESEARCH^DOE^JANE"
    assert out.SOPInstanceUID == mapped("1.2.3.4.5")
    assert out.StudyInstanceUID == mapped("1.2.3")
    assert out.SOPClassUID == ds.SOPClassUID  # the standard's own UIDs stay
    item = out.ReferencedImageSequence[0]
    assert item.ReferencedSOPClassUID == "1.2.840.10008.5.1.4.1.1.7"
    assert item.ReferencedSOPInstanceUID == out.SOPInstanceUID  # references follow
    # Raw OW bytes: swapped when the byte order changes, as converting without edits does.
    pixels = ds.PixelData
    if (from_syntax == EXPLICIT_VR_BE) != (to_syntax == EXPLICIT_VR_BE):
        pixels = bytes(b for pair in zip(pixels[1::2], pixels[::2], strict=True) for b in pair)
    assert out.PixelData == pixels
    assert plan.compiled.instance_uid("1.2.3.4.5") == out.SOPInstanceUID
    untouched = {"PatientID", "AccessionNumber", "Rows", "Columns", "BitsAllocated"}
    for keyword in untouched:
        assert out[keyword].value == ds[keyword].value


def test_uid_maps_are_keyed_and_consistent_across_a_study(tmp_path: Path, key_file: str) -> None:
    plan = EditPlan((MapUids(),), key_file=key_file)
    other_key = tmp_path / "other.key"
    other_key.write_bytes(b"another secret key of 32 bytes.")
    other = EditPlan((MapUids(),), key_file=str(other_key))
    first, second = source(), source()
    second.SOPInstanceUID = "1.2.3.4.6"
    a = edit(plan, first, EXPLICIT_VR_LE, EXPLICIT_VR_LE)
    b = edit(plan, second, EXPLICIT_VR_LE, EXPLICIT_VR_LE)
    again = edit(EditPlan((MapUids(),), key_file=key_file), first, IMPLICIT_VR_LE, EXPLICIT_VR_LE)
    assert a.StudyInstanceUID == b.StudyInstanceUID == again.StudyInstanceUID
    assert a.SOPInstanceUID != b.SOPInstanceUID
    assert again.SOPInstanceUID == a.SOPInstanceUID
    assert edit(other, first, EXPLICIT_VR_LE, EXPLICIT_VR_LE).StudyInstanceUID != a.StudyInstanceUID
    assert a.StudyInstanceUID.startswith("2.25.") and len(a.StudyInstanceUID) <= 64


@pytest.mark.parametrize(
    ("edit_", "why"),
    [
        (Set("InstitutionName", "x" * 65), "longer than 64"),
        (Set("Rows", "many"), "not a valid US"),
        (Set("PixelData", "1"), "cannot be set from text"),
        (Set("PatientSex", "female"), "not a valid CS"),
        (Set("(0009,1001)", "X"), "VR is unknown"),
    ],
)
def test_values_that_do_not_fit_fail(edit_: Set, why: str) -> None:
    with pytest.raises(ConversionError, match=why):
        edit(EditPlan((edit_,)), source(), EXPLICIT_VR_LE, EXPLICIT_VR_LE)


def test_a_truncated_dataset_fails() -> None:
    data = encode_dataset(source(), EXPLICIT_VR_LE)[:-3]
    with pytest.raises(ConversionError, match="truncated"):
        EditPlan((Set("PatientID", "X"),)).compiled.edit_dataset(
            data, EXPLICIT_VR_LE, EXPLICIT_VR_LE
        )


def test_keys_come_from_files(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="key file"):
        EditPlan((MapUids(),))
    short = tmp_path / "short.key"
    short.write_bytes(b"tiny")
    with pytest.raises(ValueError, match="shorter than 16"):
        EditPlan((MapUids(),), key_file=str(short)).compiled  # noqa: B018


def test_plan_from_plain_data(key_file: str) -> None:
    plan = EditPlan.from_config(
        [
            {"set": "InstitutionName", "value": "SITE A"},
            {"remove": "(0010,1000)"},
            {"map_uids": True},
        ],
        {"profile": "basic", "key_file": key_file},
    )
    assert plan.edits == (Set("InstitutionName", "SITE A"), Remove("(0010,1000)"), MapUids())
    assert plan.deidentify is not None and plan.key_file == key_file
    with pytest.raises(ValueError, match="unknown edit"):
        EditPlan.from_config([{"rename": "X"}])
    with pytest.raises(ValueError, match="neither a DICOM keyword"):
        EditPlan.from_config([{"remove": "NoSuchKeyword"}])


def test_compressed_dataset_edited_in_its_own_syntax() -> None:
    path = get_testdata_file("JPEG2000.dcm")
    assert path is not None
    item = read_file(path)
    assert not isinstance(item, str) and hasattr(item, "transfer_syntax")
    plan = EditPlan((Set("PatientName", "ANON"),))
    out = plan.compiled.edit_dataset(item.source, item.transfer_syntax, item.transfer_syntax)
    edited = decode(out, EXPLICIT_VR_LE)
    original = dcmread(path)
    assert edited.PatientName == "ANON"
    assert edited.PixelData == original.PixelData
