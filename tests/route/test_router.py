"""``fastpush.Router`` in-process, between real peers: DCMTK storescu sending, storescp,
pynetdicom and fastpush's own server receiving. Byte-exact arrival, order per study, a
destination down for the first half, refused SOP classes, two destinations with one failing,
back-pressure, filters, and the spool left empty."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.uid import (
    CTImageStorage,
    ExplicitVRLittleEndian,
    MRImageStorage,
    SecondaryCaptureImageStorage,
)

import fastpush
from fastpush import Destination, Outcome, Received, Router, Step
from fastpush.receive.storage import prefix
from fastpush.send.retry import RetryPolicy
from fastpush.synthetic import write_study

from support.peers import PynetdicomSCPFactory, StoreSCPFactory, free_port
from support.routing import arrived, assert_byte_exact, journal, send_all, uid_of

pytestmark = pytest.mark.interop

FAST_RETRY = RetryPolicy(retries=1, backoff=0.05, max_backoff=0.3)


@pytest.fixture
def files(tmp_path: Path) -> list[Path]:
    """60 small files, three studies (CT, MR, SC), Explicit VR LE (storescu sends them as
    they are)."""
    return write_study(
        tmp_path / "src", count=60, pixel_bytes=4096, transfer_syntaxes=[ExplicitVRLittleEndian]
    )


def _route(
    started: list[Router], spool: Path, *destinations: Destination, **options: Any
) -> Router:
    r = Router(0, list(destinations), spool=spool, host="127.0.0.1", retry=FAST_RETRY, **options)
    started.append(r.start())
    return r


def class_of(path: Path) -> str:
    return str(pydicom.dcmread(path, stop_before_pixels=True).SOPClassUID)


def _queued(spool: Path) -> list[Path]:
    return [p for p in (spool / "queue").rglob("*") if p.is_file()]


def test_storescu_through_router_to_storescp_byte_exact(
    storescp: StoreSCPFactory, routers: list[Router], files: list[Path], tmp_path: Path
) -> None:
    scp = storescp("+B", "+uf")
    spool = tmp_path / "spool"
    r = _route(routers, spool, Destination("127.0.0.1", scp.port, "STORESCP"), associations=3)
    send_all(r.port, files, tmp_path / "storescu.log")
    assert r.wait_idle(60)
    found = arrived(scp.outdir)
    assert len(found) == len(files)
    assert all(len(copies) == 1 for copies in found.values())
    assert_byte_exact(files, found)
    stats = r.stats()
    assert (stats.received, stats.spooled_files, stats.spooled_bytes) == (len(files), 0, 0)
    (dest,) = stats.destinations.values()
    assert (dest.forwarded, dest.failed, dest.waiting) == (len(files), 0, 0)
    assert _queued(spool) == []
    steps = [e["step"] for e in journal(spool)]
    assert steps.count("received") == steps.count("forwarded") == len(files)


def test_destination_down_for_the_first_half_gets_everything_in_order_per_study(
    routers: list[Router], files: list[Path], tmp_path: Path
) -> None:
    port = free_port()
    r = _route(routers, tmp_path / "spool", Destination("127.0.0.1", port), associations=2)
    half = len(files) // 2
    send_all(r.port, files[:half], tmp_path / "first.log")
    assert r.stats().spooled_files == half  # acknowledged while the destination is down
    order: list[str] = []
    lock = threading.Lock()

    def record(received: Received) -> None:
        with lock:
            order.append(received.sop_instance_uid)

    with fastpush.StorageServer(
        "127.0.0.1", port, directory=tmp_path / "dest", on_store=record, unique_filenames=True
    ):
        send_all(r.port, files[half:], tmp_path / "second.log")
        assert r.wait_idle(60)
        r.stop()  # releases its associations: the server's shutdown waits for them
    assert sorted(order) == sorted(uid_of(f) for f in files)
    assert_byte_exact(files, arrived(tmp_path / "dest"))
    # write_study cycles CT, MR, SC: each study's files in the order storescu sent them.
    for study in range(3):
        sent = [uid_of(f) for f in files[study::3]]
        assert [u for u in order if u in sent] == sent


def test_refusals_go_to_the_failed_folder_and_the_rest_goes_on(
    pynetdicom_scp: PynetdicomSCPFactory, routers: list[Router], files: list[Path], tmp_path: Path
) -> None:
    # SC is refused at negotiation; the 5th store (a CT or MR) is answered 0xC123.
    scp = pynetdicom_scp(
        sop_classes=[CTImageStorage, MRImageStorage],
        statuses=lambda n: 0xC123 if n == 4 else 0x0000,
    )
    spool = tmp_path / "spool"
    destination = Destination("127.0.0.1", scp.port, scp.aet, name="PACS")
    r = _route(routers, spool, destination)
    send_all(r.port, files, tmp_path / "storescu.log")
    assert r.wait_idle(60)
    sc = {uid_of(f) for f in files[2::3]}
    refused_status = scp.received[4].sop_instance_uid
    lines = [json.loads(x) for x in (spool / "failed/PACS/failed.jsonl").read_text().splitlines()]
    assert {x["sop_instance_uid"] for x in lines} == sc | {refused_status}
    by_uid = {x["sop_instance_uid"]: x for x in lines}
    assert by_uid[refused_status]["status"] == 0xC123
    assert by_uid[refused_status]["failure"] == "status"
    assert all(by_uid[u]["failure"] == "refused" for u in sc)
    for line in lines:
        assert Path(line["path"]).parent == spool / "failed/PACS"
        assert uid_of(Path(line["path"])) == line["sop_instance_uid"]
        assert line["sop_class_uid"] and line["reason"] and line["time"]
    stored = {s.sop_instance_uid for s in scp.received if s.status == 0}
    assert stored == {uid_of(f) for f in files} - sc - {refused_status}
    assert r.stats().destinations["PACS"].failed == len(lines)
    assert r.stats().spooled_files == 0


def test_two_destinations_one_down_the_other_gets_everything(
    storescp: StoreSCPFactory, routers: list[Router], files: list[Path], tmp_path: Path
) -> None:
    scp = storescp("+B", "+uf")
    down = free_port()
    spool = tmp_path / "spool"
    good = Destination("127.0.0.1", scp.port, "STORESCP", name="good")
    late = Destination("127.0.0.1", down, name="late")
    forwarded = threading.Semaphore(0)

    def count(event: fastpush.RouteEvent) -> None:
        if event.step is Step.FORWARDED and event.destination == "good":
            forwarded.release()

    r = _route(routers, spool, good, late, on_event=count)
    send_all(r.port, files, tmp_path / "storescu.log")
    assert all(forwarded.acquire(timeout=30) for _ in files)  # "good" does not wait for "late"
    assert_byte_exact(files, arrived(scp.outdir))
    stats = r.stats()
    assert stats.destinations["good"].forwarded == len(files)
    assert stats.destinations["late"].waiting == len(files)
    assert stats.destinations["late"].retrying
    assert stats.spooled_files == len(files)  # still held for "late"
    # "late" was never reached: between its attempts no entry is marked as being sent, so a
    # crash now would send none of them again as a maybe-duplicate.
    deadline = time.monotonic() + 10
    while list((spool / "queue").rglob("*.sending")):
        assert time.monotonic() < deadline, "an entry for the destination down stays marked"
        time.sleep(0.01)
    # Queued under the name storage gives each file, no name of theirs left in incoming/.
    names = {p.name.split("_", 2)[2].removesuffix(".sending") for p in _queued(spool)}
    assert names == {f"{prefix(class_of(f))}.{uid_of(f)}" for f in files}
    assert [p for p in (spool / "incoming").iterdir() if not p.name.startswith(".free-")] == []
    with fastpush.StorageServer("127.0.0.1", down, directory=tmp_path / "late"):
        assert r.wait_idle(60)
        r.stop()
    assert_byte_exact(files, arrived(tmp_path / "late"))
    assert _queued(spool) == []


def test_spool_over_its_limit_answers_out_of_resources_before_receiving(
    routers: list[Router], tmp_path: Path
) -> None:
    big = write_study(tmp_path / "src", count=8, pixel_bytes=64 << 10)
    port = free_port()
    spool = tmp_path / "spool"
    r = _route(routers, spool, Destination("127.0.0.1", port), max_spool=150_000)
    results = fastpush.push(big, "127.0.0.1", r.port, retries=0)
    # ~66 kB each, the destination down: three take the spool past 150 kB, then refusals.
    assert [res.outcome for res in results] == [Outcome.STORED] * 3 + [Outcome.FAILED] * 5
    assert all(res.status == 0xA700 for res in results[3:])
    assert (r.stats().refused, r.stats().spooled_files) == (5, 3)
    assert [e["step"] for e in journal(spool)].count("refused") == 5
    assert not [p for p in (spool / "incoming").rglob("*") if p.is_file()]
    with fastpush.StorageServer("127.0.0.1", port, directory=tmp_path / "dest"):
        assert r.wait_idle(60)
        # One at a time: five at once would race the forwarding against the spool's limit.
        for path in big[3:]:
            (again,) = fastpush.push([path], "127.0.0.1", r.port, retries=0)
            assert again.outcome is Outcome.STORED, again.reason
            assert r.wait_idle(60)
        r.stop()
    assert len(arrived(tmp_path / "dest")) == len(big)


def test_on_receive_picks_destinations_or_drops(
    routers: list[Router], files: list[Path], tmp_path: Path
) -> None:
    ports = {"ct": free_port(), "rest": free_port()}
    events: list[fastpush.RouteEvent] = []

    def pick(received: Received) -> list[str] | None:
        if received.sop_class_uid == SecondaryCaptureImageStorage:
            return None
        return ["ct"] if received.sop_class_uid == CTImageStorage else ["rest"]

    spool = tmp_path / "spool"
    r = _route(
        routers,
        spool,
        *(Destination("127.0.0.1", p, name=n) for n, p in ports.items()),
        on_receive=pick,
        on_event=events.append,
    )
    with (
        fastpush.StorageServer("127.0.0.1", ports["ct"], directory=tmp_path / "ct"),
        fastpush.StorageServer("127.0.0.1", ports["rest"], directory=tmp_path / "rest"),
    ):
        send_all(r.port, files, tmp_path / "storescu.log")
        assert r.wait_idle(60)
        r.stop()
    assert set(arrived(tmp_path / "ct")) == {uid_of(f) for f in files[0::3]}
    assert set(arrived(tmp_path / "rest")) == {uid_of(f) for f in files[1::3]}
    dropped = {e.sop_instance_uid for e in events if e.step is Step.DROPPED}
    assert dropped == {uid_of(f) for f in files[2::3]}
    assert r.stats().dropped == len(dropped)
    # Nothing stays behind in incoming/, not even a folder per study (a run of months).
    assert list((spool / "incoming").iterdir()) == []


def test_a_second_router_on_the_same_spool_is_refused(
    routers: list[Router], tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    _route(routers, spool, Destination("127.0.0.1", free_port()))
    with pytest.raises(fastpush.SpoolBusy):
        Router(0, [Destination("127.0.0.1", free_port())], spool=spool)


def test_spent_files_are_written_over_and_every_copy_is_exact(
    routers: list[Router], storescp: StoreSCPFactory, tmp_path: Path
) -> None:
    # Large files, then smaller ones, then large again, one at a time: each is received into
    # the file the last one was sent from, cut or grown to its own length.
    sizes = [64 << 10, 16 << 10, 48 << 10, 2 << 10, 64 << 10]
    files = [
        path
        for n, size in enumerate(sizes)
        for path in write_study(tmp_path / f"src{n}", count=2, pixel_bytes=size, seed=n)
    ]
    scp = storescp("+B", "+uf")
    inodes: list[int] = []

    def record(event: fastpush.RouteEvent) -> None:
        if event.step is Step.RECEIVED and event.path is not None:
            inodes.append(os.stat(event.path).st_ino)

    r = _route(
        routers,
        tmp_path / "spool",
        Destination("127.0.0.1", scp.port, scp.aet),
        on_event=record,
    )
    for path in files:
        (result,) = fastpush.push([path], "127.0.0.1", r.port)
        assert result.ok, result.reason
        assert r.wait_idle(60)
    r.stop()
    assert len(set(inodes)) < len(files), "no spent file was written over"
    assert_byte_exact(files, arrived(scp.outdir))
    assert [p.name for p in (tmp_path / "spool" / "incoming").iterdir()] == []
