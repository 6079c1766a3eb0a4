"""Status handling, rejection and refused contexts against pynetdicom's storage SCP."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom import dcmread

import fastpush
from fastpush import Outcome
from fastpush.uids import EXPLICIT_VR_LE, IMPLICIT_VR_LE

from support.peers import PynetdicomSCPFactory, dataset_bytes, pydicom_test_files, run_cli

pytestmark = pytest.mark.interop
ENGINES = ["rust", "python"]
CT = "1.2.840.10008.5.1.4.1.1.2"
SC = "1.2.840.10008.5.1.4.1.1.7"


@pytest.mark.parametrize("engine", ENGINES)
def test_statuses_are_reported_and_the_rest_still_sent(
    pynetdicom_scp: PynetdicomSCPFactory, study: list[Path], engine: str
) -> None:
    answers = [0x0000, 0xB000, 0x0111, 0xA700, 0xC000]
    scp = pynetdicom_scp(statuses=lambda n: answers[n] if n < len(answers) else 0x0000)
    results = fastpush.push(study, scp.host, scp.port, engine=engine, retries=0)
    assert len(scp.received) == len(study)
    assert [r.status for r in results] == answers + [0] * (len(study) - len(answers))
    assert [r.outcome for r in results[:5]] == [
        Outcome.STORED,
        Outcome.WARNING,
        Outcome.FAILED,
        Outcome.FAILED,
        Outcome.FAILED,
    ]
    assert "Duplicate SOP Instance" in results[2].reason
    assert "Out of resources" in results[3].reason
    assert "Cannot understand" in results[4].reason
    assert all(r.outcome is Outcome.STORED for r in results[5:])
    for received, path in zip(scp.received, study, strict=True):
        assert received.dataset() == dcmread(path)


@pytest.mark.parametrize("engine", ENGINES)
def test_refused_abstract_syntax_fails_only_those_files(
    pynetdicom_scp: PynetdicomSCPFactory, study: list[Path], engine: str
) -> None:
    scp = pynetdicom_scp(sop_classes=[CT, SC])
    results = fastpush.push(study, scp.host, scp.port, engine=engine)
    for result in results:
        if result.sop_class_uid in (CT, SC):
            assert result.outcome is Outcome.STORED
        else:
            assert result.outcome is Outcome.FAILED
            assert "no accepted presentation context for MR Image Storage" in result.reason
    assert len(scp.received) == sum(r.outcome is Outcome.STORED for r in results) > 0


@pytest.mark.parametrize("engine", ENGINES)
def test_rejection_is_explained_with_exit_code_2(
    pynetdicom_scp: PynetdicomSCPFactory, study: list[Path], engine: str
) -> None:
    scp = pynetdicom_scp(require_called_aet="RIGHT_AE")
    proc = run_cli(
        "store", scp.host, str(scp.port), *map(str, study), "-aec", "WRONG_AE", "--engine", engine
    )
    assert proc.returncode == 2
    assert "called AE title not recognized" in proc.stderr
    assert "Traceback" not in proc.stderr
    results = fastpush.push(study, scp.host, scp.port, called_ae="WRONG_AE", engine=engine)
    assert all(r.outcome is Outcome.FAILED and "Rejected" in r.reason for r in results)
    assert not scp.received


@pytest.mark.parametrize("engine", ENGINES)
def test_association_stores_paths_bytes_and_datasets(
    pynetdicom_scp: PynetdicomSCPFactory, study: list[Path], engine: str
) -> None:
    scp = pynetdicom_scp()
    events: list[fastpush.Event] = []
    contexts = [(CT, EXPLICIT_VR_LE), (CT, IMPLICIT_VR_LE)]
    ct_files = [p for p in study if dcmread(p, stop_before_pixels=True).SOPClassUID == CT]
    with fastpush.Association(
        scp.host, scp.port, contexts, engine=engine, on_event=events.append
    ) as assoc:
        first = assoc.store(ct_files[0])
        second = assoc.store(ct_files[1].read_bytes())
        dataset = dcmread(ct_files[2])
        dataset.SOPInstanceUID = "1.2.3.999"
        third = assoc.store(dataset)
    assert [r.outcome for r in (first, second, third)] == [Outcome.STORED] * 3
    assert scp.received_uids[2] == "1.2.3.999"
    assert scp.received[2].dataset().PatientName == dataset.PatientName
    kinds = [e.kind for e in events]
    assert kinds[:2] == [fastpush.EventKind.REQUESTING, fastpush.EventKind.ACCEPTED]
    assert kinds[-1] == fastpush.EventKind.RELEASED
    assert kinds.count(fastpush.EventKind.RESPONSE) == 3


@pytest.mark.parametrize("engine", ENGINES)
def test_out_of_resources_is_retried_and_then_stored(
    pynetdicom_scp: PynetdicomSCPFactory, study: list[Path], engine: str
) -> None:
    answers = {1: 0xA700, 2: 0x0213, 5: 0x0122}  # by the order the SCP receives them
    scp = pynetdicom_scp(statuses=lambda n: answers.get(n, 0x0000))
    results = fastpush.push(study[:4], scp.host, scp.port, engine=engine, backoff=0.01)
    # File 1 met A700, then 0213, then got stored; file 3's 0122 is permanent: not retried.
    assert [r.outcome for r in results] == [
        Outcome.STORED,
        Outcome.STORED,
        Outcome.STORED,
        Outcome.FAILED,
    ]
    assert [r.attempts for r in results] == [1, 3, 1, 1]
    assert "SOP class not supported" in results[3].reason
    assert scp.received_uids.count(results[1].sop_instance_uid) == 3
    assert not any(r.maybe_duplicate for r in results)


@pytest.mark.parametrize("engine", ENGINES)
def test_odd_length_datasets(
    pynetdicom_scp: PynetdicomSCPFactory, study: list[Path], tmp_path: Path, engine: str
) -> None:
    odd = tmp_path / "odd.dcm"
    odd.write_bytes(study[0].read_bytes() + b"\0")  # one stray byte: not valid DICOM
    deflated = next(p for p in pydicom_test_files() if p.name == "image_dfl.dcm")  # odd length
    scp = pynetdicom_scp()
    results = fastpush.push(
        [odd, deflated, study[1]],
        scp.host,
        scp.port,
        engine=engine,
        proposal=fastpush.Proposal(conversion=False),
    )
    assert [r.outcome for r in results] == [Outcome.FAILED, Outcome.STORED, Outcome.STORED]
    assert "odd length" in results[0].reason
    assert results[0].attempts == 1
    # The deflated stream went out verbatim, padded to even length as PS3.5 A.5 says.
    assert scp.received[0].raw == dataset_bytes(deflated) + b"\0"
    assert len(dataset_bytes(deflated)) % 2 == 1
