"""The spool keeps spent files to be written over by the next ones received (issue 17): only
the last link of a file, within its bounds (count, bytes, largest file, free disk), never when
the disk is short, and none left behind by a stop or a crash."""

from __future__ import annotations

from pathlib import Path

import pytest

from fastpush.route import spool as spool_module
from fastpush.route.spool import FREE_LARGEST, Spool
from fastpush.send.failure import Failure
from fastpush.send.results import Outcome, Result


def _spent(spool: Spool) -> list[Path]:
    return sorted(spool.incoming.glob(".free-*"))


def test_the_last_link_is_kept_and_given_to_the_next_file(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    spool.free_floor = 0
    path = spool.incoming / "CT.1.2.3"
    path.write_bytes(b"x" * 1000)
    first, second = spool.enqueue(path, "1.2", ["a", "b"])
    spool.done(first)
    assert _spent(spool) == []  # "b" still has it
    spool.done(second)
    (spent,) = _spent(spool)
    assert spool.recycle() == spent  # no longer kept: the next file is written over it
    assert spool.recycle() is None  # none left
    assert _spent(spool) == [spent]  # until it is queued under its new names
    spool.close()


def test_bounds_a_small_disk_and_stop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spool = Spool(tmp_path / "spool")
    spool.free_floor = 0
    path = spool.incoming / "big"
    path.write_bytes(b"x" * (FREE_LARGEST + 1))
    (entry,) = spool.enqueue(path, "1.2", ["a"])
    spool.done(entry)
    assert _spent(spool) == []  # larger than any kept
    monkeypatch.setattr(spool_module, "FREE_FILES", 2)
    for n in range(3):
        path = spool.incoming / f"f{n}"
        path.write_bytes(b"x" * 10)
        (entry,) = spool.enqueue(path, "1.2", ["a"])
        spool.done(entry)
    assert len(_spent(spool)) == 2
    spool.drop_free()  # the disk got short
    assert _spent(spool) == []
    spool.free_floor = 1 << 62  # more than any disk has free: nothing is kept
    path = spool.incoming / "g"
    path.write_bytes(b"x")
    (entry,) = spool.enqueue(path, "1.2", ["a"])
    spool.done(entry)
    assert _spent(spool) == []
    spool.free_floor = 0
    path = spool.incoming / "h"
    path.write_bytes(b"x")
    (entry,) = spool.enqueue(path, "1.2", ["a"])
    spool.done(entry)
    assert len(_spent(spool)) == 1
    spool.close()  # a stop leaves none
    assert _spent(spool) == []


def test_recovery_removes_what_a_crash_left(tmp_path: Path) -> None:
    root = tmp_path / "spool"
    spool = Spool(root)
    (root / "incoming" / ".free-3").write_bytes(b"spent")
    spool.close()
    again = Spool(root)
    assert again.recover([]) == []
    assert list((root / "incoming").iterdir()) == []
    again.close()


def test_a_file_also_in_failed_is_never_written_over(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    spool.free_floor = 0
    path = spool.incoming / "CT.1.2.3"
    path.write_bytes(b"the refused instance")
    refused, stored = spool.enqueue(path, "1.2", ["deid", "plain"])
    kept = spool.fail(refused, _refusal())
    spool.done(stored)  # the queues' last link, not the file's last name
    assert _spent(spool) == []
    assert spool.recycle() is None
    assert kept.read_bytes() == b"the refused instance"
    spool.close()


def _refusal() -> Result:
    result = Result("1.2.3", Outcome.FAILED, sop_instance_uid="1.2.3")
    return result.fail(Failure.SOURCE, "burned-in annotation")


def test_a_file_received_into_a_spent_one_survives_a_crash_once_queued(tmp_path: Path) -> None:
    """A crash between linking a file received into ``.free-<n>`` into its queue and removing
    that name: recovery removes the name, the queued file stays and is sent."""
    root = tmp_path / "spool"
    spool = Spool(root)
    spool.free_floor = 0
    path = spool.incoming / "CT.1.2.3"
    path.write_bytes(b"x" * 100)
    (entry,) = spool.enqueue(path, "1.2", ["a"])
    spool.done(entry)
    spent = spool.recycle()
    assert spent is not None
    spent.write_bytes(b"received anew")
    queued = spool.queue("a") / "000000000002_1.2_CT.1.2.4"
    queued.hardlink_to(spent)  # linked into the queue; then the crash, before the unlink
    spool.close()  # the pool is empty: nothing else goes
    again = Spool(root)
    (waiting,) = again.recover(["a"])
    assert waiting.path == queued and queued.read_bytes() == b"received anew"
    assert list((root / "incoming").iterdir()) == []
    again.close()
