"""``python -m fastpush route`` killed with SIGKILL at random points while DCMTK storescu pushes
500 files through it to storescp, restarted on the same spool each time: every file storescu
saw acknowledged reaches storescp byte-exact, and a file arrives twice only when the router's
journal says it might (sent when the router died, or sent twice by storescu). storescp starts
after the first kills, so that those find files waiting in the queue, not only in flight."""

from __future__ import annotations

import random
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom.uid import ExplicitVRLittleEndian

from fastpush.synthetic import write_study

from support.peers import StoreSCP, free_port, start_storescp
from support.routing import (
    RouteProcess,
    acknowledged,
    arrived,
    assert_byte_exact,
    journal,
    start_route,
    storescu,
    unexplained_duplicates,
)

pytestmark = pytest.mark.interop

KILLS = 4
DESTINATION_UP = 2  # storescp starts before this round


@pytest.fixture
def stopped_at_end() -> Iterator[list[StoreSCP | RouteProcess]]:
    started: list[StoreSCP | RouteProcess] = []
    yield started
    for process in started:
        process.stop()


def _queue_empty(spool: Path, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not [p for p in (spool / "queue").rglob("*") if p.is_file()]:
            return True
        time.sleep(0.1)
    return False


@pytest.mark.timeout(300)
def test_sigkill_at_random_points_loses_nothing_acknowledged(
    tmp_path: Path, stopped_at_end: list[StoreSCP | RouteProcess]
) -> None:
    seed = random.randrange(1 << 30)
    print(f"seed {seed}")  # shown when the test fails: the kill points can be replayed
    rng = random.Random(seed)
    files = write_study(
        tmp_path / "src", count=500, pixel_bytes=2048, transfer_syntaxes=[ExplicitVRLittleEndian]
    )
    port, destination = free_port(), free_port()
    spool = tmp_path / "spool"
    args = ("--to", "127.0.0.1", str(destination), "-aec", "STORESCP", "--spool", str(spool))
    args += ("--associations", "2", "--max-backoff", "0.3", "-v")
    acked: set[Path] = set()
    cut = 0  # rounds the kill interrupted while storescu was still sending
    scp: StoreSCP | None = None
    for kill in range(KILLS + 1):
        if kill == DESTINATION_UP:
            scp = start_storescp(tmp_path / "storescp", "+B", "+uf", port=destination)
            stopped_at_end.append(scp)
        remaining = [f for f in files if f not in acked]
        router = start_route(port, *args, log=tmp_path / "route.log")
        stopped_at_end.append(router)
        sender_log = tmp_path / f"storescu-{kill}.log"
        sender = storescu(port, remaining, sender_log)
        if kill < KILLS:
            time.sleep(rng.uniform(0.1, 2.5))
            router.proc.send_signal(signal.SIGKILL)
            router.proc.wait()
        sender.wait(timeout=120)
        answered = acknowledged(sender_log)
        cut += len(answered) < len(remaining)
        acked.update(answered)
    assert acked == set(files), sender_log.read_text()
    assert scp is not None
    assert _queue_empty(spool, 120), router.text()
    router.proc.send_signal(signal.SIGINT)
    assert router.proc.wait(timeout=30) == 0, router.text()
    story = router.text()
    for line in ("I: Spooled ", "I: Forwarded ", "files waiting in the spool from an earlier run"):
        assert line in story
    assert "Routed in " in story and "0 waiting" in story
    found = arrived(scp.outdir)
    assert_byte_exact(files, found)
    assert not unexplained_duplicates(found, spool)
    assert not [p for p in (spool / "incoming").rglob("*") if p.is_file()]
    assert cut, "no kill came while storescu was sending"
    assert [e for e in journal(spool) if e["step"] == "recovered"], "no kill left files queued"
