"""Describing inputs from their first bytes: identity from the dataset, files without (complete)
file meta, and turning what cannot be sent into reasons, cheaply."""

from __future__ import annotations

import os
import random
import tempfile
import warnings
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pydicom
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import _read_file_meta_info, read_preamble
from pydicom.filewriter import write_file_meta_info
from pydicom.sequence import Sequence
from pydicom.uid import (
    CTImageStorage,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
)

from fastpush.dataset import scan
from fastpush.dataset.header import HEAD
from fastpush.dataset.item import Item, Skip
from fastpush.dataset.scan import describe_buffer, expand, read_file
from fastpush.synthetic import write_study

from support.peers import dataset_bytes, encode_dataset

TEST_FILES = Path(pydicom.data.get_testdata_file("CT_small.dcm")).parent  # type: ignore[arg-type]
ENCODINGS = {
    ImplicitVRLittleEndian: (True, True),
    ExplicitVRLittleEndian: (False, True),
    ExplicitVRBigEndian: (False, False),
}
# Meta and dataset disagree on the SOP Instance UID: storescp answered these with 0xA900.
MISMATCHED = [
    "rtdose.dcm",
    "rtdose_1frame.dcm",
    "rtdose_expb.dcm",
    "rtdose_expb_1frame.dcm",
    "rtplan.dcm",
    "badVR.dcm",
]
# pydicom reads it with a warning, but its meta says JPEG Baseline (explicit VR, encapsulated
# pixels) while its dataset is Implicit VR: no transfer syntax describes it, DCMTK cannot read it.
UNSENDABLE = {"SC_rgb_jpeg.dcm": "is an explicit VR syntax but the dataset is Implicit VR"}
SYNTHETIC = (
    ImplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    DeflatedExplicitVRLittleEndian,
)


def _pydicom_view(path: Path) -> tuple[str, str, str, int] | None:
    """pydicom's reading of ``path``: (SOP Class, SOP Instance, syntax, dataset offset), or None
    when it cannot read it or the dataset lacks either UID."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ds = pydicom.dcmread(path, force=True)
            sop_class, sop_instance = ds.get("SOPClassUID"), ds.get("SOPInstanceUID")
        except Exception:
            return None
        if not sop_class or not sop_instance:
            return None
        syntax = ds.file_meta.get("TransferSyntaxUID")
        if syntax is None:
            implicit, little = ds.original_encoding[:2]
            syntax = next(uid for uid, enc in ENCODINGS.items() if enc == (implicit, little))
        with open(path, "rb") as fp:
            read_preamble(fp, force=True)
            _read_file_meta_info(fp)
            offset = fp.tell()
    return str(sop_class), str(sop_instance), str(syntax), offset


def _test_files() -> list[str]:
    return sorted(p.name for p in TEST_FILES.iterdir() if p.is_file())


@pytest.mark.parametrize("name", _test_files())
def test_pydicom_test_files(name: str) -> None:
    """Every file pydicom reads with both UIDs in its dataset is described as pydicom reads it;
    everything else is a skip with a reason. Decided by content: the set has .dump, .json, .py."""
    path = TEST_FILES / name
    result = read_file(path)
    expected = _pydicom_view(path)
    if name in UNSENDABLE:
        assert isinstance(result, Skip)
        assert UNSENDABLE[name] in result.reason
        return
    if expected is None:
        assert isinstance(result, Skip), result
        assert result.reason
        return
    assert isinstance(result, Item), result
    sop_class, sop_instance, syntax, offset = expected
    assert (result.sop_class_uid, result.sop_instance_uid) == (sop_class, sop_instance)
    assert result.transfer_syntax == syntax
    assert (result.offset, result.length) == (offset, path.stat().st_size - offset)
    data = path.read_bytes()
    assert describe_buffer(data) == replace(result, path=None, data=data)


def test_meta_disagreeing_with_the_dataset_is_noted() -> None:
    for name in MISMATCHED:
        item = read_file(TEST_FILES / name)
        assert isinstance(item, Item), name
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(TEST_FILES / name)
        meta_uid = ds.file_meta.MediaStorageSOPInstanceUID
        assert item.sop_instance_uid == ds.SOPInstanceUID != meta_uid
        assert item.notes == (
            f"file meta MediaStorageSOPInstanceUID {meta_uid} differs from the dataset's"
            f" SOPInstanceUID {ds.SOPInstanceUID}: sent with the dataset's",
        )
    assert read_file(TEST_FILES / "CT_small.dcm").notes == ()  # type: ignore[union-attr]


def test_datasets_without_uids_are_skipped() -> None:
    for name, missing in [
        ("no_meta_group_length.dcm", "SOP Class UID (0008,0016)"),
        ("priv_SQ.dcm", "SOP Class UID (0008,0016)"),
        # Found as DICOM (no meta, or no syntax in it) and walked, not turned away as junk.
        ("meta_missing_tsyntax.dcm", "SOP Class UID (0008,0016)"),
        ("nested_priv_SQ.dcm", "SOP Class UID (0008,0016)"),
    ]:
        result = read_file(TEST_FILES / name)
        assert result == Skip(str(TEST_FILES / name), f"dataset has no {missing}")


def test_datasets_without_file_meta() -> None:
    for name, syntax in [
        ("rtstruct.dcm", ImplicitVRLittleEndian),
        ("ExplVR_LitEndNoMeta.dcm", ExplicitVRLittleEndian),
        ("ExplVR_BigEndNoMeta.dcm", ExplicitVRBigEndian),
    ]:
        item = read_file(TEST_FILES / name)
        assert isinstance(item, Item), name
        assert (item.transfer_syntax, item.offset) == (syntax, 0)
        assert item.length == (TEST_FILES / name).stat().st_size
        assert item.notes[0].startswith("no file meta: ")


def test_scan_agrees_with_pydicom(tmp_path: Path) -> None:
    paths = write_study(tmp_path, count=4, transfer_syntaxes=SYNTHETIC)
    for path in paths:
        item = read_file(path)
        assert isinstance(item, Item)
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        assert item.sop_class_uid == ds.SOPClassUID
        assert item.sop_instance_uid == ds.SOPInstanceUID
        assert item.transfer_syntax == ds.file_meta.TransferSyntaxUID
        data = path.read_bytes()
        assert data[item.offset :] == dataset_bytes(path)
        assert item.length == len(data) - item.offset
        assert item.notes == ()
        assert describe_buffer(data) == replace(item, path=None, data=data)


def _dataset(sop_instance: str = "1.2.3.4", *, sequence: bool = True) -> Dataset:
    """A dataset with a nested sequence before its UIDs, and elements after them."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    if sequence:
        inner = Dataset()
        inner.CodeValue = "en"
        inner.CodingSchemeDesignator = "RFC5646"
        item = Dataset()
        item.CodeValue = "fr"
        item.LanguageCodeSequence = Sequence([inner, Dataset()])
        ds.LanguageCodeSequence = Sequence([item])
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = sop_instance
    ds.StudyDate = "20240101"
    ds.PatientName = "Scan^Test"
    return ds


def _meta(syntax: str | None, sop_instance: str = "1.2.3.4") -> bytes:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = sop_instance
    if syntax:
        meta.TransferSyntaxUID = syntax
    fp = DicomBytesIO()
    write_file_meta_info(fp, meta, enforce_standard=False)
    return b"\0" * 128 + b"DICM" + fp.getvalue()


@pytest.mark.parametrize("syntax", SYNTHETIC)
@pytest.mark.parametrize("undefined", [True, False])
def test_sequences_before_the_uids_are_skipped(syntax: str, undefined: bool) -> None:
    ds = _dataset()
    ds["LanguageCodeSequence"].is_undefined_length = undefined
    ds.LanguageCodeSequence[0]["LanguageCodeSequence"].is_undefined_length = not undefined
    for item in ds.LanguageCodeSequence[0].LanguageCodeSequence:
        item.is_undefined_length_sequence_item = undefined
    data = _meta(syntax) + encode_dataset(ds, syntax)
    item = describe_buffer(data)
    assert isinstance(item, Item), item
    assert (item.sop_class_uid, item.sop_instance_uid) == (CTImageStorage, "1.2.3.4")
    assert item.transfer_syntax == syntax


def test_un_of_undefined_length_holds_implicit_vr() -> None:
    """PS3.5 6.2.2: a sequence sent as UN of undefined length is encoded Implicit VR LE inside,
    also in an Explicit VR Big Endian dataset."""
    for syntax, order in ((ExplicitVRLittleEndian, "little"), (ExplicitVRBigEndian, "big")):

        def u16(value: int, order: str = order) -> bytes:
            return value.to_bytes(2, order)  # type: ignore[arg-type]

        un = u16(0x0008) + u16(0x0006) + b"UN\0\0" + b"\xff" * 4
        inner = (
            b"\xfe\xff\x00\xe0\xff\xff\xff\xff"  # item, undefined length (implicit LE)
            + b"\x08\x00\x00\x01\x02\x00\x00\x00en"  # (0008,0100), implicit
            + b"\xfe\xff\x0d\xe0\x00\x00\x00\x00"
            + b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
        )

        def ui(elem: int, value: str, order: str = order) -> bytes:
            data = value.encode() + b"\0" * (len(value) % 2)
            return u16(0x0008) + u16(elem) + b"UI" + len(data).to_bytes(2, order) + data  # type: ignore[arg-type]

        sop = ui(0x0016, CTImageStorage) + ui(0x0018, "1.2.3.4")
        item = describe_buffer(_meta(syntax) + un + inner + sop)
        assert isinstance(item, Item), item
        assert item.sop_instance_uid == "1.2.3.4"


def test_meta_without_transfer_syntax_is_detected_from_the_dataset() -> None:
    for syntax in ENCODINGS:
        item = describe_buffer(_meta(None) + encode_dataset(_dataset(), syntax))
        assert isinstance(item, Item), item
        assert item.transfer_syntax == syntax
        assert item.notes[0].startswith("file meta lacks TransferSyntaxUID: ")


def test_meta_that_names_the_other_vr_encoding() -> None:
    """As pydicom does, the first element tells Implicit from Explicit VR."""
    for declared, actual in [
        (ExplicitVRLittleEndian, ImplicitVRLittleEndian),
        (ImplicitVRLittleEndian, ExplicitVRLittleEndian),
    ]:
        item = describe_buffer(_meta(declared) + encode_dataset(_dataset(), actual))
        assert isinstance(item, Item), item
        assert item.transfer_syntax == actual
        assert "does not match the dataset's encoding" in item.notes[0]
    skip = describe_buffer(
        _meta(JPEGBaseline8Bit) + encode_dataset(_dataset(), ImplicitVRLittleEndian)
    )
    assert isinstance(skip, Skip)


def test_meta_without_preamble(tmp_path: Path) -> None:
    path = write_study(tmp_path, count=1)[0]
    full = read_file(path)
    assert isinstance(full, Item)
    bare = describe_buffer(path.read_bytes()[132:])
    assert isinstance(bare, Item), bare
    assert bare.offset == full.offset - 132
    assert (bare.sop_instance_uid, bare.transfer_syntax) == (
        full.sop_instance_uid,
        full.transfer_syntax,
    )
    assert bare.notes == ("file meta has no preamble",)


def test_missing_meta_uids_are_noted() -> None:
    meta = FileMetaDataset()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    fp = DicomBytesIO()
    write_file_meta_info(fp, meta, enforce_standard=False)
    data = (
        b"\0" * 128 + b"DICM" + fp.getvalue() + encode_dataset(_dataset(), ExplicitVRLittleEndian)
    )
    item = describe_buffer(data)
    assert isinstance(item, Item)
    assert item.notes == (
        "file meta lacks MediaStorageSOPClassUID: sent with the dataset's",
        "file meta lacks MediaStorageSOPInstanceUID: sent with the dataset's",
    )


def _junk() -> dict[str, bytes]:
    rng = random.Random(8)
    return {
        "notes.txt": b"not dicom at all\n" * 100,
        "photo.dcm": b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + rng.randbytes(100_000),
        "zeros.dcm": bytes(1 << 20),
        "random.bin": rng.randbytes(1 << 20),
        "empty.dcm": b"",
        "short": b"DICM",
    }


@pytest.fixture
def counted_reads(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Bytes read by each os.read/os.pread call while the test runs."""
    sizes: list[int] = []

    def wrap(call: Callable[..., bytes]) -> Callable[..., bytes]:
        def counted(*args: int) -> bytes:
            data = call(*args)
            sizes.append(len(data))
            return data

        return counted

    monkeypatch.setattr(os, "read", wrap(os.read))
    monkeypatch.setattr(os, "pread", wrap(os.pread))
    yield sizes


def test_non_dicom_is_skipped_from_its_first_bytes(
    tmp_path: Path, counted_reads: list[int]
) -> None:
    for name, data in _junk().items():
        path = tmp_path / name
        path.write_bytes(data)
        counted_reads.clear()
        result = read_file(path)
        assert isinstance(result, Skip), name
        assert result.reason.startswith("not a DICOM file: "), result.reason
        assert sum(counted_reads) <= HEAD, name  # one first read, nothing parsed deeply
        assert describe_buffer(data) == replace(result, path=None)


def test_unsendable_files_become_skips(tmp_path: Path) -> None:
    good = write_study(tmp_path / "study", count=1)[0]
    data = good.read_bytes()
    offset = read_file(good).offset  # type: ignore[union-attr]
    cases = {
        "truncated_meta.dcm": (data[:150], "file meta is truncated"),
        "meta_only.dcm": (data[:offset], "file has a file meta but no dataset"),
        "cut_in_group_0008.dcm": (data[: offset + 20], "dataset is truncated"),
    }
    for name, (content, _) in cases.items():
        (tmp_path / name).write_bytes(content)
    for name, (_, reason) in cases.items():
        result = read_file(tmp_path / name)
        assert isinstance(result, Skip), name
        assert reason in result.reason, (name, result.reason)
    missing = read_file(tmp_path / "missing.dcm")
    assert isinstance(missing, Skip) and "cannot read" in missing.reason
    folder = read_file(tmp_path / "study")
    assert isinstance(folder, Skip) and folder.reason == "not a regular file (a folder)"


def test_values_before_the_uids_are_skipped_not_read(
    tmp_path: Path, counted_reads: list[int]
) -> None:
    ds = _dataset(sequence=False)
    ds.add_new(0x0008_0001, "OB", bytes(4 << 20))  # a 4 MiB value ahead of (0008,0016)
    path = tmp_path / "big_value.dcm"
    path.write_bytes(_meta(ExplicitVRLittleEndian) + encode_dataset(ds, ExplicitVRLittleEndian))
    item = read_file(path)
    assert isinstance(item, Item) and item.sop_instance_uid == "1.2.3.4"
    assert sum(counted_reads) < 64 << 10


def test_walking_gives_up_past_its_budget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, counted_reads: list[int]
) -> None:
    """A long sequence ahead of the UIDs must be walked item by item: the reading is bounded."""
    ds = _dataset(sequence=False)
    items = [Dataset() for _ in range(200)]
    for item in items:
        item.add_new(0x0009_1010, "OB", bytes(30_000))
        item.is_undefined_length_sequence_item = True
    ds.LanguageCodeSequence = Sequence(items)
    ds["LanguageCodeSequence"].is_undefined_length = True
    path = tmp_path / "long_sequence.dcm"
    path.write_bytes(_meta(ExplicitVRLittleEndian) + encode_dataset(ds, ExplicitVRLittleEndian))
    assert isinstance(read_file(path), Item)
    monkeypatch.setattr(scan, "_BUDGET", 256 << 10)
    counted_reads.clear()
    result = read_file(path)
    assert isinstance(result, Skip) and "too much to read" in result.reason
    assert sum(counted_reads) <= 256 << 10


def _long_sequence_first(syntax: str) -> Dataset:
    """UIDs behind 40 KiB of sequence items: past the first read and across read boundaries."""
    ds = _dataset(sequence=False)
    items = [Dataset() for _ in range(20)]
    for item in items:
        item.add_new(0x0009_1010, "OB", bytes(2000))
        item.is_undefined_length_sequence_item = True
    ds.LanguageCodeSequence = Sequence(items)
    ds["LanguageCodeSequence"].is_undefined_length = True
    return ds


VALID = (
    [_meta(syntax) + encode_dataset(_dataset(), syntax) for syntax in SYNTHETIC]
    + [encode_dataset(_dataset(), syntax) for syntax in ENCODINGS]
    + [_meta(syntax) + encode_dataset(_long_sequence_first(syntax), syntax) for syntax in SYNTHETIC]
)


def test_fuzz_seeds_are_sendable(tmp_path: Path) -> None:
    for index, data in enumerate(VALID):
        item = describe_buffer(data)
        assert isinstance(item, Item) and item.sop_instance_uid == "1.2.3.4", index
        path = tmp_path / f"{index}.dcm"
        path.write_bytes(data)
        assert read_file(path) == replace(item, path=str(path), data=None)


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=600), prefix=st.sampled_from([b"", b"\0" * 128 + b"DICM"]))
def test_fuzz_arbitrary_bytes(data: bytes, prefix: bytes) -> None:
    result = describe_buffer(prefix + data)
    assert isinstance(result, (Item, Skip))
    if isinstance(result, Item):
        assert result.offset + result.length == len(prefix + data)


@settings(max_examples=600, deadline=None)
@given(
    index=st.integers(0, len(VALID) - 1),
    edits=st.lists(st.tuples(st.integers(0, 50_000), st.integers(0, 255)), max_size=6),
    cut=st.integers(0, 50_000),
)
def test_fuzz_damaged_files(index: int, edits: list[tuple[int, int]], cut: int) -> None:
    """Damaged headers, lengths and sequences: a description or a reason, nothing else, and the
    same from a file (read piece by piece) as from memory."""
    data = bytearray(VALID[index])
    for pos, value in edits:
        data[pos % len(data)] = value
    damaged = bytes(data[: max(cut, 8)])
    result = describe_buffer(damaged)
    assert isinstance(result, (Item, Skip))
    if isinstance(result, Skip):
        assert result.reason
    with tempfile.NamedTemporaryFile() as f:
        f.write(damaged)
        f.flush()
        expected = (
            replace(result, path=f.name)
            if isinstance(result, Skip)
            else replace(result, path=f.name, data=None)
        )
        assert read_file(f.name) == expected


def test_expand_walks_folders(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    for name in ("a/1", "a/b/2", "3"):
        (tmp_path / name).write_bytes(b"x")
    assert list(expand([tmp_path], recursive=True)) == [
        str(tmp_path / "3"),
        str(tmp_path / "a/1"),
        str(tmp_path / "a/b/2"),
    ]
    assert list(expand([tmp_path], recursive=False)) == [str(tmp_path / "3")]
    assert list(expand([tmp_path / "nope"])) == [str(tmp_path / "nope")]
