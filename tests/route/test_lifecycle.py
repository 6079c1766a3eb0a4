"""The router's lifecycle (issue 19): the journal rotated by size with whole lines only,
``route --log-json`` (one JSON object a line, the idle association's release among them), and
a graceful stop that leaves no finished file marked as being sent."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

from fastpush import Destination, Router, Step
from fastpush.route.journal import Journal, RouteEvent
from fastpush.send.retry import RetryPolicy
from fastpush.synthetic import write_study

from support.peers import (
    PynetdicomSCPFactory,
    StoreSCPFactory,
    free_port,
    stop_process,
    wait_for_port,
)
from support.routing import journal, send_all

FAST_RETRY = RetryPolicy(retries=1, backoff=0.05, max_backoff=0.3)


@pytest.fixture
def files(tmp_path: Path) -> list[Path]:
    return write_study(
        tmp_path / "src",
        count=40,
        pixel_bytes=2048,
        sop_classes=[CTImageStorage],
        transfer_syntaxes=[ExplicitVRLittleEndian],
    )


def test_journal_rotates_between_whole_lines(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    log = Journal(path, max_bytes=2000, keep=3)

    def write(n: int) -> None:
        for i in range(100):
            log.write(RouteEvent(Step.FORWARDED, f"1.2.3.{n}.{i}", "PACS", bytes=i))

    writers = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()
    log.close()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["journal.jsonl", "journal.jsonl.1", "journal.jsonl.2", "journal.jsonl.3"]
    kept = 0
    for name in names:
        data = (tmp_path / name).read_bytes()
        assert len(data) <= 2000
        assert data.endswith(b"\n")
        for line in data.splitlines():
            assert json.loads(line)["step"] == "forwarded"
            kept += 1
    # The newest lines are kept: the current file's are the last written.
    assert 0 < kept < 400


def test_journal_of_a_restart_appends_and_rotates(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    first = Journal(path, max_bytes=1000)
    first.write(RouteEvent(Step.RECEIVED, "1.2.3"))
    first.close()
    size = path.stat().st_size
    second = Journal(path, max_bytes=size + 10)
    second.write(RouteEvent(Step.RECEIVED, "1.2.4"))  # past max_bytes with the earlier line
    second.close()
    assert json.loads((tmp_path / "journal.jsonl.1").read_text())["sop_instance_uid"] == "1.2.3"
    assert json.loads(path.read_text())["sop_instance_uid"] == "1.2.4"


@pytest.mark.interop
def test_route_log_json_lines_parse_and_tell_the_idle_release(
    storescp: StoreSCPFactory, files: list[Path], tmp_path: Path
) -> None:
    scp = storescp()
    port = free_port()
    spool = tmp_path / "spool"
    with open(tmp_path / "route.out", "wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "fastpush",
                "route",
                str(port),
                "--to",
                "127.0.0.1",
                str(scp.port),
                "--spool",
                str(spool),
                "--idle-release",
                "0.3",
                "--log-json",
                "-v",
            ],
            stdout=out,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
        )
    try:
        wait_for_port(port, proc=proc)
        send_all(port, files[:5], tmp_path / "storescu.log")
        assert proc.stderr is not None
        lines = []
        for raw in proc.stderr:  # blocks until the router says it released the association
            lines.append(raw)
            if b"Releasing association" in raw:
                break
        proc.send_signal(signal.SIGINT)
        _, rest = proc.communicate(timeout=60)
    finally:
        stop_process(proc)
    records = [json.loads(line) for line in [*lines, *rest.splitlines()]]
    assert all(
        {"time", "level", "logger", "message", "thread"} <= record.keys() for record in records
    )
    messages = [r["message"] for r in records]
    assert any(m.startswith("Releasing association") for m in messages), messages
    assert sum(m.startswith("Forwarded ") for m in messages) == 5
    assert any(m.startswith("Stopping:") for m in messages)
    assert {r["level"] for r in records} <= {"DEBUG", "INFO", "WARNING", "ERROR"}


def _router(spool: Path, port: int, associations: int = 1) -> Router:
    destination = Destination("127.0.0.1", port, "ANY-SCP", name="pacs")
    return Router(
        0, [destination], spool=spool, host="127.0.0.1", retry=FAST_RETRY, associations=associations
    )


@pytest.mark.interop
def test_graceful_stop_leaves_no_finished_file_marked_sending(
    pynetdicom_scp: PynetdicomSCPFactory,
    routers: list[Router],
    files: list[Path],
    tmp_path: Path,
) -> None:
    spool = tmp_path / "spool"
    first = _router(spool, 1)
    routers.append(first.start())
    first.forwarders["pacs"].hold()  # every file waits in the queue, then forwarding starts
    send_all(first.port, files, tmp_path / "storescu.log")
    first.stop()

    stopping: list[Router] = []
    stopper: list[threading.Thread] = []
    stop_started = threading.Event()

    def status(n: int) -> int:
        # The 11th store is answered only once the router is stopping: a stop during a steady
        # stream, with a file in flight.
        if n == 10:
            stopper.append(threading.Thread(target=stopping[0].stop))
            stopper[0].start()
            stop_started.set()
            stopping[0].forwarders["pacs"]._stopping.wait(60)
        return 0x0000

    scp = pynetdicom_scp(statuses=status)
    second = _router(spool, scp.port, associations=2)
    stopping.append(second)
    routers.append(second.start())
    assert stop_started.wait(60)
    stopper[0].join(60)
    assert not list((spool / "queue").rglob("*.sending"))
    sent = set(scp.received_uids)
    assert len(sent) >= 11

    third = _router(spool, scp.port)
    routers.append(third.start())
    assert third.wait_idle(60)
    third.stop()
    events = journal(spool)
    recovered = [e for e in events if e["step"] == "recovered"]
    assert not [e for e in recovered if e["maybe_duplicate"]]
    forwarded = [e["sop_instance_uid"] for e in events if e["step"] == "forwarded"]
    assert sorted(forwarded) == sorted(set(forwarded))  # none forwarded twice
    assert len(forwarded) == len(files) == len(scp.received_uids)
