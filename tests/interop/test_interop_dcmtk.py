"""Interop with DCMTK storescp: what it stores with --bit-preserving is exactly what we read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import fastpush
from fastpush import Outcome

from support.peers import StoreSCPFactory, dataset_bytes, run_cli

pytestmark = pytest.mark.interop
ENGINES = ["rust", "python"]


def _stored_by_uid(files: list[Path]) -> dict[str, Path]:
    # storescp +B names files "<modality>.<SOP Instance UID>"
    return {f.name.split(".", 1)[1]: f for f in files}


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("pdu_args", [(), ("-pdu", "4096")], ids=["default-pdu", "pdu-4096"])
def test_bit_preserving_round_trip(
    storescp: StoreSCPFactory, study: list[Path], engine: str, pdu_args: tuple[str, ...]
) -> None:
    scp = storescp("+B", *pdu_args)
    events: list[fastpush.Event] = []
    results = fastpush.push(
        study, scp.host, scp.port, called_ae=scp.aet, engine=engine, on_event=events.append
    )
    assert [r.outcome for r in results] == [Outcome.STORED] * len(study), [
        r.reason for r in results
    ]
    stored = _stored_by_uid(scp.stored_files())
    assert len(stored) == len(study)
    syntaxes = set()
    for result in results:
        assert result.sop_instance_uid is not None and result.path is not None
        assert dataset_bytes(stored[result.sop_instance_uid]) == dataset_bytes(result.path)
        syntaxes.add(result.transfer_syntax)
    assert syntaxes == {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1"}
    accepted = [e for e in events if e.kind is fastpush.EventKind.ACCEPTED]
    assert [e.details["peer_max_pdu"] for e in accepted] == [4096 if pdu_args else 16384]


@pytest.mark.parametrize("engine", ENGINES)
def test_echo(storescp: StoreSCPFactory, engine: str) -> None:
    scp = storescp()
    assert fastpush.echo(scp.host, scp.port, called_ae=scp.aet, engine=engine) == 0


@pytest.mark.parametrize("engine", ENGINES)
def test_cli_reports_every_path_once(
    storescp: StoreSCPFactory, study_dir: Path, tmp_path: Path, engine: str
) -> None:
    scp = storescp("+B")
    junk = study_dir / "README.txt"
    junk.write_text("not DICOM")
    report = tmp_path / "report.jsonl"
    proc = run_cli(
        "store",
        scp.host,
        str(scp.port),
        str(study_dir),
        "-aec",
        scp.aet,
        "-r",
        "--engine",
        engine,
        "--report",
        str(report),
        "-v",
    )
    assert proc.returncode == 1, proc.stderr  # the junk file was skipped
    lines = [json.loads(line) for line in report.read_text().splitlines()]
    inputs = sorted(str(p) for p in study_dir.iterdir())
    assert sorted(line["path"] for line in lines) == inputs
    by_path = {line["path"]: line for line in lines}
    assert by_path[str(junk)]["outcome"] == "skipped"
    assert "not a DICOM" in by_path[str(junk)]["reason"]
    assert sum(line["outcome"] == "stored" for line in lines) == len(inputs) - 1
    for key in (
        "sop_class_uid",
        "sop_instance_uid",
        "transfer_syntax",
        "status",
        "bytes",
        "seconds",
    ):
        assert key in lines[0]
    assert "Requesting Association" in proc.stderr
    assert "Association Accepted (Max Send PDV:" in proc.stderr
    assert "Received Store Response (0x0000 Success)" in proc.stderr
    assert "Releasing Association" in proc.stderr
    assert "Sent 12 objects" in proc.stdout
    assert len(scp.stored_files()) == len(inputs) - 1


def test_cli_connection_refused_exits_2(study: list[Path]) -> None:
    from support.peers import free_port

    proc = run_cli("store", "127.0.0.1", str(free_port()), str(study[0]))
    assert proc.returncode == 2
    assert "Connection refused" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("mode", ["--abort-after", "--abort-during"])
def test_aborting_peer_costs_each_file_its_own_result(
    storescp: StoreSCPFactory, study: list[Path], engine: str, mode: str
) -> None:
    # storescp aborts every association in the middle of its first C-STORE: each file fails
    # with the reason, and each next file goes over a fresh association.
    scp = storescp(mode)
    results = fastpush.push(
        study[:4], scp.host, scp.port, called_ae=scp.aet, engine=engine, retries=0
    )
    assert [r.outcome for r in results] == [Outcome.FAILED] * 4
    assert [r.association for r in results] == [1, 2, 3, 4]
    for result in results:
        assert result.reason == "association aborted by the peer (A-ABORT from service-user)"
