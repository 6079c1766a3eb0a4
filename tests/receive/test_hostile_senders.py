"""StorageServer against senders that misbehave: each costs at most its own association (or
its own file), never leaves a partial file behind, and the server goes on serving others."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import fastpush
from fastpush import AssociationRejected
from fastpush.receive.received import Received
from fastpush.receive.server import StorageServer
from fastpush.wire import pdu

from support.fakesender import FakeSender, dataset

UID = "1.2.3.4"
DATASET = dataset(UID)  # 1 MiB: many PDUs at the sender's 16 KiB


@pytest.fixture
def out(tmp_path: Path) -> Path:
    return tmp_path / "out"


@pytest.fixture
def server(out: Path) -> Iterator[StorageServer]:
    with StorageServer("127.0.0.1", 0, directory=out, timeout=30) as running:
        yield running


def _files(folder: Path) -> list[str]:
    """Everything in the output folder, temporary names included."""
    return sorted(p.name for p in folder.rglob("*") if p.is_file())


def _still_serves(server: StorageServer) -> None:
    with FakeSender(server.port) as sender:
        sender.associate()
        assert sender.store("9.9.9", dataset("9.9.9")) == 0


def _aborted(sender: FakeSender) -> bool:
    """Whether the server answered with an A-ABORT (or just closed) and nothing else."""
    answer = sender.recv_pdu()
    return answer is None or answer[0] == pdu.ABORT


def test_good_store_then_release(server: StorageServer, out: Path) -> None:
    with FakeSender(server.port) as sender:
        sender.associate()
        assert sender.store(UID, DATASET) == 0
        sender.send(pdu.encode_release_rq())
        assert sender.recv_pdu() == (pdu.RELEASE_RP, bytes(4))
    assert _files(out) == [f"CT.{UID}"]
    assert (out / f"CT.{UID}").read_bytes().endswith(DATASET)


@pytest.mark.parametrize(
    "garbage",
    [
        b"GET / HTTP/1.1\r\n\r\n",
        bytes([0x09, 0, 0, 0, 0, 4, 1, 2, 3, 4]),  # unknown PDU type
        bytes([pdu.P_DATA_TF, 0, 0, 0, 0, 6]) + bytes(6),  # data before any association
    ],
    ids=["http", "unknown-type", "pdata-first"],
)
def test_garbage_before_association(server: StorageServer, garbage: bytes) -> None:
    with FakeSender(server.port) as sender:
        sender.send(garbage)
        assert _aborted(sender)
    _still_serves(server)


@pytest.mark.parametrize(
    "garbage",
    [
        bytes([0x09, 0, 0, 0, 0, 4, 1, 2, 3, 4]),  # unknown PDU type
        pdu.encode_associate_rq(pdu.AssociateRQ("A", "B", (), 0, "1.2")),  # a second request
        bytes([pdu.P_DATA_TF, 0, 0, 0, 0, 8, 0, 0, 0, 9, 1, 3, 0, 0]),  # PDV past its PDU
        bytes([pdu.P_DATA_TF, 0, 0, 0, 0, 8, 0, 0, 0, 4, 1, 3, 0, 0]),  # command set of 2 bytes
        bytes([pdu.P_DATA_TF, 0, 0, 0, 0, 8, 0, 0, 0, 4, 7, 3, 0, 0]),  # context never proposed
    ],
    ids=["unknown-type", "second-rq", "pdv-overrun", "bad-command", "unknown-context"],
)
def test_garbage_in_an_association(server: StorageServer, garbage: bytes) -> None:
    with FakeSender(server.port) as sender:
        sender.associate()
        sender.send(garbage)
        assert _aborted(sender)
    _still_serves(server)


def test_oversized_pdu_refused_from_its_header(server: StorageServer) -> None:
    """A header announcing 4 GB is refused at once: no allocation, no wait for the body (the
    server's 30 s timeout would outlast the sender's 20 s read timeout)."""
    with FakeSender(server.port) as sender:
        sender.associate()
        sender.send(bytes([pdu.P_DATA_TF, 0, 0xFF, 0xFF, 0xFF, 0xF0]))
        # From the service provider: invalid PDU parameter value (the length).
        assert sender.recv_pdu() == (pdu.ABORT, bytes([0, 0, 2, 6]))


def test_oversized_association_request_refused(server: StorageServer) -> None:
    with FakeSender(server.port) as sender:
        sender.send(bytes([pdu.ASSOCIATE_RQ, 0, 0x7F, 0xFF, 0xFF, 0xFF]))
        assert _aborted(sender)


@pytest.mark.parametrize("how", ["abort", "close", "reset"])
def test_sender_gone_mid_dataset_leaves_no_file(server: StorageServer, out: Path, how: str) -> None:
    with FakeSender(server.port) as sender:
        sender.associate()
        wire = sender.store_bytes(UID, DATASET)
        sender.send(wire[: len(wire) // 2])
        if how == "abort":
            sender.send(pdu.encode_abort())
        elif how == "reset":
            sender.reset()
    _still_serves(server)
    server.shutdown()  # waits for every association thread, the broken one included
    assert _files(out) == ["CT.9.9.9"]
    assert server.stats.files == 1


def test_stalled_sender_times_out_and_leaves_no_file(out: Path) -> None:
    with StorageServer("127.0.0.1", 0, directory=out, timeout=0.5) as server:
        with FakeSender(server.port) as sender:
            sender.associate()
            wire = sender.store_bytes(UID, DATASET)
            sender.send(wire[: len(wire) // 2])
            assert _aborted(sender)
        _still_serves(server)
    assert _files(out) == ["CT.9.9.9"]


def test_too_many_associations_rejected_others_unaffected(out: Path) -> None:
    with StorageServer("127.0.0.1", 0, directory=out, max_associations=1) as server:
        with FakeSender(server.port) as first:
            first.associate()
            with pytest.raises(AssociationRejected) as rejected:
                fastpush.echo(server.host, server.port)
            assert rejected.value.transient
            assert (rejected.value.source, rejected.value.reason) == (3, 2)
            assert first.store(UID, DATASET) == 0
            first.send(pdu.encode_release_rq())
            assert first.recv_pdu() == (pdu.RELEASE_RP, bytes(4))
        assert server.stats.rejected == 1
        # The slot is free once the first association is over.
        _still_serves(server)


def test_vanished_folder_answers_out_of_resources_and_goes_on(out: Path) -> None:
    with (
        StorageServer("127.0.0.1", 0, directory=out) as server,
        FakeSender(server.port) as sender,
    ):
        sender.associate()
        assert sender.store("1.1", dataset("1.1"), 1) == 0
        shutil.rmtree(out)
        assert sender.store("1.2", dataset("1.2"), 2) == 0xA700
        out.mkdir()
        assert sender.store("1.3", dataset("1.3"), 3) == 0
    assert _files(out) == ["CT.1.3"]
    assert (server.stats.files, server.stats.failed) == (2, 1)


def test_raising_handler_answers_failure_and_goes_on(
    out: Path, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[str] = []

    def handler(received: Received) -> int | None:
        calls.append(received.sop_instance_uid)
        if received.sop_instance_uid == "1.2":
            raise RuntimeError("the handler broke")
        return 0xB000 if received.sop_instance_uid == "1.3" else None

    with (
        StorageServer("127.0.0.1", 0, on_store=handler) as server,
        FakeSender(server.port) as sender,
    ):
        sender.associate()
        statuses = [
            sender.store(uid, dataset(uid), n) for n, uid in enumerate(["1.1", "1.2", "1.3"])
        ]
    assert statuses == [0, 0xC000, 0xB000]
    assert calls == ["1.1", "1.2", "1.3"]
    assert "the handler broke" in caplog.text


def test_shutdown_lets_a_running_association_finish(out: Path) -> None:
    server = StorageServer("127.0.0.1", 0, directory=out).__enter__()
    sender = FakeSender(server.port)
    sender.associate()
    stopper = threading.Thread(target=server.shutdown)
    stopper.start()
    # New associations are refused from now on, the running one goes on.
    assert sender.store(UID, DATASET) == 0
    sender.send(pdu.encode_release_rq())
    assert sender.recv_pdu() == (pdu.RELEASE_RP, bytes(4))
    sender.sock.close()
    stopper.join(timeout=30)
    assert not stopper.is_alive()
    with pytest.raises(OSError):
        FakeSender(server.port)
    assert _files(out) == [f"CT.{UID}"]
