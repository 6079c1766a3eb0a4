"""Storage Commitment with Orthanc in both roles (issue 20): its DicomModalities entry points at
our listener (it reports on a new association), and it asks our server to commit."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pydicom

from fastpush.receive.commit import Commitment
from fastpush.receive.report_listener import ReportListener
from fastpush.receive.server import StorageServer
from fastpush.send.commit import CommitOptions, send_report
from fastpush.send.push import push
from fastpush.wire.commitment import Report
from tests.support.peers import Orthanc, free_port


def test_orthanc_as_scp(orthanc: Orthanc, study_dir: Path, study: list[Path]) -> None:
    listen = free_port()
    entry = {"AET": "FASTPUSH", "Host": "127.0.0.1", "Port": listen}
    orthanc.request("PUT", "/modalities/fastpush", body=json.dumps(entry).encode())
    with ReportListener("127.0.0.1", listen, ae_title="FASTPUSH") as listener:
        results = push(
            [study_dir],
            orthanc.host,
            orthanc.dicom_port,
            called_ae=orthanc.aet,
            commit=CommitOptions(timeout=30, waiter=listener),
        )
    # The listener takes a report only from the AE asked (ORTHANC) for the transaction asked.
    assert all(r.committed is True for r in results), [r.reason for r in results]


def test_orthanc_as_scu(orthanc: Orthanc, tmp_path: Path, study: list[Path]) -> None:
    ids = [
        json.loads(orthanc.request("POST", "/instances", body=p.read_bytes()))["ID"] for p in study
    ]
    sent: list[Report] = []
    delivered = threading.Event()

    def deliver(calling_ae: str, report: Report) -> None:
        assert calling_ae == orthanc.aet
        send_report(
            orthanc.host, orthanc.dicom_port, report, calling_ae="ARCHIVE", called_ae=orthanc.aet
        )
        sent.append(report)
        delivered.set()

    commitment = Commitment(send_report=deliver)
    with StorageServer(
        "127.0.0.1", 0, ae_title="ARCHIVE", directory=tmp_path / "out", commitment=commitment
    ) as scp:
        entry = {"AET": "ARCHIVE", "Host": "127.0.0.1", "Port": scp.port}
        orthanc.request("PUT", "/modalities/archive", body=json.dumps(entry).encode())
        body = {"Resources": ids, "Synchronous": True}
        orthanc.request("POST", "/modalities/archive/store", body=json.dumps(body).encode())
        refs = []
        for path in study:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
            refs.append({"SOPClassUID": ds.SOPClassUID, "SOPInstanceUID": ds.SOPInstanceUID})
        refs.append({"SOPClassUID": refs[0]["SOPClassUID"], "SOPInstanceUID": "1.2.3.4.5.6.7"})
        job = json.loads(
            orthanc.request(
                "POST",
                "/modalities/archive/storage-commitment",
                body=json.dumps({"DicomInstances": refs, "Timeout": 30}).encode(),
            )
        )
        assert delivered.wait(30)
    report = sent[0]
    assert len(report.committed) == len(study)
    assert [ref.sop_instance_uid for ref, _ in report.failed] == ["1.2.3.4.5.6.7"]
    # Orthanc records the report it took.
    status = orthanc.get_json(job["Path"])
    assert status["Status"] == "Failure", status
    assert len(status["Success"]) == len(study)
