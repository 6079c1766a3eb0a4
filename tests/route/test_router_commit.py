"""The router's confirmed delivery (issue 20): a destination with ``commit`` keeps each file in
the spool until it commits to it. Against fastpush's own SCP (commits), pynetdicom SCPs that
never report (resent as maybe-duplicates, then failed/) or fail some instances (only those
resent), and ``fastpush route --config`` SIGKILLed while commitments are pending (every file
ends committed after the restart)."""

from __future__ import annotations

import json
import signal
import threading
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE, AllStoragePresentationContexts, build_role, evt
from pynetdicom.sop_class import StorageCommitmentPushModel  # type: ignore[attr-defined]

from fastpush import Destination, Router
from fastpush.receive.commit import Commitment
from fastpush.receive.server import StorageServer
from fastpush.route.config import ConfigError, parse
from fastpush.route.metrics import Metrics
from fastpush.route.ops import RouterOps
from fastpush.send.push import push
from fastpush.send.retry import RetryPolicy
from fastpush.synthetic import write_study
from fastpush.wire.commitment import NO_SUCH_INSTANCE, WELL_KNOWN_INSTANCE, Reference

from support.ops import parse_metrics
from support.peers import Orthanc, free_port
from support.routing import RouteProcess, journal, start_route

pytestmark = pytest.mark.interop

RETRY = RetryPolicy(retries=1, backoff=0.05, max_backoff=0.2)


@pytest.fixture
def files(tmp_path: Path) -> list[Path]:
    return write_study(
        tmp_path / "src", count=12, pixel_bytes=2048, transfer_syntaxes=[ExplicitVRLittleEndian]
    )


def _uids(files: Sequence[Path]) -> list[str]:
    return [str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in files]


def _route(started: list[Router], spool: Path, port: int, **options: Any) -> Router:
    destination = Destination("127.0.0.1", port, "DEST", name="dest", commit=True)
    router = Router(0, [destination], spool=spool, host="127.0.0.1", retry=RETRY, **options)
    started.append(router.start())
    return router


def _send(router: Router, files: Sequence[Path]) -> None:
    results = push(files, router.host, router.port)
    assert all(r.ok for r in results), [r.reason for r in results]


def _steps(spool: Path, step: str) -> list[dict[str, Any]]:
    return [e for e in journal(spool) if e["step"] == step]


def _spool_empty(spool: Path) -> bool:
    queued = [p for p in (spool / "queue").rglob("*") if p.is_file()]
    pending = [p for p in (spool / "commit").rglob("*") if p.is_file()]
    return not queued and not pending


def test_config_keys() -> None:
    destinations = '[destinations.pacs]\nhost = "pacs"\nport = 104\ncommit = true\n'
    config = parse("[forward]\ncommit_timeout = 5\ncommit_port = 11113\n\n" + destinations)
    assert config.destinations[0].commit is True
    assert (config.forward.commit_timeout, config.forward.commit_port) == (5, 11113)
    with pytest.raises(ConfigError, match=r":4: destinations.pacs.commit: "):
        parse(destinations.replace("commit = true", 'commit = "yes"'))
    with pytest.raises(ConfigError, match=r"forward.commit_port"):
        parse("[forward]\ncommit_port = 0\n\n" + destinations)


def test_committed_files_leave_the_spool(
    tmp_path: Path, files: list[Path], routers: list[Router]
) -> None:
    asked: list[int] = []

    def on_commit(refs: Sequence[Reference], calling_ae: str) -> dict[str, int]:
        asked.append(len(refs))
        return {}

    commitment = Commitment(on_commit=on_commit)
    with StorageServer("127.0.0.1", 0, directory=tmp_path / "dest", commitment=commitment) as dest:
        spool = tmp_path / "spool"
        router = _route(routers, spool, dest.port)
        _send(router, files)
        assert router.wait_idle(60)
        scraped = parse_metrics(Metrics(RouterOps(router)).render())
        # Its idle association would hold the destination's shutdown until released.
        router.stop()
    dest_label = (("destination", "dest"),)
    assert scraped[("fastpush_committed_files_total", dest_label)] == len(files)
    assert scraped[("fastpush_commit_pending_files", dest_label)] == 0
    uids = _uids(files)
    assert sorted(e["sop_instance_uid"] for e in _steps(spool, "committed")) == sorted(uids)
    assert len(_steps(spool, "forwarded")) == len(files)
    assert sum(asked) == len(files) and len(asked) < len(files), "requests not batched"
    assert not _steps(spool, "retrying")
    assert _spool_empty(spool)


def test_orthanc_reports_on_its_own_association(
    orthanc: Orthanc, tmp_path: Path, files: list[Path], routers: list[Router]
) -> None:
    """Orthanc answers the N-ACTION, then reports on an association it opens to the router's
    listener (declared in its modalities under the router's calling AE title)."""
    listener = free_port()
    entry = {"AET": "ROUTER", "Host": "127.0.0.1", "Port": listener}
    orthanc.request("PUT", "/modalities/router", body=json.dumps(entry).encode())
    spool = tmp_path / "spool"
    destination = Destination(
        orthanc.host, orthanc.dicom_port, orthanc.aet, name="orthanc", commit=True
    )
    router = Router(
        0,
        [destination],
        spool=spool,
        host="127.0.0.1",
        retry=RETRY,
        calling_ae="ROUTER",
        commit_port=listener,
        commit_timeout=30,
    )
    routers.append(router.start())
    _send(router, files)
    assert router.wait_idle(60)
    uids = _uids(files)
    assert sorted(e["sop_instance_uid"] for e in _steps(spool, "committed")) == sorted(uids)
    assert not _steps(spool, "retrying")
    assert orthanc.sop_instance_uids() == set(uids)
    assert _spool_empty(spool)


def _pynetdicom_scp(report: Any) -> tuple[AE, Any, int, list[str]]:
    """A storage SCP that stores nothing and answers N-ACTION by calling ``report(request)``
    from a thread of its own; the UIDs it received, in order."""
    ae = AE(ae_title="DEST")
    for context in AllStoragePresentationContexts:
        ae.add_supported_context(context.abstract_syntax)
    ae.add_supported_context(StorageCommitmentPushModel)
    ae.add_requested_context(StorageCommitmentPushModel)
    stored: list[str] = []

    def on_store(event: Any) -> int:
        stored.append(str(event.request.AffectedSOPInstanceUID))
        return 0

    def on_action(event: Any) -> tuple[int, None]:
        threading.Thread(target=report, args=(event.action_information,), daemon=True).start()
        return 0, None

    port = free_port()
    server = ae.start_server(
        ("127.0.0.1", port),
        block=False,
        evt_handlers=[(evt.EVT_C_STORE, on_store), (evt.EVT_N_ACTION, on_action)],
    )
    return ae, server, port, stored


def test_never_reported_resent_then_failed(
    tmp_path: Path, files: list[Path], routers: list[Router]
) -> None:
    _, server, port, stored = _pynetdicom_scp(lambda request: None)
    spool = tmp_path / "spool"
    try:
        router = _route(routers, spool, port, commit_timeout=0.5)
        _send(router, files)
        assert router.wait_idle(60)
    finally:
        server.shutdown()
    uids = _uids(files)
    # Sent, not committed, sent again (maybe a duplicate), not committed: failed/.
    assert Counter(stored) == dict.fromkeys(uids, 2)
    retried = _steps(spool, "retrying")
    assert sorted(e["sop_instance_uid"] for e in retried) == sorted(uids)
    assert all(e["maybe_duplicate"] and "no N-EVENT-REPORT" in e["reason"] for e in retried)
    failed = _steps(spool, "failed")
    assert sorted(e["sop_instance_uid"] for e in failed) == sorted(uids)
    assert len([p for p in (spool / "failed" / "dest").iterdir() if p.suffix != ".jsonl"]) == len(
        files
    )
    assert not _steps(spool, "committed")
    assert _spool_empty(spool)


def test_failed_instances_only_resent(
    tmp_path: Path, files: list[Path], routers: list[Router]
) -> None:
    uids = _uids(files)
    refused = set(uids[::4])
    listener = free_port()
    reported: list[int] = []
    ae_holder: list[AE] = []

    def report(request: Any) -> None:
        ae = ae_holder[0]
        ds = pydicom.Dataset()
        ds.TransactionUID = request.TransactionUID
        first = not reported
        committed, failed = [], []
        for item in request.ReferencedSOPSequence:
            if first and item.ReferencedSOPInstanceUID in refused:
                item.FailureReason = NO_SUCH_INSTANCE
                failed.append(item)
            else:
                committed.append(item)
        ds.ReferencedSOPSequence = committed
        if failed:
            ds.FailedSOPSequence = failed
        assoc = ae.associate(
            "127.0.0.1",
            listener,
            ae_title="ROUTER",
            ext_neg=[build_role(StorageCommitmentPushModel, scp_role=True)],
        )
        assert assoc.is_established
        status, _ = assoc.send_n_event_report(
            ds, 2 if failed else 1, StorageCommitmentPushModel, WELL_KNOWN_INSTANCE
        )
        assoc.release()
        reported.append(status.Status)

    ae, server, port, stored = _pynetdicom_scp(report)
    ae_holder.append(ae)
    spool = tmp_path / "spool"
    try:
        # One batch: the first report fails the refused ones, the next commits them.
        router = _route(routers, spool, port, commit_port=listener, calling_ae="ROUTER")
        _send(router, files)
        assert router.wait_idle(60)
    finally:
        server.shutdown()
    assert reported and set(reported) == {0}
    assert Counter(stored) == {uid: 2 if uid in refused else 1 for uid in uids}
    retried = _steps(spool, "retrying")
    assert sorted(e["sop_instance_uid"] for e in retried) == sorted(refused)
    assert all(e["maybe_duplicate"] and "0x0112" in e["reason"] for e in retried)
    assert sorted(e["sop_instance_uid"] for e in _steps(spool, "committed")) == sorted(uids)
    assert not _steps(spool, "failed")
    assert _spool_empty(spool)


@pytest.mark.timeout(180)
def test_sigkill_with_commitments_pending_loses_nothing(tmp_path: Path, files: list[Path]) -> None:
    """The destination stores but holds its reports; the router is SIGKILLed with every file
    awaiting commitment; after the restart (the destination now reporting) each file ends
    committed and the spool empty."""
    hold = threading.Event()
    asked = threading.Event()

    def on_commit(refs: Sequence[Reference], calling_ae: str) -> dict[str, int]:
        asked.set()
        hold.wait(60)
        return {}

    commitment = Commitment(on_commit=on_commit)
    port = free_port()
    spool = tmp_path / "spool"
    config = tmp_path / "route.toml"
    with StorageServer("127.0.0.1", 0, directory=tmp_path / "dest", commitment=commitment) as dest:
        config.write_text(
            "[forward]\nretries = 1\nmax_backoff = 0.2\n\n[destinations.dest]\n"
            f'host = "127.0.0.1"\nport = {dest.port}\ncalled_ae = "DEST"\ncommit = true\n'
        )
        args = ("--config", str(config), "--spool", str(spool), "-v")
        router = start_route(port, *args, log=tmp_path / "route.log")
        try:
            results = push(files, "127.0.0.1", port)
            assert all(r.ok for r in results)
            assert asked.wait(60), router.text()
            pending = list((spool / "commit" / "dest").glob("*.json"))
            assert pending, "no transaction on disk while its report is awaited"
            router.proc.send_signal(signal.SIGKILL)
            router.proc.wait()
        finally:
            hold.set()
        restarted: RouteProcess = start_route(port, *args, log=tmp_path / "route.log")
        try:
            uids = _uids(files)
            deadline = time.monotonic() + 60
            committed: set[str] = set()
            while time.monotonic() < deadline and not committed >= set(uids):
                time.sleep(0.1)  # the router is another process: its journal is read
                committed = {e["sop_instance_uid"] for e in _steps(spool, "committed")}
            restarted.proc.send_signal(signal.SIGINT)
            assert restarted.proc.wait(timeout=30) == 0, restarted.text()
        finally:
            restarted.stop()
    assert committed == set(uids), restarted.text()
    assert "awaiting commitment from an earlier run" in restarted.text()
    stored = {
        str(pydicom.dcmread(p).SOPInstanceUID)
        for p in (tmp_path / "dest").rglob("*")
        if p.is_file()
    }
    assert stored >= set(uids)
    assert _spool_empty(spool)
