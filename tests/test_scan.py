"""Reading only the file meta, and turning unsendable input into reasons."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from pydicom import dcmread

from fastpush.item import Item, Skip
from fastpush.scan import describe_buffer, expand, read_file
from fastpush.synthetic import write_study

from peers import dataset_bytes


def test_scan_agrees_with_pydicom(tmp_path: Path) -> None:
    for path in write_study(tmp_path, count=4):
        item = read_file(path)
        assert isinstance(item, Item)
        ds = dcmread(path, stop_before_pixels=True)
        assert item.sop_class_uid == ds.file_meta.MediaStorageSOPClassUID
        assert item.sop_instance_uid == ds.file_meta.MediaStorageSOPInstanceUID
        assert item.transfer_syntax == ds.file_meta.TransferSyntaxUID
        data = path.read_bytes()
        assert data[item.offset :] == dataset_bytes(path)
        assert item.length == len(data) - item.offset
        assert describe_buffer(data) == replace(item, path=None, data=data)


def test_unsendable_files_become_skips(tmp_path: Path) -> None:
    good = write_study(tmp_path / "study", count=1)[0]
    text = tmp_path / "notes.txt"
    text.write_text("not dicom at all")
    truncated = tmp_path / "truncated.dcm"
    truncated.write_bytes(good.read_bytes()[:150])
    meta_only = tmp_path / "meta_only.dcm"
    meta_only.write_bytes(good.read_bytes()[: read_file(good).offset])  # type: ignore[union-attr]
    missing = tmp_path / "missing.dcm"
    reasons = {}
    for path in (text, truncated, meta_only, missing):
        result = read_file(path)
        assert isinstance(result, Skip), path
        reasons[path.name] = result.reason
    assert "not a DICOM Part-10 file" in reasons["notes.txt"]
    assert "truncated" in reasons["truncated.dcm"]
    assert "no dataset" in reasons["meta_only.dcm"]
    assert "cannot read" in reasons["missing.dcm"]


def test_meta_without_transfer_syntax_is_skipped(tmp_path: Path) -> None:
    path = write_study(tmp_path, count=1)[0]
    data = bytearray(path.read_bytes())
    # Rename (0002,0010) to (0002,0011): still well-formed, but the syntax is gone.
    index = data.index(b"\x02\x00\x10\x00UI")
    data[index + 2] = 0x11
    result = describe_buffer(bytes(data))
    assert isinstance(result, Skip)
    assert "TransferSyntaxUID" in result.reason


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
