"""Cut-through: a large file is forwarded while the router still receives it, and finished only
once the router spooled and queued it. Real peers on both sides for what arrives (DCMTK storescu
into storescp, byte for byte; pynetdicom's SCP, which reports only whole C-STOREs); a scripted
sender for a receive cut short and a dataset the router refuses, the faults a real sender does
not make on demand."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydicom.uid import ExplicitVRLittleEndian

from fastpush import Destination, Received, Router, StorageServer
from fastpush.send.retry import RetryPolicy
from fastpush.synthetic import write_study
from fastpush.transport.tls import TLSOptions
from fastpush.wire import dimse

from support.certs import Certificates
from support.fakesender import FakeSender, dataset
from support.peers import PynetdicomSCPFactory, StoreSCPFactory, free_port
from support.routing import arrived, assert_byte_exact, journal, send_all
from support.scripted import Conn, Hangup, ScriptedPeer

pytestmark = pytest.mark.interop

FAST_RETRY = RetryPolicy(retries=1, backoff=0.05, max_backoff=0.3)
THRESHOLD = 256 << 10


def _route(
    started: list[Router], spool: Path, *destinations: Destination, **options: Any
) -> Router:
    r = Router(
        0,
        list(destinations),
        spool=spool,
        host="127.0.0.1",
        retry=FAST_RETRY,
        cut_through=THRESHOLD,
        **options,
    )
    started.append(r.start())
    return r


def _sent_from(caplog: pytest.LogCaptureFixture, folder: str) -> int:
    """Files the router's lanes began to send from ``folder`` of the spool (``incoming``: while
    they arrived; ``queue``: from their queue entries)."""
    return sum(
        1
        for record in caplog.records
        if record.getMessage().startswith("Sending file: ") and f"/{folder}/" in record.getMessage()
    )


def _first_half(
    sender: FakeSender,
    caplog: pytest.LogCaptureFixture,
    uid: str,
    data: bytes,
    message_id: int = 1,
    relays: int = 1,
) -> bytes:
    """Send the first half of a C-STORE of ``data`` and wait until ``relays`` files (in all)
    are being sent on while they arrive; the other half, for the test to send."""
    wire = sender.store_bytes(uid, data, message_id)
    sender.send(wire[: len(wire) // 2])
    _wait_for(lambda: _sent_from(caplog, "incoming") == relays)
    return wire[len(wire) // 2 :]


def _status(sender: FakeSender, rest: bytes) -> int | None:
    """Send ``rest`` of a C-STORE; the status answered (None: no answer)."""
    sender.send(rest)
    response = sender.response()
    return None if response is None else response.status


def _wait_for(condition: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_large_files_go_on_while_they_arrive_byte_exact(
    storescp: StoreSCPFactory,
    routers: list[Router],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="fastpush")
    # Large enough to take longer to arrive than a thread switch (5 ms), small ones between.
    files = write_study(
        tmp_path / "src", count=3, pixel_bytes=12 << 20, transfer_syntaxes=[ExplicitVRLittleEndian]
    )
    small = write_study(
        tmp_path / "small",
        count=3,
        pixel_bytes=4096,
        transfer_syntaxes=[ExplicitVRLittleEndian],
        seed=1,
    )
    scp = storescp("+B", "+uf")
    spool = tmp_path / "spool"
    r = _route(routers, spool, Destination("127.0.0.1", scp.port, "STORESCP"), associations=1)
    send_all(r.port, files + small, tmp_path / "storescu.log")
    assert r.wait_idle(60)
    found = arrived(scp.outdir)
    assert len(found) == len(files + small)
    assert all(len(copies) == 1 for copies in found.values())
    assert_byte_exact(files + small, found)
    # storescu waits for each answer: the lane is idle when the first large file arrives, and
    # takes the next ones once it has the previous one's answer, maybe after they are whole.
    relayed = _sent_from(caplog, "incoming")
    assert relayed >= 1
    assert relayed + _sent_from(caplog, "queue") == len(files + small)
    steps = [e["step"] for e in journal(spool)]
    assert steps.count("received") == steps.count("forwarded") == len(files + small)
    stats = r.stats()
    (destination,) = stats.destinations.values()
    assert (stats.spooled_files, destination.forwarded) == (0, len(files + small))
    assert destination.relayed == relayed
    assert not [p for p in (spool / "queue").rglob("*") if p.is_file()]


@pytest.mark.parametrize("fault", ["cut", "mismatch"])
def test_a_file_the_router_does_not_keep_never_reaches_the_destination(
    fault: str,
    pynetdicom_scp: PynetdicomSCPFactory,
    routers: list[Router],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="fastpush")
    scp = pynetdicom_scp()
    spool = tmp_path / "spool"
    r = _route(routers, spool, Destination("127.0.0.1", scp.port, scp.aet, name="PACS"))
    data = dataset("1.2.3.4", study_uid="1.2.3", pixels=4 << 20)
    with FakeSender(r.port) as sender:
        sender.associate()
        # Half the dataset, then, once the lane sends it on, the fault.
        uid = "1.2.3.4" if fault == "cut" else "9.9.9"  # "mismatch": not the dataset's UID
        rest = _first_half(sender, caplog, uid, data)
        if fault == "cut":
            sender.reset()
        else:
            assert _status(sender, rest) == dimse.DATASET_MISMATCH
    # The lane gave the forward up: its association aborted, nothing stored there.
    _wait_for(lambda: "Aborting Association" in caplog.text)
    assert scp.received == []
    # Nothing queued, no file kept in incoming/ (a spent file to write over aside).
    assert not [p for p in (spool / "queue").rglob("*") if p.is_file()]
    assert not [p for p in (spool / "incoming").iterdir() if not p.name.startswith(".free-")]
    # The lane goes on: the next large file arrives whole, sent while it arrived.
    caplog.clear()
    with FakeSender(r.port) as sender:
        sender.associate()
        assert sender.store("1.2.3.5", dataset("1.2.3.5", study_uid="1.2.3", pixels=4 << 20)) == 0
    assert r.wait_idle(30)
    assert [s.sop_instance_uid for s in scp.received] == ["1.2.3.5"]
    assert _sent_from(caplog, "incoming") == 1


def test_a_destination_down_while_files_arrive_gets_them_from_the_queue_in_order(
    routers: list[Router], tmp_path: Path
) -> None:
    """The first large file's forward fails to connect; it and the next (which finds the lane
    busy with it) wait in the queue and reach the destination in order once it is up."""
    port = free_port()
    spool = tmp_path / "spool"
    r = _route(routers, spool, Destination("127.0.0.1", port), associations=1)
    with FakeSender(r.port) as sender:
        sender.associate()
        for n in range(2):
            uid = f"1.2.3.{n}"
            assert sender.store(uid, dataset(uid, study_uid="1.2.3", pixels=1 << 20), n + 1) == 0
    assert r.stats().spooled_files == 2
    stored: list[str] = []
    lock = threading.Lock()

    def record(received: Received) -> None:
        with lock:
            stored.append(received.sop_instance_uid)

    with StorageServer("127.0.0.1", port, on_store=record):
        assert r.wait_idle(60)
        r.stop()
    assert stored == ["1.2.3.0", "1.2.3.1"]


def test_cut_through_is_off_where_the_whole_file_is_needed_to_pick(
    routers: list[Router], tmp_path: Path
) -> None:
    from fastpush.route.rules import Rule

    to = Destination("127.0.0.1", free_port(), name="pacs")
    default = Router(0, [to], spool=tmp_path / "a", host="127.0.0.1")
    assert default.relay is not None and default.relay.threshold == 8_000_000
    assert default.server.cut_through is default.relay
    ruled = Router(0, [to], spool=tmp_path / "c", host="127.0.0.1", rules=[Rule(to=("pacs",))])
    assert ruled.relay is not None
    off = Router(0, [to], spool=tmp_path / "b", host="127.0.0.1", cut_through=None)
    picked = Router(0, [to], spool=tmp_path / "e", host="127.0.0.1", on_receive=lambda r: ["pacs"])
    python = Router(0, [to], spool=tmp_path / "d", host="127.0.0.1", engine="python")
    assert off.relay is None and picked.relay is None and python.relay is None
    for r in (default, off, ruled, picked, python):
        r.stop()


def test_rules_pick_from_the_head_where_a_file_goes_while_it_arrives(
    pynetdicom_scp: PynetdicomSCPFactory,
    routers: list[Router],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from fastpush.route.rules import Rule

    caplog.set_level(logging.INFO, logger="fastpush")
    a, b = pynetdicom_scp(), pynetdicom_scp()
    r = _route(
        routers,
        tmp_path / "spool",
        Destination("127.0.0.1", a.port, a.aet, name="a"),
        Destination("127.0.0.1", b.port, b.aet, name="b"),
        rules=[
            Rule(match={"StudyInstanceUID": "1.2.3"}, to=("a",)),
            Rule(match={}, to=("b",)),
        ],
    )
    with FakeSender(r.port) as sender:
        sender.associate()
        for n, (uid, study) in enumerate((("1.2.3.11", "1.2.3"), ("1.2.4.12", "1.2.4"))):
            data = dataset(uid, study_uid=study, pixels=4 << 20)
            rest = _first_half(sender, caplog, uid, data, n + 1, relays=n + 1)
            assert _status(sender, rest) == 0
    assert r.wait_idle(30)
    assert [s.sop_instance_uid for s in a.received] == ["1.2.3.11"]
    assert [s.sop_instance_uid for s in b.received] == ["1.2.4.12"]
    assert "Aborting Association" not in caplog.text  # each went only where it was picked


@pytest.mark.parametrize(("value", "expected"), [("0", 0.0), ("2.5", 2.5)])
def test_the_config_file_sets_the_threshold(value: str, expected: float) -> None:
    from fastpush.route.config import parse

    text = f'[forward]\ncut_through = {value}\n[destinations.pacs]\nhost = "h"\nport = 104\n'
    assert parse(text).forward.cut_through == expected


def test_a_file_is_offered_once_its_head_is_whole() -> None:
    from fastpush.receive.storage import STUDY_HEAD
    from fastpush.route.relay import Relay

    # The lane and the rules' pick are read from the head: never from part of it.
    assert Relay(1, []).threshold == STUDY_HEAD
    assert Relay(STUDY_HEAD + 1, []).threshold == STUDY_HEAD + 1


def test_a_negative_threshold_is_refused_with_its_line() -> None:
    from fastpush.route.config import ConfigError, parse

    text = '[forward]\ncut_through = -1\n[destinations.pacs]\nhost = "h"\nport = 104\n'
    with pytest.raises(ConfigError, match=r"^router.toml:2: forward.cut_through: -1"):
        parse(text, "router.toml")


def test_two_destinations_one_over_tls_both_take_it_while_it_arrives(
    certs: Certificates, routers: list[Router], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="fastpush")
    stored: dict[str, list[Path]] = {"plain": [], "tls": []}

    def keep(name: str) -> Callable[[Received], None]:
        def on_store(received: Received) -> None:
            assert received.path is not None
            stored[name].append(received.path)

        return on_store

    server_tls = TLSOptions(cert_file=str(certs.server.cert), key_file=str(certs.server.key))
    with (
        StorageServer(
            "127.0.0.1", 0, directory=tmp_path / "plain", on_store=keep("plain")
        ) as plain,
        StorageServer(
            "127.0.0.1", 0, directory=tmp_path / "tls", on_store=keep("tls"), tls=server_tls
        ) as secure,
    ):
        r = _route(
            routers,
            tmp_path / "spool",
            Destination("127.0.0.1", plain.port, name="plain"),
            Destination(
                "127.0.0.1", secure.port, name="tls", tls=TLSOptions(ca_file=str(certs.ca))
            ),
        )
        data = dataset("1.2.3.7", study_uid="1.2.3", pixels=3 << 20)
        with FakeSender(r.port) as sender:
            sender.associate()
            rest = _first_half(sender, caplog, "1.2.3.7", data, relays=2)  # one per destination
            assert _status(sender, rest) == 0
        assert r.wait_idle(30)
        r.stop()
    for name in ("plain", "tls"):
        (path,) = stored[name]
        assert path.read_bytes().endswith(data)


def test_a_stop_while_a_large_file_arrives_ends_both_sides(
    pynetdicom_scp: PynetdicomSCPFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="fastpush")
    scp = pynetdicom_scp()
    r = Router(
        0,
        [Destination("127.0.0.1", scp.port, scp.aet)],
        spool=tmp_path / "spool",
        host="127.0.0.1",
        cut_through=THRESHOLD,
    ).start()
    with FakeSender(r.port) as sender:
        sender.associate()
        _first_half(
            sender, caplog, "1.2.3.8", dataset("1.2.3.8", study_uid="1.2.3", pixels=4 << 20)
        )
        stopping = threading.Thread(target=r.stop, kwargs={"abort": True})
        stopping.start()
        stopping.join(30)
        assert not stopping.is_alive()
    assert scp.received == []


def test_a_forward_given_up_after_the_file_was_queued_leaves_it_no_maybe_duplicate(
    routers: list[Router], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The destination hangs up before the last fragment of a file the router queued while
    sending it on: it cannot hold the file, so the entry loses its ``sending`` mark and a stop
    now leaves it waiting as any file never sent."""
    caplog.set_level(logging.INFO, logger="fastpush")
    queued = threading.Event()

    def on_dataset(conn: Conn, request: int, command: Any, received: int, last: bool) -> None:
        if received > 0:  # the lane's send is held here until the router has queued the file
            queued.wait(30)
            raise Hangup("scripted drop")

    def script(conn: Conn, index: int) -> None:
        conn.accept()
        conn.serve(on_dataset)

    spool = tmp_path / "spool"
    with ScriptedPeer(script) as peer:
        r = _route(routers, spool, Destination("127.0.0.1", peer.port, name="PACS"))
        # Larger than the loopback's socket buffers: the lane cannot have sent it all.
        data = dataset("1.2.3.14", study_uid="1.2.3", pixels=24 << 20)
        with FakeSender(r.port) as sender:
            sender.associate()
            rest = _first_half(sender, caplog, "1.2.3.14", data)
            assert _status(sender, rest) == 0  # spooled and queued, marked as being sent
        (marked,) = (spool / "queue").rglob("*.sending")
        stopping = threading.Thread(target=r.stop)  # graceful: waits for the send
        stopping.start()
        queued.set()
        stopping.join(30)
        assert not stopping.is_alive()
    assert "not sent while received" in caplog.text
    assert [p.name for p in (spool / "queue").rglob("*") if p.is_file()] == [
        marked.name.removesuffix(".sending")
    ]
    assert peer.received == []


def test_a_held_destination_takes_no_file_while_it_arrives(
    pynetdicom_scp: PynetdicomSCPFactory,
    routers: list[Router],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="fastpush")
    scp = pynetdicom_scp()
    r = _route(
        routers, tmp_path / "spool", Destination("127.0.0.1", scp.port, scp.aet, name="PACS")
    )
    forwarder = r.forwarders["PACS"]
    with FakeSender(r.port) as sender:
        sender.associate()
        data = dataset("1.2.3.9", study_uid="1.2.3", pixels=4 << 20)
        rest = _first_half(sender, caplog, "1.2.3.9", data)  # the first half: taken
        forwarder.hold()
        assert _status(sender, rest) == 0
        # Held after the lane took it: the file in flight finishes, as a queued one would.
        assert r.wait_idle(30)
        data = dataset("1.2.3.10", study_uid="1.2.3", pixels=4 << 20)
        assert _status(sender, sender.store_bytes("1.2.3.10", data, 2)) == 0
    time.sleep(0.3)
    assert [s.sop_instance_uid for s in scp.received] == ["1.2.3.9"]  # the second waits
    forwarder.hold(False)
    assert r.wait_idle(30)
    assert [s.sop_instance_uid for s in scp.received] == ["1.2.3.9", "1.2.3.10"]
    assert _sent_from(caplog, "incoming") == 1  # the second went from the queue


def test_a_sender_that_stalls_mid_file_does_not_hold_the_destination(
    pynetdicom_scp: PynetdicomSCPFactory,
    routers: list[Router],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from fastpush.route import relay

    monkeypatch.setattr(relay.Ticket, "stall", 0.3)
    caplog.set_level(logging.INFO, logger="fastpush")
    scp = pynetdicom_scp()
    r = _route(
        routers, tmp_path / "spool", Destination("127.0.0.1", scp.port, scp.aet, name="PACS")
    )
    with FakeSender(r.port) as sender:
        sender.associate()
        data = dataset("1.2.3.13", study_uid="1.2.3", pixels=4 << 20)
        rest = _first_half(sender, caplog, "1.2.3.13", data)
        # Nothing more for longer than the stall: the lane gives the file up.
        _wait_for(lambda: "stalled" in caplog.text)
        assert "Aborting Association" in caplog.text
        assert _status(sender, rest) == 0
    assert r.wait_idle(30)
    assert [s.sop_instance_uid for s in scp.received] == ["1.2.3.13"]  # once, from the queue
    assert _sent_from(caplog, "queue") == 1
    assert r.stats().destinations["PACS"].relayed == 0
