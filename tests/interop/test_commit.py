"""Storage Commitment (issue 20): fastpush with itself (the report on the same association and on
a separate one), with pynetdicom as SCP and as SCU, and faults (no report, some failed)."""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pynetdicom import AE, evt
from pynetdicom.sop_class import StorageCommitmentPushModel  # type: ignore[attr-defined]

from fastpush.receive.commit import Commitment
from fastpush.receive.report_listener import ReportListener
from fastpush.receive.server import StorageServer
from fastpush.send.commit import CommitOptions, send_report
from fastpush.send.failure import Failure
from fastpush.send.push import push
from fastpush.wire.commitment import NO_SUCH_INSTANCE, Reference
from tests.support.peers import free_port, run_cli, wait_for_port

CT = "1.2.840.10008.5.1.4.1.1.2"


def test_same_association(tmp_path: Path, study_dir: Path, study: list[Path]) -> None:
    with StorageServer("127.0.0.1", 0, directory=tmp_path / "out", commitment=Commitment()) as scp:
        results = push([study_dir], scp.host, scp.port, commit=True)
    assert len(results) == len(study)
    assert all(r.ok and r.committed is True for r in results), [r.reason for r in results]
    assert all(r.to_json()["committed"] is True for r in results)


def test_not_asked_is_none(tmp_path: Path, study_dir: Path) -> None:
    with StorageServer("127.0.0.1", 0, directory=tmp_path / "out") as scp:
        results = push([study_dir], scp.host, scp.port)
    assert {r.committed for r in results} == {None}


def test_some_failed_only_those(tmp_path: Path, study_dir: Path, study: list[Path]) -> None:
    refused = pydicom.dcmread(study[0], stop_before_pixels=True).SOPInstanceUID

    def on_commit(refs: Sequence[Reference], calling_ae: str) -> dict[str, int]:
        assert calling_ae == "FASTPUSH"
        return {r.sop_instance_uid: NO_SUCH_INSTANCE for r in refs if r.sop_instance_uid == refused}

    commitment = Commitment(on_commit=on_commit)
    with StorageServer("127.0.0.1", 0, directory=tmp_path / "out", commitment=commitment) as scp:
        results = push([study_dir], scp.host, scp.port, commit=True)
    failed = [r for r in results if not r.ok]
    assert [r.sop_instance_uid for r in failed] == [refused]
    assert failed[0].failure is Failure.COMMITMENT and failed[0].committed is False
    assert "0x0112" in failed[0].reason
    assert sum(r.committed is True for r in results) == len(study) - 1


def test_refused_context(tmp_path: Path, study_dir: Path, study: list[Path]) -> None:
    # A plain storage SCP does not accept the commitment context.
    with StorageServer("127.0.0.1", 0, directory=tmp_path / "out") as scp:
        # The server without commitment= refuses the context: every file is not committed.
        results = push([study_dir], scp.host, scp.port, commit=True)
    assert all(r.committed is False for r in results)
    assert "the peer does not support Storage Commitment" in results[0].reason


def test_separate_association_cli(tmp_path: Path, study_dir: Path, study: list[Path]) -> None:
    """serve answers on a new association to --commit-peer once store released the first."""
    import subprocess
    import sys

    port, listen = free_port(), free_port()
    serve = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fastpush",
            "serve",
            str(port),
            "-aet",
            "ARCHIVE",
            "-od",
            str(tmp_path / "out"),
            "-q",
            "--commit-peer",
            f"MODALITY=127.0.0.1:{listen}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, proc=serve)
        report = tmp_path / "report.jsonl"
        done = run_cli(
            "store",
            "-aet",
            "MODALITY",
            "-aec",
            "ARCHIVE",
            "127.0.0.1",
            str(port),
            str(study_dir),
            "--commit",
            "--commit-port",
            str(listen),
            "--commit-timeout",
            "20",
            "--report",
            str(report),
        )
    finally:
        serve.terminate()
        serve.wait(10)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = [json.loads(line) for line in report.read_text().splitlines()]
    assert len(lines) == len(study) and all(line["committed"] is True for line in lines)


def test_no_report_times_out_and_resume_sends_again(tmp_path: Path, study_dir: Path) -> None:
    """pynetdicom as an SCP that answers the N-ACTION and never reports: not committed, exit 1;
    --resume sends the files again."""
    ae = AE(ae_title="SILENT")
    ae.add_supported_context(StorageCommitmentPushModel)
    from pynetdicom import AllStoragePresentationContexts

    for context in AllStoragePresentationContexts:
        ae.add_supported_context(context.abstract_syntax)
    stored: list[str] = []

    def on_store(event: Any) -> int:
        stored.append(event.request.AffectedSOPInstanceUID)
        return 0

    handlers = [(evt.EVT_C_STORE, on_store), (evt.EVT_N_ACTION, lambda event: (0, None))]
    port = free_port()
    server = ae.start_server(("127.0.0.1", port), block=False, evt_handlers=handlers)
    try:
        report = tmp_path / "report.jsonl"
        args = [
            "store",
            "127.0.0.1",
            str(port),
            str(study_dir),
            "--commit",
            "--commit-timeout",
            "1",
        ]
        first = run_cli(*args, "--report", str(report))
        again = run_cli(*args, "--resume", str(report))
    finally:
        server.shutdown()
    assert first.returncode == 1, first.stdout + first.stderr
    lines = [json.loads(line) for line in report.read_text().splitlines()]
    assert {line["committed"] for line in lines} == {False}
    assert {line["reason"] for line in lines} == {"not committed: no N-EVENT-REPORT within 1 s"}
    assert again.returncode == 1
    assert len(stored) == 2 * 12


def test_pynetdicom_scp_reports_on_new_association(study_dir: Path, study: list[Path]) -> None:
    """pynetdicom as the SCP: it answers the N-ACTION, then reports from a thread of its own on
    a new association to our listener (the SCP role, negotiated)."""
    ae = AE(ae_title="PYSCP")
    ae.add_supported_context(StorageCommitmentPushModel)
    from pynetdicom import AllStoragePresentationContexts

    for context in AllStoragePresentationContexts:
        ae.add_supported_context(context.abstract_syntax)
    ae.add_requested_context(StorageCommitmentPushModel)
    listener_port = free_port()
    reported = threading.Event()

    def report(request: Any) -> None:
        from pynetdicom import build_role

        assoc = ae.associate(
            "127.0.0.1",
            listener_port,
            ae_title="FASTPUSH",
            ext_neg=[build_role(StorageCommitmentPushModel, scp_role=True)],
        )
        assert assoc.is_established
        ds = pydicom.Dataset()
        ds.TransactionUID = request.TransactionUID
        ds.ReferencedSOPSequence = request.ReferencedSOPSequence
        status, _ = assoc.send_n_event_report(
            ds, 1, StorageCommitmentPushModel, "1.2.840.10008.1.20.1.1"
        )
        assoc.release()
        if status.Status == 0:
            reported.set()

    def on_action(event: Any) -> tuple[int, None]:
        request = event.action_information
        threading.Thread(target=report, args=(request,), daemon=True).start()
        return 0, None

    port = free_port()
    server = ae.start_server(
        ("127.0.0.1", port),
        block=False,
        evt_handlers=[(evt.EVT_C_STORE, lambda event: 0), (evt.EVT_N_ACTION, on_action)],
    )
    try:
        with ReportListener("127.0.0.1", listener_port, ae_title="FASTPUSH") as listener:
            results = push(
                [study_dir],
                "127.0.0.1",
                port,
                called_ae="PYSCP",
                commit=CommitOptions(timeout=20, waiter=listener),
            )
    finally:
        server.shutdown()
    assert reported.is_set()
    assert all(r.committed is True for r in results), [r.reason for r in results]


def test_pynetdicom_scu_same_association(tmp_path: Path, study: list[Path]) -> None:
    """pynetdicom as the SCU: C-STOREs, the N-ACTION, and the N-EVENT-REPORT our server sends
    on the same association (its handler answers it); one instance it never sent fails."""
    ae = AE(ae_title="PYSCU")
    for path in study:
        ae.add_requested_context(pydicom.dcmread(path, stop_before_pixels=True).SOPClassUID)
    ae.add_requested_context(StorageCommitmentPushModel)
    reports: list[Any] = []
    arrived = threading.Event()

    def on_report(event: Any) -> tuple[int, None]:
        reports.append((event.event_type, event.event_information))
        arrived.set()
        return 0, None

    with StorageServer("127.0.0.1", 0, directory=tmp_path / "out", commitment=Commitment()) as scp:
        assoc = ae.associate(
            "127.0.0.1", scp.port, evt_handlers=[(evt.EVT_N_EVENT_REPORT, on_report)]
        )
        assert assoc.is_established
        request = pydicom.Dataset()
        request.TransactionUID = pydicom.uid.generate_uid()
        items = []
        for path in study:
            ds = pydicom.dcmread(path)
            assert assoc.send_c_store(ds).Status == 0
            item = pydicom.Dataset()
            item.ReferencedSOPClassUID = ds.SOPClassUID
            item.ReferencedSOPInstanceUID = ds.SOPInstanceUID
            items.append(item)
        missing = pydicom.Dataset()
        missing.ReferencedSOPClassUID = CT
        missing.ReferencedSOPInstanceUID = "1.2.3.4.5.6.7.8.9"
        request.ReferencedSOPSequence = [*items, missing]
        status, _ = assoc.send_n_action(
            request, 1, StorageCommitmentPushModel, "1.2.840.10008.1.20.1.1"
        )
        assert status.Status == 0
        assert arrived.wait(20)
        assoc.release()
    event_type, info = reports[0]
    assert event_type == 2
    assert info.TransactionUID == request.TransactionUID
    assert len(info.ReferencedSOPSequence) == len(study)
    assert [i.ReferencedSOPInstanceUID for i in info.FailedSOPSequence] == ["1.2.3.4.5.6.7.8.9"]
    assert info.FailedSOPSequence[0].FailureReason == NO_SUCH_INSTANCE


def test_report_sender_refused_without_role(tmp_path: Path) -> None:
    """A listener that is not awaiting the transaction refuses the report."""
    from fastpush.errors import FastpushError
    from fastpush.wire.commitment import Report

    with ReportListener("127.0.0.1", 0, ae_title="ME") as listener, pytest.raises(FastpushError):
        send_report("127.0.0.1", listener.port, Report("1.2.3"), calling_ae="SCP", called_ae="ME")
