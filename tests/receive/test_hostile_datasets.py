"""Datasets that are not what their C-STORE claims (issue 15, findings 7 to 9): a SOP Class or
Instance UID that differs from the command's, a class that does not fit its presentation
context, random bytes, an empty dataset. Each is answered with the standard's failure (0xA900,
0xC000), nothing is kept and nothing reaches ``on_store`` (so a router forwards nothing), whether
the server writes files, keeps bytes in memory or drops them. Also: a name the file system
cannot hold is a permanent 0xC000, never 0xA700; what a peer sends cannot forge a log line."""

from __future__ import annotations

import logging
import os
import random
import shutil
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from fastpush.receive.received import Received
from fastpush.receive.server import StorageServer

from support.fakesender import CT, FakeSender, dataset

MR = "1.2.840.10008.5.1.4.1.1.4"
DEFLATED = "1.2.840.10008.1.2.1.99"
IMPLICIT = "1.2.840.10008.1.2"
UID = "1.2.3"

# name: (command SOP class, command SOP instance, dataset, status)
CASES: dict[str, tuple[str, str, bytes, int]] = {
    "class-differs": (CT, UID, dataset(UID, sop_class_uid=MR), 0xA900),
    "instance-differs": (CT, UID, dataset("1.2.4"), 0xA900),
    "class-not-the-contexts": (MR, UID, dataset(UID, sop_class_uid=MR), 0xA900),
    "no-instance": (CT, UID, dataset("", pixels=0), 0xA900),
    "random": (CT, UID, random.Random(15).randbytes(1 << 16), 0xC000),
    "pattern": (CT, UID, bytes(range(256)) * 256, 0xC000),
    "empty": (CT, UID, b"", 0xC000),
    "no-uids": (CT, UID, struct.pack("<HH2sH", 0x20, 0x0D, b"UI", 6) + b"1.2.3\0", 0xC000),
    "truncated": (CT, UID, struct.pack("<HH2sH", 8, 0x16, b"UI", 200) + b"1.2", 0xC000),
}


class _Target:
    def __init__(self, kind: str, out: Path) -> None:
        self.kind = kind
        self.out = out
        self.handed: list[Received] = []

    def server(self, **options: object) -> StorageServer:
        directory = self.out if self.kind == "files" else None
        on_store = self.handed.append if self.kind == "memory" else None
        return StorageServer(
            "127.0.0.1",
            0,
            directory=directory,
            on_store=on_store,  # type: ignore[arg-type]
            timeout=10,
            **options,  # type: ignore[arg-type]
        )

    def kept(self) -> list[str]:
        files = sorted(p.name for p in self.out.rglob("*")) if self.out.exists() else []
        return files + [r.sop_instance_uid for r in self.handed]


@pytest.fixture(params=["files", "memory", "discard"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[_Target]:
    yield _Target(request.param, tmp_path / "out")


@pytest.mark.parametrize("case", sorted(CASES))
def test_not_what_the_command_claims(target: _Target, case: str) -> None:
    sop_class, uid, data, status = CASES[case]
    with target.server() as server:
        with FakeSender(server.port) as sender:
            sender.associate()
            assert sender.store(uid, data, sop_class_uid=sop_class) == status
            # The association goes on: the next, honest store is kept.
            assert sender.store("1.9", dataset("1.9"), 2) == 0
        server.shutdown()  # waits for the association to end: the counts are final
    assert (server.stats.files, server.stats.failed) == (1, 1)
    assert target.kept() == {"files": ["CT.1.9"], "memory": ["1.9"], "discard": []}[target.kind]


def test_no_dataset_check_keeps_the_lenient_behaviour(tmp_path: Path) -> None:
    with (
        StorageServer("127.0.0.1", 0, directory=tmp_path, dataset_check=False) as server,
        FakeSender(server.port) as sender,
    ):
        sender.associate()
        assert sender.store(UID, dataset("4.5.6", sop_class_uid=MR)) == 0
        assert sender.store("7.8", b"") == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["CT.1.2.3", "CT.7.8"]


def _deflated(data: bytes) -> bytes:
    z = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    out = z.compress(data) + z.flush()
    return out + b"\0" if len(out) % 2 else out


def _implicit(uid: str) -> bytes:
    out = b""
    for elem, value in ((0x16, CT), (0x18, uid)):
        raw = value.encode() + (b"\0" if len(value) % 2 else b"")
        out += struct.pack("<HHI", 8, elem, len(raw)) + raw
    return out


@pytest.mark.parametrize(
    ("syntax", "data", "status"),
    [
        (DEFLATED, _deflated(dataset(UID)), 0),
        (DEFLATED, _deflated(dataset("9.9")), 0xA900),
        (DEFLATED, b"\xff" * 64, 0xC000),
        (IMPLICIT, _implicit(UID), 0),
        (IMPLICIT, _implicit("9.9"), 0xA900),
    ],
    ids=["deflated", "deflated-differs", "deflated-garbage", "implicit", "implicit-differs"],
)
def test_other_syntaxes(tmp_path: Path, syntax: str, data: bytes, status: int) -> None:
    with (
        StorageServer("127.0.0.1", 0, directory=tmp_path) as server,
        FakeSender(server.port) as sender,
    ):
        sender.associate(syntax=syntax)
        assert sender.store(UID, data) == status
    assert [p.name for p in tmp_path.iterdir()] == (["CT.1.2.3"] if status == 0 else [])


def test_name_too_long_is_a_permanent_failure(tmp_path: Path) -> None:
    """A path the file system cannot hold (here: past PATH_MAX, the temporary name fitting and
    the final one not) is 0xC000, which senders do not retry, not 0xA700, which they do."""
    out = tmp_path
    while len(str(out)) < 4096 - 40 - 200:
        out /= "d" * 200
    out /= "e" * (4096 - 40 - len(str(out)) - 1)
    os.makedirs(out)
    uid = "1." + "2" * 62
    with (
        StorageServer("127.0.0.1", 0, directory=out) as server,
        FakeSender(server.port) as sender,
    ):
        sender.associate()
        sender.send(sender.store_bytes(uid, dataset(uid)))
        response = sender.response()
        assert response is not None and response.status == 0xC000
        assert response.error_comment
        # A UID whose name fits is stored in the same folder.
        assert sender.store("1.2", dataset("1.2"), 2) == 0
    assert [p.name for p in out.iterdir()] == ["CT.1.2"]


def test_peer_text_cannot_forge_log_lines(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="fastpush")
    forged = "1.2\nE: forged line"
    long = "1." + "3" * 10_000
    with StorageServer("127.0.0.1", 0, directory=tmp_path) as server:
        with FakeSender(server.port) as sender:
            sender.associate(calling_ae="A\nI: FORGED")
            sender.store(forged, dataset(forged))
            sender.store(long, dataset(long, pixels=0), 2)
            sender.store("1.4", dataset("1.5"), 3)
        server.shutdown()
    messages = [r.getMessage() for r in caplog.records]
    assert any("forged line" in m for m in messages)
    for message in messages:
        assert "\n" not in message, message
        assert len(message) < 2000, message[:200]


def test_disk_error_names_the_file(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    out = tmp_path / "out"
    with (
        StorageServer("127.0.0.1", 0, directory=out) as server,
        FakeSender(server.port) as sender,
    ):
        sender.associate()
        shutil.rmtree(out)
        assert sender.store(UID, dataset(UID)) == 0xA700
    (line,) = [r.getMessage() for r in caplog.records if "Cannot store" in r.getMessage()]
    assert str(out) in line, line
