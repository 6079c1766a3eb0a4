"""What success means to a sender of the router (issue 17): ``durability="fsync"`` answers once
the file's data and its queue names are on disk, the queue folders' fsyncs shared by the
associations storing at once (group commit); ``"os"`` fsyncs nothing. Several storescu senders at
once, each acknowledged file queued and byte-exact; the shared fsyncs cover every caller; and
``fastpush route --durability`` killed with SIGKILL under concurrent senders loses nothing it
acknowledged."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydicom.uid import ExplicitVRLittleEndian

from fastpush import Destination, Router
from fastpush.receive import storage
from fastpush.route import durability
from fastpush.route.durability import FolderSync
from fastpush.send.retry import RetryPolicy
from fastpush.synthetic import write_study

from support.peers import dataset_bytes, free_port, start_storescp
from support.routing import (
    RouteProcess,
    acknowledged,
    arrived,
    assert_byte_exact,
    start_route,
    storescu,
    uid_of,
)

SENDERS = 4


@pytest.fixture
def folder_fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Every folder fsync the router makes (the real one runs too)."""
    calls: list[Path] = []
    lock = threading.Lock()
    real = storage.fsync_folder

    def counting(folder: Path) -> None:
        with lock:
            calls.append(folder)
        real(folder)

    held = durability.FolderSync._fsync  # the queue folders, fsync'd through a held descriptor

    def counting_held(self: durability.FolderSync, folder: Path, state: Any, reopen: bool) -> None:
        with lock:
            calls.append(folder)
        held(self, folder, state, reopen)

    monkeypatch.setattr(durability, "fsync_folder", counting)
    monkeypatch.setattr(storage, "fsync_folder", counting)
    monkeypatch.setattr(durability.FolderSync, "_fsync", counting_held)
    return calls


def _senders_at_once(port: int, groups: list[list[Path]], tmp_path: Path) -> set[Path]:
    procs = [
        storescu(port, group, tmp_path / f"storescu-{n}.log") for n, group in enumerate(groups)
    ]
    acked: set[Path] = set()
    for n, proc in enumerate(procs):
        proc.wait(timeout=120)
        acked.update(acknowledged(tmp_path / f"storescu-{n}.log"))
    return acked


@pytest.mark.interop
@pytest.mark.parametrize("mode", ["fsync", "os"])
def test_concurrent_senders_every_acknowledged_file_is_queued_byte_exact(
    tmp_path: Path, folder_fsyncs: list[Path], mode: str
) -> None:
    files = write_study(
        tmp_path / "src", count=80, pixel_bytes=4096, transfer_syntaxes=[ExplicitVRLittleEndian]
    )
    spool = tmp_path / "spool"
    nowhere = Destination("127.0.0.1", free_port(), name="down")  # the files stay queued
    retry = RetryPolicy(retries=0, backoff=30, max_backoff=30)
    with Router(0, [nowhere], spool=spool, host="127.0.0.1", retry=retry, durability=mode) as r:
        acked = _senders_at_once(r.port, [files[n::SENDERS] for n in range(SENDERS)], tmp_path)
        assert acked == set(files)
        queued = sorted(p for p in (spool / "queue" / "down").iterdir())
        assert len(queued) == len(files)
        by_uid = {uid_of(p): p for p in queued}
        for source in files:
            assert dataset_bytes(by_uid[uid_of(source)]) == dataset_bytes(source)
        assert not [p for p in (spool / "incoming").rglob("*") if p.is_file()]
        assert r.stats().spooled_files == len(files)
    queue_syncs = [f for f in folder_fsyncs if f == spool / "queue" / "down"]
    if mode == "os":
        assert folder_fsyncs == []
    else:
        # One per file at most: shared when associations stored at once; nothing else fsync'd
        # per file (the incoming name never is).
        assert 0 < len(queue_syncs) <= len(files)
        assert spool / "incoming" not in folder_fsyncs


def test_a_shared_fsync_covers_only_links_made_before_it_started(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The first caller's fsync is held while seven more link and ask: none of them returns on
    it (it started before their links); one more fsync, run by one of them, covers all seven."""
    started: list[int] = []  # links made when each fsync started
    linked = [0]
    lock = threading.Lock()
    release = threading.Event()

    def fake_fsync(folder: Path) -> None:
        with lock:
            started.append(linked[0])
            first = len(started) == 1
        if first:
            release.wait(30)

    monkeypatch.setattr(FolderSync, "_fsync", lambda self, folder, *_: fake_fsync(folder))
    sync = FolderSync()
    returned: list[tuple[int, int]] = []  # (link number, fsyncs started when it returned)

    def caller() -> None:
        with lock:
            linked[0] += 1
            mine = linked[0]
        sync.sync(tmp_path)
        with lock:
            returned.append((mine, len(started)))

    first = threading.Thread(target=caller)
    first.start()
    others = [threading.Thread(target=caller) for _ in range(7)]
    deadline = time.monotonic() + 30
    while not started and time.monotonic() < deadline:
        release.wait(0.01)  # the first fsync is under way
    for thread in others:
        thread.start()
    while sync._folders[tmp_path].asked < 8 and time.monotonic() < deadline:
        release.wait(0.01)
    release.set()
    for thread in [first, *others]:
        thread.join(30)
    assert started == [1, 8]
    assert len(returned) == 8
    assert all(count == 2 for mine, count in returned if mine > 1)


@pytest.fixture
def stopped_at_end() -> Iterator[list[RouteProcess]]:
    started: list[RouteProcess] = []
    yield started
    for process in started:
        process.stop()


@pytest.mark.interop
@pytest.mark.timeout(300)
@pytest.mark.parametrize("mode", ["fsync", "os"])
def test_sigkill_under_concurrent_senders_loses_nothing_acknowledged(
    tmp_path: Path, stopped_at_end: list[RouteProcess], mode: str
) -> None:
    """Three storescu at once into ``fastpush route --durability MODE``, killed twice mid-way
    and restarted on the same spool: every file acknowledged reaches storescp byte-exact (a
    process crash: the page cache survives it, so ``os`` holds too)."""
    files = write_study(
        tmp_path / "src", count=300, pixel_bytes=2048, transfer_syntaxes=[ExplicitVRLittleEndian]
    )
    port, destination = free_port(), free_port()
    spool = tmp_path / "spool"
    scp = start_storescp(tmp_path / "storescp", "+B", "+uf", port=destination)
    args = ("--to", "127.0.0.1", str(destination), "-aec", "STORESCP", "--spool", str(spool))
    args += ("--max-backoff", "0.3", "--durability", mode)
    acked: set[Path] = set()
    try:
        for kill in range(3):
            remaining = [f for f in files if f not in acked]
            router = start_route(port, *args, log=tmp_path / "route.log")
            stopped_at_end.append(router)
            groups = [remaining[n::3] for n in range(3)]
            senders = [
                storescu(port, group, tmp_path / f"storescu-{kill}-{n}.log")
                for n, group in enumerate(groups)
            ]
            if kill < 2:
                time.sleep(0.4 + 0.4 * kill)
                router.proc.send_signal(signal.SIGKILL)
                router.proc.wait()
            for n, sender in enumerate(senders):
                sender.wait(timeout=120)
                acked.update(acknowledged(tmp_path / f"storescu-{kill}-{n}.log"))
        assert acked == set(files)
        deadline = time.monotonic() + 120
        while [p for p in (spool / "queue").rglob("*") if p.is_file()]:
            assert time.monotonic() < deadline, router.text()
            time.sleep(0.1)
        router.proc.send_signal(signal.SIGINT)
        assert router.proc.wait(timeout=30) == 0, router.text()
        assert_byte_exact(files, arrived(scp.outdir))
    finally:
        scp.stop()


def test_a_folder_made_anew_is_opened_again_before_its_next_fsync(tmp_path: Path) -> None:
    """The folders stay open between fsyncs; after ``reopen`` (a failed enqueue: one may have
    been removed and made again) the next fsync is of the folder that is there now."""
    folder = tmp_path / "queue"
    folder.mkdir()
    sync = FolderSync()
    sync.sync(folder)
    (state,) = sync._folders.values()
    first = state.fd
    assert os.fstat(first).st_ino == folder.stat().st_ino
    sync.sync(folder)
    assert state.fd == first  # no open and close per file
    folder.rmdir()
    folder.mkdir()
    sync.reopen()
    sync.sync(folder)
    assert os.fstat(state.fd).st_ino == folder.stat().st_ino
    sync.close()
    assert state.fd == -1
