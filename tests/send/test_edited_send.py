"""An edited dataset on the wire: the edited header from the converter, the values the edits leave
alone (the pixel data) sent from the file mapping without a copy. What storescp receives (``+B``:
kept bit for bit) is exactly what ``edit_dataset`` returns, at any PDU size."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom import dcmread

import fastpush
from fastpush.dataset.edits import EditPlan, MapUids, Prefix, Remove, Set
from fastpush.dataset.item import Item
from fastpush.dataset.scan import read_file

from support.peers import StoreSCPFactory, dataset_bytes


@pytest.mark.parametrize("pdu", [None, "4096"])
def test_received_dataset_is_the_edited_dataset(
    storescp: StoreSCPFactory, study: list[Path], tmp_path: Path, pdu: str | None
) -> None:
    key = tmp_path / "edit.key"
    key.write_bytes(b"a secret key of the site, 32 b\n")
    plan = EditPlan(
        (
            Set("InstitutionName", "A LONGER INSTITUTION NAME"),
            Prefix("PatientName", "X^"),
            Remove("PatientID"),
            MapUids(),
        ),
        key_file=str(key),
    )
    scp = storescp("+B", *(("-pdu", pdu) if pdu else ()))
    results = fastpush.push(study, scp.host, scp.port, called_ae=scp.aet, edits=plan)
    assert [r.outcome.name for r in results] == ["STORED"] * len(study)
    items = [read_file(path) for path in study]
    by_uid = {
        plan.compiled.instance_uid(i.sop_instance_uid): i for i in items if isinstance(i, Item)
    }
    received = scp.stored_files()
    assert len(received) == len(study)
    for path in received:
        meta = dcmread(path, stop_before_pixels=True).file_meta
        item = by_uid[meta.MediaStorageSOPInstanceUID]
        syntax = meta.TransferSyntaxUID
        want = plan.compiled.edit_dataset(item.source, item.transfer_syntax, syntax)
        assert dataset_bytes(path) == want, path.name
