"""Malformed negotiation (issue 15, findings 6 and 9): what no association can come of is
rejected with PS3.8's reason before anything is stored; a command set that lies about its
length, and a response that cannot be sent, end in an A-ABORT with a reason; a file whose
success the sender never heard is not kept."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from fastpush.receive.server import StorageServer
from fastpush.uids import EXPLICIT_VR_LE, IMPLEMENTATION_CLASS_UID, VERIFICATION
from fastpush.wire import dimse, pdu

from support.fakesender import CT, FakeSender, dataset


@pytest.fixture
def server(tmp_path: Path) -> Iterator[StorageServer]:
    with StorageServer("127.0.0.1", 0, directory=tmp_path / "out", timeout=10) as running:
        yield running


def _request(
    contexts: tuple[tuple[int, str], ...] = ((1, CT), (3, VERIFICATION)),
    max_length: int = 16384,
    version: int = 1,
) -> bytes:
    rq = pdu.AssociateRQ(
        "ANY-SCP",
        "FAKE",
        tuple(pdu.ContextProposal(cid, uid, (EXPLICIT_VR_LE,)) for cid, uid in contexts),
        max_length,
        IMPLEMENTATION_CLASS_UID,
    )
    encoded = bytearray(pdu.encode_associate_rq(rq))
    struct.pack_into(">H", encoded, 6, version)  # the first field after the PDU header
    return bytes(encoded)


# (result, source, reason) of PS3.8 table 9-21.
PROTOCOL_VERSION = bytes([0, 1, 2, 2])
MALFORMED = bytes([0, 1, 2, 1])


@pytest.mark.parametrize(
    ("request_", "answer"),
    [
        (_request(version=2), PROTOCOL_VERSION),
        (_request(version=0), PROTOCOL_VERSION),
        (_request(contexts=()), MALFORMED),
        (_request(contexts=((2, CT),)), MALFORMED),
        (_request(contexts=((0, CT),)), MALFORMED),
        (_request(contexts=((1, CT), (4, VERIFICATION))), MALFORMED),
        (_request(contexts=((1, CT), (1, VERIFICATION))), MALFORMED),
        (_request(max_length=1), MALFORMED),
        (_request(max_length=7), MALFORMED),
        (_request(max_length=4095), MALFORMED),
    ],
    ids=[
        "version-2",
        "version-0",
        "no-contexts",
        "even-id",
        "id-0",
        "one-even-id",
        "duplicate-id",
        "max-length-1",
        "max-length-7",
        "max-length-4095",
    ],
)
def test_malformed_request_rejected(
    server: StorageServer, tmp_path: Path, request_: bytes, answer: bytes
) -> None:
    with FakeSender(server.port) as sender:
        sender.send(request_)
        assert sender.recv_pdu() == (pdu.ASSOCIATE_RJ, answer)
    assert not list((tmp_path / "out").iterdir())


@pytest.mark.parametrize(
    "request_",
    [_request(version=3), _request(max_length=0), _request(max_length=4096)],
    ids=["version-bits-1-and-2", "unlimited", "max-length-4096"],
)
def test_edge_requests_accepted(server: StorageServer, request_: bytes) -> None:
    """Only bit 0 of the version is tested (PS3.8 9.3.2); 0 is "no limit"."""
    with FakeSender(server.port) as sender:
        sender.send(request_)
        answer = sender.recv_pdu()
        assert answer is not None and answer[0] == pdu.ASSOCIATE_AC


def test_wrong_command_group_length_aborted(server: StorageServer, tmp_path: Path) -> None:
    with FakeSender(server.port) as sender:
        sender.associate()
        command = bytearray(dimse.store_rq(1, CT, "1.2.3"))
        struct.pack_into("<I", command, 8, len(command))  # 12 more than follow it
        body = struct.pack(">IBB", len(command) + 2, 1, 0x03) + bytes(command)
        sender.send(struct.pack(">BxI", pdu.P_DATA_TF, len(body)) + body)
        assert sender.recv_pdu() == (pdu.ABORT, bytes([0, 0, 2, 6]))
    assert not list((tmp_path / "out").iterdir())


def test_unsent_success_is_not_kept(
    server: StorageServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A response that cannot be built ends in an A-ABORT with a reason (not a dropped
    connection), and the file written for it is taken back and counted failed."""

    def broken(*args: object, **kwargs: object) -> bytes:
        raise ValueError("cannot be built")

    monkeypatch.setattr(dimse, "response", broken)
    with FakeSender(server.port) as sender:
        sender.associate()
        sender.send(sender.store_bytes("1.2.3", dataset("1.2.3")))
        assert sender.recv_pdu() == (pdu.ABORT, bytes([0, 0, 2, 6]))
    server.shutdown()
    assert not list((tmp_path / "out").iterdir())
    assert (server.stats.files, server.stats.failed) == (0, 1)
