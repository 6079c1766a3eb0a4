"""One item, one failure kind: inputs described once, and each failure typed where it happens.

A file that vanishes or shrinks between the scan and its send is that file's failure alone
(never retried, the association goes on); a refused context, a failure status and a lost
connection each get their kind, from which retries follow.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.dataset import FileMetaDataset
from pydicom.uid import UID

import fastpush
from fastpush import Failure, Outcome
from fastpush.uids import IMPLICIT_VR_LE

from support.peers import PynetdicomSCPFactory, pydicom_test_files, run_cli

pytestmark = pytest.mark.interop

CT = "1.2.840.10008.5.1.4.1.1.2"
MR = "1.2.840.10008.5.1.4.1.1.4"


@pytest.mark.parametrize("engine", ["rust", "python"])
def test_files_vanishing_mid_push_fail_alone(
    pynetdicom_scp: PynetdicomSCPFactory, study: list[Path], engine: str
) -> None:
    gone, shrunk = study[2], study[4]

    def meddle(index: int) -> int:
        # While the first file is being stored, after every file was scanned.
        if index == 0:
            gone.unlink()
            with shrunk.open("r+b") as f:
                f.truncate(shrunk.stat().st_size // 2)
        return 0x0000

    scp = pynetdicom_scp(statuses=meddle)
    results = fastpush.push(study, scp.host, scp.port, engine=engine, retries=3)
    by_path = {Path(r.path): r for r in results if r.path}
    assert len(by_path) == len(study)
    for path in (gone, shrunk):
        result = by_path[path]
        assert result.outcome is Outcome.FAILED, result
        assert result.failure is Failure.SOURCE
        assert result.attempts == 1  # not retried
        assert "changed since the scan" in result.reason
    stored = [r for r in results if r.ok]
    assert len(stored) == len(study) - 2
    # The association was never aborted: every file went over the first one.
    assert {r.association for r in stored} == {1}
    assert len(scp.received) == len(study) - 2


def test_failure_kinds_and_retries(pynetdicom_scp: PynetdicomSCPFactory, tmp_path: Path) -> None:
    from fastpush.synthetic import write_study

    ct = write_study(tmp_path / "ct", count=2, sop_classes=[CT])
    mr = write_study(tmp_path / "mr", count=1, sop_classes=[MR])
    # The first CT store is out of resources (transient: retried), the second a refusal.
    answers = {0: 0xA700, 2: 0xC000}
    scp = pynetdicom_scp(statuses=lambda n: answers.get(n, 0), sop_classes=[CT])
    results = fastpush.push([*ct, *mr], scp.host, scp.port, retries=2, backoff=0)
    by_path = {Path(r.path): r for r in results if r.path}
    first, second, refused = by_path[ct[0]], by_path[ct[1]], by_path[mr[0]]
    assert (first.outcome, first.attempts, first.failure) == (Outcome.STORED, 2, None)
    assert (second.outcome, second.attempts, second.failure) == (
        Outcome.FAILED,
        1,
        Failure.STATUS,
    )
    assert second.status == 0xC000
    assert (refused.failure, refused.attempts) == (Failure.REFUSED, 1)


def test_report_carries_failure_and_notes(
    pynetdicom_scp: PynetdicomSCPFactory, study: list[Path], tmp_path: Path
) -> None:
    scp = pynetdicom_scp()
    text = tmp_path / "notes.txt"
    text.write_text("not dicom")
    report = tmp_path / "report.jsonl"
    run_cli(
        "store", scp.host, str(scp.port), str(study[0]), str(text), "--report", str(report), "-q"
    )
    lines = {
        Path(line["path"]).name: line for line in map(json.loads, report.read_text().splitlines())
    }
    assert lines[study[0].name]["failure"] is None
    assert lines[study[0].name]["notes"] == []
    assert lines["notes.txt"]["failure"] == "source"
    assert "retryable" not in lines["notes.txt"]


def test_compressed_dataset_input_is_decompressed_like_a_file(
    pynetdicom_scp: PynetdicomSCPFactory,
) -> None:
    """A pydicom Dataset is described once, in its own syntax, and takes the file's path."""
    rle = next(p for p in pydicom_test_files() if p.name == "MR_small_RLE.dcm")
    source = dcmread(rle)
    scp = pynetdicom_scp(transfer_syntaxes=[IMPLICIT_VR_LE])
    with fastpush.Association(
        scp.host, scp.port, [(MR, (str(source.file_meta.TransferSyntaxUID),)), (MR, IMPLICIT_VR_LE)]
    ) as assoc:
        result = assoc.store(source)
    assert result.outcome is Outcome.STORED, result.reason
    assert result.sent_syntax == IMPLICIT_VR_LE
    assert result.sop_instance_uid == source.SOPInstanceUID
    stored = scp.received[0].dataset()
    stored.file_meta = FileMetaDataset()
    stored.file_meta.TransferSyntaxUID = UID(IMPLICIT_VR_LE)
    assert np.array_equal(stored.pixel_array, source.pixel_array)
