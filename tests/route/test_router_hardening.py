"""The router against a hostile world (issue 15): it never wedges on its own spool, and a
wire-derived name never takes a file out of it.

A journal line the disk refuses after a forward, a queue link removed behind the router's back,
a refusal whose file cannot be moved, a disk that fills up mid-run and empties again (a real
tmpfs): every acknowledged file still reaches every destination once, ``failed.jsonl`` holds only
real refusals, and no restart is needed. Recovery removes leftovers wherever they are; queue
entry names survive any study folder name storage makes; a dataset whose Study Instance UID is
``..`` (or ``.``, ``/``, NUL...) stays inside the spool and is forwarded."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import threading
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.uid import ExplicitVRLittleEndian

import fastpush
from fastpush import Destination, Outcome, Received, Router, Step
from fastpush.route.journal import Journal, RouteEvent
from fastpush.route.spool import Spool
from fastpush.send.failure import Failure
from fastpush.send.results import Result
from fastpush.send.retry import RetryPolicy
from fastpush.synthetic import write_study

from support.peers import free_port
from support.routing import arrived, assert_byte_exact, journal, uid_of

FAST_RETRY = RetryPolicy(retries=0, backoff=0.05, max_backoff=0.2)


def _route(
    started: list[Router], spool: Path, *destinations: Destination, **options: Any
) -> Router:
    r = Router(0, list(destinations), spool=spool, host="127.0.0.1", retry=FAST_RETRY, **options)
    started.append(r.start())
    return r


def _files(folder: Path, count: int, seed: int) -> list[Path]:
    return write_study(
        folder, count=count, pixel_bytes=4096, transfer_syntaxes=[ExplicitVRLittleEndian], seed=seed
    )


def _stored(results: list[fastpush.Result]) -> list[Path]:
    return [Path(r.path) for r in results if r.outcome is Outcome.STORED]


def _failed_lines(spool: Path) -> list[str]:
    return [x for f in (spool / "failed").rglob("failed.jsonl") for x in f.read_text().split()]


def _queued(spool: Path) -> list[Path]:
    return [p for p in (spool / "queue").rglob("*") if p.is_file()]


class _Destination:
    """A fastpush StorageServer as a destination, counting what it stores."""

    def __init__(self, folder: Path, port: int | None = None) -> None:
        self.folder = folder
        self.port = port or free_port()
        self.uids: list[str] = []
        self._cond = threading.Condition()
        self.server: fastpush.StorageServer | None = None

    def start(self) -> _Destination:
        self.server = fastpush.StorageServer(
            "127.0.0.1",
            self.port,
            directory=self.folder,
            on_store=self._stored,
            unique_filenames=True,
        )
        self.server.__enter__()  # serves in a background thread
        return self

    def _stored(self, received: Received) -> None:
        with self._cond:
            self.uids.append(received.sop_instance_uid)
            self._cond.notify_all()

    def wait_for(self, count: int, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: len(self.uids) >= count, timeout)

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown(abort=True, timeout=5)


@pytest.fixture
def destinations(tmp_path: Path) -> Iterator[Callable[[str], _Destination]]:
    made: list[_Destination] = []

    def make(name: str) -> _Destination:
        made.append(_Destination(tmp_path / name))
        return made[-1]

    yield make
    for d in made:
        d.stop()


# -- the journal -----------------------------------------------------------------------------


def test_a_journal_write_that_fails_after_a_forward_neither_wedges_nor_resends(
    routers: list[Router],
    destinations: Callable[[str], _Destination],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    write = Journal.write
    refused: list[RouteEvent] = []

    def full_once(self: Journal, event: RouteEvent) -> None:
        if event.step is Step.FORWARDED and not refused:
            refused.append(event)
            raise OSError(errno.ENOSPC, "No space left on device")
        write(self, event)

    monkeypatch.setattr(Journal, "write", full_once)
    dest = destinations("dest").start()
    spool = tmp_path / "spool"
    r = _route(routers, spool, Destination("127.0.0.1", dest.port), associations=1)
    files = _files(tmp_path / "src", 6, seed=1)
    assert _stored(fastpush.push(files, "127.0.0.1", r.port, retries=0)) == files
    assert r.wait_idle(10), r.stats()
    assert refused, "no journal write was refused"
    assert sorted(dest.uids) == sorted(uid_of(f) for f in files)  # each once
    stats = r.stats().destinations
    (forwarded,) = stats.values()
    assert (forwarded.forwarded, forwarded.failed, forwarded.waiting) == (6, 0, 0)
    assert _failed_lines(spool) == []
    assert _queued(spool) == []


def test_the_journal_keeps_the_lines_the_disk_refuses_and_writes_them_in_order_later(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "journal.jsonl"
    j = Journal(path)
    real_write = os.write
    full = True

    def disk(fd: int, data: bytes) -> int:
        if not full:
            return real_write(fd, data)
        if len(data) > 10:  # half of a line goes in, then the disk is full
            return real_write(fd, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("fastpush.route.journal.os.write", disk)
    j.write(RouteEvent(Step.FORWARDED, "1.1", "a"))
    j.write(RouteEvent(Step.FORWARDED, "1.2", "a"))
    assert (j.pending, j.failures) == (2, 2)
    assert path.read_bytes() == b""  # no half line left behind
    full = False
    j.write(RouteEvent(Step.FORWARDED, "1.3", "a"))
    assert j.pending == 0
    j.close()
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert [x["sop_instance_uid"] for x in lines] == ["1.1", "1.2", "1.3"]


# -- the queue -------------------------------------------------------------------------------


def test_a_queue_link_removed_by_hand_is_dropped_not_retried_forever(
    routers: list[Router], destinations: Callable[[str], _Destination], tmp_path: Path
) -> None:
    dest = destinations("dest")  # down while the files queue up
    spool = tmp_path / "spool"
    r = _route(routers, spool, Destination("127.0.0.1", dest.port, name="dest"), associations=1)
    files = _files(tmp_path / "src", 3, seed=2)
    assert _stored(fastpush.push(files, "127.0.0.1", r.port, retries=0)) == files
    queued = sorted(_queued(spool))
    assert len(queued) == 3
    queued[1].unlink()
    dest.start()
    assert r.wait_idle(10), r.stats()
    assert dest.wait_for(2, 5)
    assert len(dest.uids) == 2
    stats = r.stats().destinations["dest"]
    assert (stats.forwarded, stats.vanished, stats.failed) == (2, 1, 0)
    assert r.stats().spooled_files == 0
    assert _failed_lines(spool) == []


def _refusal(entry_uid: str) -> Result:
    result = Result(entry_uid, Outcome.FAILED, sop_instance_uid=entry_uid)
    return result.fail(Failure.STATUS, "0xC123", status=0xC123)


def test_a_refusal_whose_file_cannot_be_moved_leaves_no_line(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    (spool.incoming / "1.2").mkdir()
    received = spool.incoming / "1.2" / "CT.1.2.3"
    received.write_bytes(b"data")
    (entry,) = spool.enqueue(received, "1.2", ["dest"])
    entry.path.unlink()  # gone before the move
    with pytest.raises(FileNotFoundError):
        spool.fail(entry, _refusal("1.2.3"))
    assert _failed_lines(tmp_path / "spool") == []
    spool.close()


@pytest.mark.parametrize("core", [True, False])
def test_a_queue_name_taken_by_another_file_never_loses_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, core: bool
) -> None:
    from fastpush.route import spool as spool_module

    if not core:  # an install without the Rust core: a link and an unlink
        monkeypatch.setattr(spool_module, "_rename_new", lambda: None)
    spool = Spool(tmp_path / "spool")
    received = spool.incoming / "CT.1.2.3"
    received.write_bytes(b"received")
    (first,) = spool.enqueue(received, "1.2", ["a"])
    # The name the next file's first entry gets, taken behind the spool's back.
    taken = first.path.with_name(first.path.name.replace("000000000001_", "000000000002_"))
    taken.write_bytes(b"another file")
    received.write_bytes(b"received again")
    with pytest.raises(FileExistsError):
        spool.enqueue(received, "1.2", ["a", "b"])
    assert taken.read_bytes() == b"another file"
    assert not received.exists()  # refused, as any file the spool could not queue
    assert sorted(p.name for p in (spool.queues / "a").iterdir()) == sorted(
        [first.path.name, taken.name]
    )
    assert not (spool.queues / "b").exists() or not any((spool.queues / "b").iterdir())
    spool.close()


def test_entry_names_survive_any_study_folder_name(tmp_path: Path) -> None:
    studies = ["1.2.840.1", "unknown-study", "_", "a_b-c", "%5F_", "x" * 64, ""]
    spool = Spool(tmp_path / "spool")
    made = []
    for n, study in enumerate(studies):
        folder = spool.incoming / (study or "flat")
        folder.mkdir(exist_ok=True)
        received = folder / f"CT.1_2-{n}"
        received.write_bytes(b"x" * n)
        made += spool.enqueue(received, study, ["dest"])
    spool.close()
    again = Spool(tmp_path / "spool")
    found = again.recover(["dest"])
    assert [(e.seq, e.study, e.name, e.size) for e in found] == [
        (e.seq, e.study, e.name, e.size) for e in made
    ]
    assert [e.path for e in found] == [e.path for e in made]
    assert [e.entry_name for e in found] == [e.path.name for e in made]
    again.close()


# -- recovery --------------------------------------------------------------------------------


def test_recovery_removes_leftovers_anywhere_and_keeps_the_queue_failed_and_journal(
    tmp_path: Path,
) -> None:
    root = tmp_path / "spool"
    spool = Spool(root)
    (spool.incoming / "1.2").mkdir()
    queued = spool.incoming / "1.2" / "CT.1.2.3"
    queued.write_bytes(b"queued")
    (entry,) = spool.enqueue(queued, "1.2", ["dest"])
    spool.close()
    failed = root / "failed" / "dest"
    failed.mkdir(parents=True)
    (failed / "000000000001_1.2_CT.1.2.9").write_bytes(b"refused")
    (failed / "failed.jsonl").write_text("{}\n")
    (root / "journal.jsonl").write_text("{}\n")
    leftovers = [
        root / "CT.1.2.4",  # a ".." study UID put files here
        root / ".7-99.part",
        root / "incoming" / ".1-99.part",
        root / "incoming" / "CT.1.2.5",  # a "." study UID
        root / "incoming" / "1.3" / "CT.1.3.1",
        root / "incoming" / "1.3" / "deeper" / "CT.1.3.2",
        root / "queue" / "dest" / ".2-99.part",
    ]
    for path in leftovers:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"leftover")
    os.link(entry.path, root / "CT.1.2.3")  # a queued file's stray name

    again = Spool(root)
    (found,) = again.recover(["dest"])
    again.close()
    assert found.path == entry.path and entry.path.read_bytes() == b"queued"
    assert not [p for p in leftovers if p.exists()]
    assert not (root / "CT.1.2.3").exists()
    assert sorted(p.name for p in root.iterdir()) == [
        "failed",
        "incoming",
        "journal.jsonl",
        "lock",
        "queue",
    ]
    assert list((root / "incoming").iterdir()) == []
    assert sorted(p.name for p in failed.iterdir()) == [
        "000000000001_1.2_CT.1.2.9",
        "failed.jsonl",
    ]
    assert (root / "journal.jsonl").read_text() == "{}\n"


# -- a full disk -----------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs of its own, where the test may mount one (root, CAP_SYS_ADMIN)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mount = shutil.which("mount")
    if mount is None:
        pytest.skip("no mount command: cannot make a small disk to fill")
    done = subprocess.run(
        [mount, "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(disk)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs to fill: {done.stderr.strip()}")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=False)


def _fill(path: Path) -> int:
    """Write ``path`` until the disk is full; the bytes written."""
    chunk = b"\0" * (64 << 10)
    total = 0
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            try:
                total += os.write(fd, chunk)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
                break
    finally:
        os.close(fd)
    return total


@pytest.mark.timeout(60)
def test_a_full_disk_mid_run_wedges_no_destination(
    small_disk: Path,
    routers: list[Router],
    destinations: Callable[[str], _Destination],
    tmp_path: Path,
) -> None:
    spool = small_disk / "spool"
    a, b = destinations("a"), destinations("b")  # on another disk: they store while ours is full
    r = _route(
        routers,
        spool,
        Destination("127.0.0.1", a.port, name="a"),
        Destination("127.0.0.1", b.port, name="b"),
    )
    acked = _stored(fastpush.push(_files(tmp_path / "first", 30, seed=3), "127.0.0.1", r.port))
    assert len(acked) == 30
    filler = small_disk / "filler"
    assert _fill(filler) > 0
    during = _files(tmp_path / "during", 6, seed=4)
    acked += _stored(fastpush.push(during, "127.0.0.1", r.port, retries=0))
    # "a" stores everything while "b", down, holds every file on the full disk: each of a's
    # forwards is followed by a journal line the disk refuses.
    a.start()
    assert a.wait_for(len(acked), 15), r.stats()
    assert r.stats().journal_pending > 0, "the journal never met the full disk"
    b.start()
    assert b.wait_for(len(acked), 15), r.stats()
    assert r.wait_idle(15), r.stats()

    filler.unlink()  # space returns: no restart
    last = _files(tmp_path / "last", 6, seed=5)
    late = _stored(fastpush.push(last, "127.0.0.1", r.port, retries=0))
    assert late == last
    acked += late
    assert r.wait_idle(15), r.stats()
    stats = r.stats()
    assert (stats.journal_pending, stats.journal_lost) == (0, 0)
    r.stop()

    for dest in (a, b):
        assert sorted(dest.uids) == sorted(uid_of(f) for f in acked)  # each once
        assert_byte_exact(acked, arrived(dest.folder))
    assert _failed_lines(spool) == []
    assert _queued(spool) == []
    forwarded = [e for e in journal(spool) if e["step"] == "forwarded"]
    assert sorted((e["destination"], e["sop_instance_uid"]) for e in forwarded) == sorted(
        (d, uid_of(f)) for f in acked for d in ("a", "b")
    )


# -- names from the wire ---------------------------------------------------------------------


HOSTILE_STUDY_UIDS = ["..", ".", "...", "/", "1/../..", "1\x002", "01.2", "1." * 40 + "1"]


def _with_study_uid(source: Path, target: Path, study: str) -> Path:
    ds = pydicom.dcmread(source)
    with warnings.catch_warnings():  # pydicom warns of the invalid UID: that is the point
        warnings.simplefilter("ignore")
        ds.StudyInstanceUID = study
        ds.save_as(target)
    return target


def test_a_hostile_study_uid_stays_inside_the_spool_and_is_forwarded(
    routers: list[Router], destinations: Callable[[str], _Destination], tmp_path: Path
) -> None:
    sources = _files(tmp_path / "src", len(HOSTILE_STUDY_UIDS), seed=6)
    hostile = tmp_path / "hostile"
    hostile.mkdir()
    files = [
        _with_study_uid(s, hostile / f"{n}.dcm", uid)
        for n, (s, uid) in enumerate(zip(sources, HOSTILE_STUDY_UIDS, strict=True))
    ]
    dest = destinations("dest").start()
    box = tmp_path / "box"  # nothing may appear beside the spool
    spool = box / "spool"
    paths: list[Path] = []

    def record(received: Received) -> list[str]:
        assert received.path is not None
        paths.append(received.path)
        return ["dest"]

    r = _route(routers, spool, Destination("127.0.0.1", dest.port, name="dest"), on_receive=record)
    results = fastpush.push(files, "127.0.0.1", r.port, retries=0)
    assert [res.outcome for res in results] == [Outcome.STORED] * len(files), results
    assert r.wait_idle(10), r.stats()
    incoming = os.path.realpath(spool / "incoming")
    for path in paths:
        assert os.path.realpath(path).startswith(incoming + os.sep), path
    assert sorted(dest.uids) == sorted(uid_of(f) for f in files)
    r.stop()
    assert [p.name for p in box.iterdir()] == ["spool"]
    assert sorted(p.name for p in spool.iterdir()) == [
        "failed",
        "incoming",
        "journal.jsonl",
        "lock",
        "queue",
    ]
