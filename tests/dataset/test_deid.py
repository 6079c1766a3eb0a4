"""The Basic Application Level Confidentiality Profile: every attribute of the generated table
against a synthetic dataset that carries it (at the top level and in a sequence item), every
cell of each option's column, private elements, the attributes the profile adds and the codes
that name the options, pseudonyms, burned-in refusal."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydicom import Dataset, Sequence
from pydicom.datadict import keyword_for_tag
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset

from fastpush.dataset.deid import action
from fastpush.dataset.deid_table import OPTIONS as COLUMNS
from fastpush.dataset.deid_table import PROFILE
from fastpush.dataset.edits import Deidentify, EditPlan
from fastpush.errors import ConversionError
from fastpush.uids import EXPLICIT_VR_LE, IMPLICIT_VR_LE

from support.peers import encode_dataset

# VRs we can give a value that fits; the few table entries of other VRs are checked by kind.
_VALUES: dict[str, Any] = {
    "AE": "STATION1",
    "AS": "042Y",
    "CS": "VALUE",
    "DA": "20200102",
    "DS": "1.5",
    "DT": "20200102030405",
    "IS": "7",
    "LO": "Identifying text",
    "LT": "Identifying text",
    "PN": "DOE^JOHN",
    "SH": "IDENTIFYING",
    "ST": "Identifying text",
    "TM": "101112",
    "UC": "Identifying text",
    "UI": "1.2.826.0.1.3680043.2.1143.9",
    "UR": "http://example.org",
    "UT": "Identifying text",
    "US": 3,
    "UL": 3,
    "SS": -3,
    "SL": -3,
    "FL": 1.0,
    "FD": 1.0,
    "OB": b"\x01\x02",
    "OW": b"\x01\x02",
    "UN": b"\x01\x02",
}
# Attributes the profile writes itself, and the sequences nested here.
_SKIPPED = {0x00120062, 0x00120063, 0x00120064, 0x00080016}


def _table() -> list[tuple[int, str, str]]:
    return [
        (tag, code, vr)
        for tag, (code, vr) in PROFILE.items()
        if (vr in _VALUES or vr == "SQ")
        and tag >> 16 not in (0x0000, 0x0002)
        and tag not in _SKIPPED
        and keyword_for_tag(tag)
    ]


def _carrier() -> Dataset:
    """A dataset holding every table attribute; each sequence has one item with a name."""
    ds = Dataset()
    for tag, _, vr in _table():
        if vr == "SQ":
            item = Dataset()
            item.add_new(0x00100010, "PN", "NESTED^NAME")
            ds.add_new(tag, vr, Sequence([item]))
        else:
            ds.add_new(tag, vr, _VALUES[vr])
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.Modality = "CT"
    ds.PatientID = "PATIENT-1"
    return ds


@pytest.fixture
def key_file(tmp_path: Path) -> str:
    path = tmp_path / "deid.key"
    path.write_bytes(b"a secret key of the site, 32 b\n")
    return str(path)


def _deidentify(
    ds: Dataset, options: Deidentify, key_file: str, syntax: str = EXPLICIT_VR_LE
) -> Dataset:
    plan = EditPlan(deidentify=options, key_file=key_file)
    out = plan.compiled.edit_dataset(encode_dataset(ds, syntax), syntax, EXPLICIT_VR_LE)
    return read_dataset(DicomBytesIO(out), is_implicit_VR=False, is_little_endian=True)


def _check(tag: int, kind: str, before: Dataset, after: Dataset, plan: EditPlan) -> None:
    name = f"({tag >> 16:04X},{tag & 0xFFFF:04X}) {keyword_for_tag(tag)} {kind}"
    if kind == "remove":
        assert tag not in after, name
        return
    assert tag in after, name
    old, new = before[tag], after[tag]
    if kind == "keep":
        if old.VR != "SQ":
            assert new.value == old.value, name
    elif kind == "empty":
        assert new.is_empty, name
    elif kind == "dummy" and old.VR != "SQ":
        assert not new.is_empty and new.value != old.value, name
    elif kind == "map_uid":
        assert new.value == plan.compiled.map_uid(old.value), name
    elif kind == "pseudonym":
        assert new.value == plan.compiled.pseudonym("PATIENT-1"), name
    elif kind == "shift_date":
        assert new.value != old.value and len(new.value) == len(old.value), name


OPTIONS = {
    "basic": Deidentify(),
    "retain_uids": Deidentify(retain_uids=True),
    "retain_dates": Deidentify(retain_dates=True),
    "retain_patient_characteristics": Deidentify(retain_patient_characteristics=True),
    "retain_device_identity": Deidentify(retain_device_identity=True),
    "clean_descriptors": Deidentify(clean_descriptors=True),
}


@pytest.mark.parametrize("syntax", [EXPLICIT_VR_LE, IMPLICIT_VR_LE])
@pytest.mark.parametrize("option", sorted(OPTIONS))
def test_every_table_attribute(option: str, syntax: str, key_file: str) -> None:
    options = OPTIONS[option]
    before = _carrier()
    after = _deidentify(before, options, key_file, syntax)
    plan = EditPlan(deidentify=options, key_file=key_file)
    checked = 0
    for tag, code, vr in _table():
        if tag in (0x00100020,):
            continue
        kind, _ = action(tag, code, vr, options)
        _check(tag, kind, before, after, plan)
        checked += 1
    assert checked > 500
    # Nested: the name in every kept sequence's item was handled like the top-level one.
    for elem in after:
        if elem.VR == "SQ":
            for item in elem.value:
                if 0x00100010 in item:
                    assert item.PatientName == plan.compiled.pseudonym("PATIENT-1")
    assert after.PatientIdentityRemoved == "YES"
    codes = [c.CodeValue for c in after.DeidentificationMethodCodeSequence]
    assert codes[0] == "113100"
    assert len(codes) == 1 + (option != "basic")


def test_private_elements_removed_unless_kept(key_file: str) -> None:
    ds = _minimal()
    ds.add_new(0x00090010, "LO", "SAFE CREATOR")
    ds.add_new(0x00091001, "LO", "kept")
    ds.add_new(0x00091002, "LO", "removed")
    ds.add_new(0x00110010, "LO", "OTHER")
    ds.add_new(0x00111001, "LO", "removed")
    out = _deidentify(ds, Deidentify(keep_private=("0009,SAFE CREATOR,01",)), key_file)
    assert out[0x00090010].value == "SAFE CREATOR"
    assert out[0x00091001].value == "kept"
    assert 0x00091002 not in out and 0x00110010 not in out and 0x00111001 not in out
    assert [c.CodeValue for c in out.DeidentificationMethodCodeSequence] == ["113100", "113111"]


def _minimal() -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.SOPInstanceUID = "1.2.3.4"
    ds.StudyDate = "20200102"
    ds.Modality = "CT"
    ds.PatientName = "DOE^JOHN"
    ds.PatientID = "PATIENT-1"
    ds.PatientBirthDate = "19700101"
    return ds


def test_dates_shift_by_one_offset_per_patient(key_file: str) -> None:
    options = Deidentify(retain_dates=True)
    a = _deidentify(_minimal(), options, key_file)
    other = _minimal()
    other.StudyDate = "20200103"
    b = _deidentify(other, options, key_file)
    from datetime import date

    def days(text: str) -> int:
        return date(int(text[:4]), int(text[4:6]), int(text[6:])).toordinal()

    shift = days(a.StudyDate) - days("20200102")
    assert -3650 <= shift <= -1
    assert days(b.StudyDate) - days(a.StudyDate) == 1
    # Table E.1-1 leaves Patient's Birth Date out of the Modified Dates column.
    assert a.PatientBirthDate == ""
    assert a.LongitudinalTemporalInformationModified == "MODIFIED"


def test_pseudonyms_are_keyed_and_stable(tmp_path: Path, key_file: str) -> None:
    a = _deidentify(_minimal(), Deidentify(), key_file)
    b = _deidentify(_minimal(), Deidentify(), key_file)
    assert a.PatientName == b.PatientName == a.PatientID != "PATIENT-1"
    other = tmp_path / "k2"
    other.write_bytes(b"another key that is long enough")
    assert _deidentify(_minimal(), Deidentify(), str(other)).PatientID != a.PatientID


@pytest.mark.parametrize(
    ("modality", "burned_in", "refused"),
    [
        ("US", None, True),
        ("XA", None, True),
        ("CT", "YES", True),
        ("US", "NO", False),
        ("CT", None, False),
    ],
)
def test_burned_in_annotation(
    modality: str, burned_in: str | None, refused: bool, key_file: str
) -> None:
    ds = _minimal()
    ds.Modality = modality
    if burned_in is not None:
        ds.BurnedInAnnotation = burned_in
    if refused:
        with pytest.raises(ConversionError, match=r"burned-in|Burned In"):
            _deidentify(ds, Deidentify(), key_file)
        _deidentify(ds, Deidentify(allow_burned_in=True), key_file)
    else:
        _deidentify(ds, Deidentify(), key_file)


# Each option's column: the option's flag, and the column's name in deid_table.OPTIONS.
_FLAGS = {
    "retain_uids": "retain_uids",
    "retain_device_identity": "retain_device_identity",
    "retain_patient_characteristics": "retain_patient_characteristics",
    "retain_longitudinal_modified_dates": "retain_dates",
    "clean_descriptors": "clean_descriptors",
}


def _cells() -> list[tuple[str, int]]:
    return [
        (column, tag)
        for column in _FLAGS
        for tag in sorted(COLUMNS[column])
        if tag >> 16 not in (0x0000, 0x0002) and tag not in _SKIPPED
    ]


def _carrying(tag: int) -> Dataset:
    ds = _minimal()
    vr = PROFILE[tag][1]
    if vr == "SQ":
        item = Dataset()
        item.add_new(0x00100010, "PN", "NESTED^NAME")
        ds.add_new(tag, vr, Sequence([item]))
    else:
        ds.add_new(tag, vr, _VALUES.get(vr, b"\x01\x02"))
    return ds


@pytest.mark.parametrize(("column", "tag"), _cells(), ids=[f"{c}-{t:08X}" for c, t in _cells()])
def test_every_cell_of_each_option_column(column: str, tag: int, key_file: str) -> None:
    """K keeps; the Modified Dates column shifts DA/DT and keeps TM; C keeps only when the
    caller states the text is clean (clean_descriptors), else the Basic Profile's action."""
    code, vr = PROFILE[tag]
    mark = COLUMNS[column][tag]
    before = _carrying(tag)
    basic = action(tag, code, vr, Deidentify())[0]
    runs: list[tuple[dict[str, bool], str]]
    if column == "retain_longitudinal_modified_dates":
        expect = {"DA": "shift_date", "DT": "shift_date", "TM": "keep"}.get(vr, basic)
        runs = [({"retain_dates": True}, expect)]
    elif mark == "K":
        runs = [({_FLAGS[column]: True}, "keep")]
    else:
        runs = [
            ({_FLAGS[column]: True, "clean_descriptors": True}, "keep"),
            ({_FLAGS[column]: True}, basic) if column != "clean_descriptors" else ({}, basic),
        ]
    for flags, kind in runs:
        options = Deidentify(**flags)
        plan = EditPlan(deidentify=options, key_file=key_file)
        _check(tag, kind, before, _deidentify(before, options, key_file), plan)


@pytest.mark.parametrize(
    ("flags", "codes"),
    [
        ({}, ["113100"]),
        ({"clean_descriptors": True}, ["113100", "113105"]),
        ({"retain_uids": True, "retain_dates": True}, ["113100", "113110", "113107"]),
        (
            {
                "retain_patient_characteristics": True,
                "retain_device_identity": True,
                "clean_descriptors": True,
            },
            ["113100", "113108", "113109", "113105"],
        ),
    ],
)
def test_method_code_sequence_names_each_option(
    flags: dict[str, bool], codes: list[str], key_file: str
) -> None:
    out = _deidentify(_minimal(), Deidentify(**flags), key_file)
    items = out.DeidentificationMethodCodeSequence
    assert [i.CodeValue for i in items] == codes
    assert {i.CodingSchemeDesignator for i in items} == {"DCM"}
    if "113105" in codes:
        assert items[codes.index("113105")].CodeMeaning == "Clean Descriptors Option"
    assert out.PatientIdentityRemoved == "YES"


def test_descriptors_removed_unless_stated_clean(key_file: str) -> None:
    ds = _minimal()
    ds.StudyDescription = "CT CHEST 55F DR SMITH"
    ds.SeriesDescription = "AXIAL 1MM"
    ds.ProtocolName = "CHEST ROUTINE"
    kept = _deidentify(ds, Deidentify(clean_descriptors=True), key_file)
    assert (kept.StudyDescription, kept.SeriesDescription) == (
        "CT CHEST 55F DR SMITH",
        "AXIAL 1MM",
    )
    assert kept.ProtocolName == "CHEST ROUTINE"
    removed = _deidentify(ds, Deidentify(), key_file)
    assert "StudyDescription" not in removed and "SeriesDescription" not in removed
    assert "ProtocolName" not in removed
    # A value known to be safe is written with a Set edit, which wins over the profile.
    from fastpush.dataset.edits import Set

    plan = EditPlan((Set("StudyDescription", "CT CHEST"),), Deidentify(), key_file)
    out = plan.compiled.edit_dataset(
        encode_dataset(ds, EXPLICIT_VR_LE), EXPLICIT_VR_LE, EXPLICIT_VR_LE
    )
    read = read_dataset(DicomBytesIO(out), is_implicit_VR=False, is_little_endian=True)
    assert read.StudyDescription == "CT CHEST"
