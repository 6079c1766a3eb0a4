"""Pushing from a Dask cluster (``fastpush.cluster.driver``): a LocalCluster of 2 worker processes
pushing into real peers, a worker killed mid-push, ``--resume`` and Ctrl-C of a cluster push
from the CLI, and a scan of folders that hold files that are not DICOM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from distributed import Client, LocalCluster
from pydicom import dcmread

from fastpush import Failure, Outcome, Result
from fastpush.cluster.driver import DistributedPush, batches, iter_push, push
from fastpush.cluster.worker import CANCELLED
from fastpush.dataset.scan import expand
from fastpush.synthetic import write_study

from support.peers import (
    Orthanc,
    PynetdicomSCPFactory,
    StoreSCPFactory,
    dataset_bytes,
    dataset_offset,
    run_cli,
)

pytestmark = pytest.mark.interop

STUDIES, PER_STUDY = 10, 50  # 500 files, a folder each study


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as local:
        yield local


@pytest.fixture
def client(cluster: LocalCluster) -> Iterator[Client]:
    with Client(cluster) as connected:
        connected.wait_for_workers(2)
        yield connected


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """500 small files in 10 study folders, every SOP Instance UID its own."""
    root = tmp_path_factory.mktemp("archive")
    for number in range(STUDIES):
        write_study(root / f"study{number}", count=PER_STUDY, pixel_bytes=2048, seed=number + 1)
    return root


def _files(root: Path) -> list[str]:
    return sorted(str(p) for p in root.rglob("*") if p.is_file())


def _one_result_each(results: list[Result], paths: list[str]) -> None:
    counts = Counter(r.path for r in results)
    assert sorted(counts) == sorted(paths)
    assert set(counts.values()) == {1}


def test_batches_keep_a_folder_together_when_it_fits() -> None:
    files = [(f"/a/{n}", 10) for n in range(3)] + [(f"/b/{n}", 10) for n in range(4)]
    assert [[p for p, _ in b] for b in batches(files, 5, 1000)] == [
        ["/a/0", "/a/1", "/a/2"],
        ["/b/0", "/b/1", "/b/2", "/b/3"],
    ]
    # A folder larger than a batch is cut; bytes bound a batch as files do.
    assert [len(b) for b in batches(files, 2, 1000)] == [2, 2, 2, 1]
    assert [len(b) for b in batches(files, 100, 35)] == [3, 3, 1]


def test_500_files_into_forking_storescp_byte_exact(
    client: Client, storescp: StoreSCPFactory, archive: Path
) -> None:
    scp = storescp("--fork", "+B")
    streamed: list[int] = []
    pushing = iter_push(
        [archive], scp.host, scp.port, client=client, called_ae=scp.aet, associations_per_worker=2
    )
    on_event = pushing._on_event

    def counting(event: tuple[float, list[Any]]) -> None:
        streamed.append(len(event[1][2]))
        on_event(event)

    pushing._on_event = counting  # type: ignore[method-assign]
    with pushing:
        assert pushing.total_files == STUDIES * PER_STUDY
        results = list(pushing)
    paths = _files(archive)
    _one_result_each(results, paths)
    assert all(r.outcome is Outcome.STORED for r in results), [r.reason for r in results]
    stored = {f.name.split(".", 1)[1]: f for f in scp.stored_files()}
    assert len(stored) == len(paths)
    for result in results:
        assert result.sop_instance_uid is not None and result.path is not None
        assert dataset_bytes(stored[result.sop_instance_uid]) == dataset_bytes(result.path)
    # Results came back in small batches as they were stored: neither one message per file
    # nor everything with the end of each batch.
    assert streamed and sum(streamed) < len(paths) and len(streamed) < len(paths)
    assert max(streamed) <= 32


def test_500_files_into_orthanc_read_back(client: Client, orthanc: Orthanc, archive: Path) -> None:
    results = push(
        [archive],
        "127.0.0.1",
        orthanc.dicom_port,
        client=client,
        called_ae=orthanc.aet,
        associations_per_worker=2,
        max_associations=3,
    )
    paths = _files(archive)
    _one_result_each(results, paths)
    assert all(r.outcome is Outcome.STORED for r in results), [r.reason for r in results]
    instances = orthanc.instances()
    assert len(instances) == len(paths)
    by_uid = {r.sop_instance_uid: r.path for r in results}
    for instance in instances:
        stored = orthanc.instance_file(instance)
        source = by_uid.pop(str(dcmread(BytesIO(stored), stop_before_pixels=True).SOPInstanceUID))
        assert source is not None
        # Orthanc rewrites the file meta; the dataset must be the bytes that were sent.
        assert stored[dataset_offset(stored) :] == dataset_bytes(source)
    assert not by_uid


def test_a_scan_with_files_that_are_not_dicom(
    client: Client, storescp: StoreSCPFactory, tmp_path: Path
) -> None:
    root = tmp_path / "mixed"
    write_study(root / "ct" / "series1", count=6, pixel_bytes=1024)
    write_study(root / "mr", count=4, pixel_bytes=1024, seed=7)
    (root / "notes.txt").write_text("not an image")
    (root / "ct" / "empty.dcm").write_bytes(b"")
    (root / "mr" / "photo.jpg").write_bytes(b"\xff\xd8\xff\xe0" + bytes(300))
    (root / "ct" / "series1" / "dangling").symlink_to(root / "gone")
    scp = storescp("--fork")
    results = push([root], scp.host, scp.port, client=client, called_ae=scp.aet)
    everything = list(expand([root], recursive=True))  # what a local push would find
    _one_result_each(results, everything)
    outcomes = {Path(r.path or "").name: r for r in results}
    for name in ("notes.txt", "empty.dcm", "photo.jpg", "dangling"):
        assert outcomes[name].outcome is Outcome.SKIPPED and outcomes[name].reason, name
    assert sum(r.outcome is Outcome.STORED for r in results) == 10


def test_a_worker_killed_mid_push_loses_nothing(
    client: Client, pynetdicom_scp: PynetdicomSCPFactory, archive: Path
) -> None:
    def slow(index: int) -> int:
        time.sleep(0.01)  # keeps a batch in flight after its first results came back
        return 0x0000

    scp = pynetdicom_scp(statuses=slow)
    paths = _files(archive)[:300]
    results: list[Result] = []
    before: set[str] = set()  # the killed batch's files the driver had a result for
    with DistributedPush(
        paths, scp.host, scp.port, client=client, called_ae=scp.aet, batch_files=50
    ) as pushing:
        for result in pushing:
            results.append(result)
            if not before:
                before = _kill_a_worker_halfway_through_a_batch(client, pushing)
    assert before, "no worker was killed halfway through a batch"
    _one_result_each(results, paths)
    assert all(r.ok for r in results), [r.reason for r in results if not r.ok]
    received = Counter(scp.received_uids)
    assert set(received) == {r.sop_instance_uid for r in results}
    by_path = {r.path: r for r in results}
    # What the driver had was not sent again; what it had not heard of was, flagged as such.
    assert all(received[by_path[p].sop_instance_uid] == 1 for p in before)
    assert not any(by_path[p].maybe_duplicate for p in before)
    flagged = {r.sop_instance_uid for r in results if r.maybe_duplicate}
    assert {uid for uid, n in received.items() if n > 1} <= flagged
    assert flagged, "the killed batch was not rerun"
    client.wait_for_workers(2)


def _kill_a_worker_halfway_through_a_batch(client: Client, pushing: DistributedPush) -> set[str]:
    """SIGKILL the worker running a batch some of whose results have arrived; returns those
    files (nothing when no batch is halfway yet)."""
    for worker, keys in client.processing().items():
        for key in keys:
            batch = pushing._open.get(int(str(key).rsplit("-", 1)[1]))
            if batch is not None and 0 < len(batch.done) < len(batch.paths):
                pid = client.run(os.getpid, workers=[worker])[worker]
                os.kill(pid, signal.SIGKILL)
                return {batch.paths[number] for number in batch.done}
    return set()


def _report(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_resume_a_cluster_push_from_the_cli(
    cluster: LocalCluster, storescp: StoreSCPFactory, archive: Path, tmp_path: Path
) -> None:
    scp = storescp("--fork", "+B", "+uf")
    report = tmp_path / "report.jsonl"
    study = archive / "study0"
    first = run_cli(
        "store", scp.host, str(scp.port), str(study), "-aec", scp.aet,
        "--dask", cluster.scheduler_address, "--report", str(report),
    )  # fmt: skip
    assert first.returncode == 0, first.stderr
    lines = report.read_text().splitlines(keepends=True)
    report.write_text("".join(lines[:20]) + lines[20][:30])  # a run killed after 20 files
    for stored in scp.stored_files():  # ... that had stored only those 20
        uid = str(dcmread(stored, stop_before_pixels=True).SOPInstanceUID)
        if uid not in {json.loads(line)["sop_instance_uid"] for line in lines[:20]}:
            stored.unlink()
    again = run_cli(
        "store", scp.host, str(scp.port), str(study), "-aec", scp.aet,
        "--dask", cluster.scheduler_address, "--resume", str(report), "--associations", "2",
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert "already stored (resumed): 20" in again.stdout
    entries = _report(report)
    assert Counter(e["path"] for e in entries) == Counter(_files(study))
    uids = [str(dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in scp.stored_files()]
    assert sorted(uids) == sorted(e["sop_instance_uid"] for e in entries)  # none sent twice


def test_dask_local_and_ctrl_c_from_the_cli(
    pynetdicom_scp: PynetdicomSCPFactory, archive: Path, tmp_path: Path
) -> None:
    def slow(index: int) -> int:
        time.sleep(0.02)
        return 0x0000

    scp = pynetdicom_scp(statuses=slow)
    report = tmp_path / "report.jsonl"
    command = [
        sys.executable, "-m", "fastpush", "store", scp.host, str(scp.port), str(archive),
        "-r", "-aec", scp.aet, "--dask-local", "2", "--report", str(report),
    ]  # fmt: skip
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as cli:
        deadline = time.monotonic() + 60
        while len(scp.received) < 50 and time.monotonic() < deadline and cli.poll() is None:
            time.sleep(0.05)
        cli.send_signal(signal.SIGINT)
        out, err = cli.communicate(timeout=60)
    assert cli.returncode == 130, err.decode()
    assert "Interrupted" in err.decode()
    entries = _report(report)
    assert Counter(e["path"] for e in entries) == Counter(_files(archive))
    stored = [e for e in entries if e["outcome"] == "stored"]
    cancelled = [e for e in entries if e["outcome"] == "skipped"]
    assert len(stored) + len(cancelled) == len(entries) and cancelled
    assert all(e["reason"].startswith(CANCELLED) for e in cancelled)
    assert sorted(scp.received_uids) == sorted(e["sop_instance_uid"] for e in stored)
    assert b"Sent" in out


def test_options_a_cluster_push_does_not_take(client: Client) -> None:
    with pytest.raises(TypeError, match="associations_per_worker"):
        DistributedPush([], "127.0.0.1", 104, client=client, associations=2)
    done = run_cli("store", "127.0.0.1", "104", ".", "--max-associations", "2")
    assert done.returncode == 2
    assert "--max-associations needs --dask or --dask-local" in done.stderr


def test_a_batch_that_fails_for_good_still_gives_each_file_a_result(
    client: Client, archive: Path
) -> None:
    paths = _files(archive)[:40]
    # A retry count the workers' Push refuses: every batch raises there.
    results = push(paths, "127.0.0.1", 104, client=client, retries=-1, batch_files=16)
    _one_result_each(results, paths)
    for result in results:
        assert result.outcome is Outcome.FAILED and result.failure is Failure.TRANSFER
        assert result.reason.startswith("its batch failed on the cluster: ValueError(")
        assert result.maybe_duplicate
