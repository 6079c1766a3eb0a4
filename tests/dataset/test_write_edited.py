"""``write_edited``: a file edited into a new Part-10 file, the edited header from the Rust editor
and the values it leaves alone copied file to file by the kernel. The file holds exactly the file
meta and what ``edit_dataset`` returns, for pydicom's test files in every transfer syntax, or
nothing at all."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom import dcmread

from fastpush.dataset.edits import Deidentify, EditPlan, MapUids, Set, write_edited
from fastpush.dataset.item import Item
from fastpush.dataset.meta import file_meta
from fastpush.dataset.scan import read_file
from fastpush.errors import ConversionError

from support.peers import pydicom_test_files


@pytest.fixture
def plans(tmp_path: Path) -> list[EditPlan]:
    key = tmp_path / "deid.key"
    key.write_bytes(b"a secret key of the site, 32 b\n")
    edited = EditPlan((Set("InstitutionName", "SITE A"), MapUids()), key_file=str(key))
    deidentified = EditPlan(deidentify=Deidentify(allow_burned_in=True), key_file=str(key))
    return [edited, deidentified]


@pytest.mark.parametrize("path", pydicom_test_files(), ids=lambda p: p.name)
def test_the_file_is_the_meta_and_the_edited_dataset(
    path: Path, plans: list[EditPlan], tmp_path: Path
) -> None:
    item = read_file(path)
    if not isinstance(item, Item):
        pytest.skip(f"not a file to edit: {item}")
    syntax = item.transfer_syntax
    name, offset, length = item.source
    in_memory = Path(name).read_bytes()[offset : offset + length]
    out = tmp_path / "out.dcm"
    for plan in plans:
        compiled = plan.compiled
        try:
            body = compiled.edit_dataset(item.source, syntax, syntax)
        except ConversionError as e:
            with pytest.raises(ConversionError, match=str(e).split(":")[0]):
                write_edited(item, plan, out)
            assert not out.exists()
            continue
        meta = file_meta(item.sop_class_uid, compiled.instance_uid(item.sop_instance_uid), syntax)
        uid = write_edited(item, plan, out)
        assert out.read_bytes() == meta + body
        assert dcmread(out).file_meta.MediaStorageSOPInstanceUID == uid
        # From bytes: the values the edits leave alone written from memory, not by the kernel.
        assert compiled.write_edited(in_memory, syntax, syntax, out, meta) == len(meta + body)
        assert out.read_bytes() == meta + body
