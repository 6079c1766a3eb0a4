"""Peers that misbehave, scripted with :mod:`support.scripted`: every file still gets exactly
one result, the one that met the fault says why (its failure kind and reason), nothing waits
past the configured timeouts, and (when the peer behaves again on the next association) every
other file is stored.

Most scripts misbehave on their first connection only and serve normally afterwards, which is
how the tests see that fastpush aborts, reconnects and goes on."""

from __future__ import annotations

import struct
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import fastpush
from fastpush import Failure, Outcome, Result
from fastpush.synthetic import write_large_file
from fastpush.wire import pdu

from support.scripted import Conn, Message, ScriptedPeer

ENGINES = ["rust", "python"]
TIMEOUT = 0.5  # ACSE and DIMSE timeouts of every push here
BOUND = 8.0  # no push here may take longer: a few timeouts, never a hang

P_DATA_HUGE = struct.pack(">BxI", pdu.P_DATA_TF, 0xFFFFFFF0)
UNKNOWN_PDU = struct.pack(">BxI", 0x55, 4) + bytes(4)


def _push(
    peer: ScriptedPeer, files: list[Path], engine: str, retries: int = 0
) -> tuple[list[Result], float]:
    """Push with short timeouts and, unless asked, no retries: what each fault costs, alone."""
    started = time.monotonic()
    results = fastpush.push(
        files,
        peer.host,
        peer.port,
        engine=engine,
        connect_timeout=2,
        acse_timeout=TIMEOUT,
        dimse_timeout=TIMEOUT,
        retries=retries,
        backoff=0,
    )
    elapsed = time.monotonic() - started
    assert sorted(str(r.path) for r in results) == sorted(map(str, files))  # one result each
    assert elapsed < BOUND
    return results, elapsed


def _first_fails_rest_stored(results: list[Result], reason: str) -> Result:
    """The file that met the fault (on association 1) failed saying why, a lost transfer (the
    association is gone, one attempt made); the others, sent over a new association, were
    stored. Returns the failed result."""
    failed = [r for r in results if r.outcome is not Outcome.STORED]
    assert len(failed) == 1, [(r.outcome, r.reason) for r in results]
    assert failed[0].outcome is Outcome.FAILED and failed[0].association == 1
    assert failed[0].failure is Failure.TRANSFER, failed[0].failure
    assert failed[0].attempts == 1
    assert reason in failed[0].reason, failed[0].reason
    return failed[0]


def _on_first(fault: Callable[[Conn], None]) -> Callable[[Conn, int], None]:
    """A script: ``fault`` on the first connection, a well-behaved peer on the others."""

    def script(conn: Conn, index: int) -> None:
        if index == 0:
            fault(conn)
        else:
            conn.accept()
            conn.serve()

    return script


def _run(fault: Callable[[Conn], None], files: list[Path], engine: str) -> list[Result]:
    with ScriptedPeer(_on_first(fault)) as peer:
        results, _ = _push(peer, files, engine)
    return results


# -- association establishment ----------------------------------------------------------------


def _with_ac_body(conn: Conn, mutate: Callable[[bytes], bytes]) -> None:
    rq = conn.read_rq()
    contexts = tuple(
        pdu.ContextResult(pc.context_id, 0, pc.transfer_syntaxes[0]) for pc in rq.contexts
    )
    ac = pdu.encode_associate_ac(pdu.AssociateAC(rq.called_ae, rq.calling_ae, contexts, 16384))
    body = mutate(ac[6:])
    conn.send(struct.pack(">BxI", pdu.ASSOCIATE_AC, len(body)) + body)
    conn.serve()


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize(
    ("name", "fault", "reason"),
    [
        ("never answers", lambda c: (c.read_rq(), c.stall()), "timed out"),
        ("closes at once", lambda c: c.sock.close(), "onnection"),
        ("resets at once", lambda c: c.reset(), "onnection"),
        ("aborts", lambda c: (c.read_rq(), c.abort()), "A-ABORT"),
        ("unknown PDU", lambda c: (c.read_rq(), c.send(UNKNOWN_PDU)), "expected A-ASSOCIATE-AC"),
        (
            "gigabyte PDU",
            lambda c: (c.read_rq(), c.send(struct.pack(">BxI", 2, 0xFFFFFFF0)), c.stall()),
            "over the limit",
        ),
        (
            "truncated AC",
            lambda c: (c.read_rq(), c.send(struct.pack(">BxI", 2, 100) + bytes(50))),
            "in the middle of a PDU",
        ),
        (
            "garbage context item",
            lambda c: _with_ac_body(c, lambda b: b + b"\x21\x00\x00\x02\x01\x00"),
            "truncated presentation context item",
        ),
        (
            "item past the end",
            lambda c: _with_ac_body(c, lambda b: b + b"\x50\x00\x01\x00"),
            "past the PDU end",
        ),
        (
            "tiny maximum length",
            lambda c: _with_ac_body(
                c, lambda b: b.replace(struct.pack(">HI", 4, 16384), struct.pack(">HI", 4, 4))
            ),
            "maximum PDU length 4 is too small",
        ),
    ],
)
def test_association_faults(
    study: list[Path], engine: str, name: str, fault: Callable[[Conn], None], reason: str
) -> None:
    with ScriptedPeer(lambda conn, _index: fault(conn)) as peer:
        results, _ = _push(peer, study[:3], engine)
    assert all(r.outcome is Outcome.FAILED for r in results)
    assert all(r.failure is Failure.ASSOCIATION and r.attempts == 0 for r in results), [
        (r.failure, r.attempts) for r in results
    ]
    assert all(reason in r.reason and "association failed" in r.reason for r in results), [
        r.reason for r in results
    ]


@pytest.mark.parametrize("engine", ENGINES)
def test_ac_without_contexts(study: list[Path], engine: str) -> None:
    def no_contexts(conn: Conn) -> None:
        rq = conn.read_rq()
        conn.send(pdu.encode_associate_ac(pdu.AssociateAC(rq.called_ae, rq.calling_ae, (), 16384)))
        conn.serve()

    with ScriptedPeer(lambda conn, _index: no_contexts(conn)) as peer:
        results, _ = _push(peer, study[:3], engine)
    assert all(r.outcome is Outcome.FAILED for r in results)
    assert all(r.failure is Failure.REFUSED for r in results), [r.failure for r in results]
    assert all("no accepted presentation context" in r.reason for r in results)


# -- during a C-STORE -------------------------------------------------------------------------


def _without_status(message_id: int) -> bytes:
    """A C-STORE-RSP command set (Implicit VR LE) that lacks its Status element."""
    elements = [(0x0100, 0x8001), (0x0120, message_id), (0x0800, 0x0101)]
    return b"".join(struct.pack("<HHIH", 0, tag, 2, value) for tag, value in elements)


def _answer_with(send: Callable[[Conn, int, Message], object]) -> Callable[[Conn], None]:
    def fault(conn: Conn) -> None:
        conn.accept()
        message = conn.read_message()
        send(conn, message.context_id, message)
        conn.stall()

    return fault


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize(
    ("name", "send", "reason"),
    [
        ("never answers", lambda c, ctx, m: None, "timed out"),
        ("gigabyte PDU", lambda c, ctx, m: c.send(P_DATA_HUGE), "over the limit"),
        (
            "truncated PDU",
            lambda c, ctx, m: (c.send(struct.pack(">BxI", 4, 100) + bytes(50)), c.sock.close()),
            "in the middle of a PDU",
        ),
        ("unknown PDU", lambda c, ctx, m: c.send(UNKNOWN_PDU), "expected P-DATA-TF"),
        (
            "unproposed context",
            lambda c, ctx, m: c.send_pdv(99, b"\0" * 10, command=True),
            "presentation context 99",
        ),
        (
            "wrong message ID",
            lambda c, ctx, m: c.respond(m, message_id=m.command.message_id + 7),
            "response answers message",
        ),
        (
            "malformed command",
            lambda c, ctx, m: c.send_pdv(
                ctx, b"\x00\x00\x00\x01\x04\x00\x00\x00\x01", command=True
            ),
            "command",
        ),
        (
            "no status",
            lambda c, ctx, m: c.send_pdv(ctx, _without_status(m.command.message_id), command=True),
            "response has no Status",
        ),
        ("aborts", lambda c, ctx, m: c.abort(), "aborted by the peer"),
        ("resets", lambda c, ctx, m: c.reset(), "connection lost"),
        ("closes", lambda c, ctx, m: c.sock.close(), "connection lost"),
    ],
)
def test_response_faults(
    study: list[Path], engine: str, name: str, send: Callable[..., None], reason: str
) -> None:
    results = _run(_answer_with(send), study[:4], engine)
    _first_fails_rest_stored(results, reason)


@pytest.mark.parametrize("engine", ENGINES)
def test_endless_response_is_cut_off(study: list[Path], engine: str) -> None:
    def endless(conn: Conn) -> None:
        conn.accept()
        message = conn.read_message()
        while True:  # command fragments that never end; stops when we hang up
            conn.send_pdv(message.context_id, bytes(4096), command=True, last=False)

    results = _run(endless, study[:3], engine)
    _first_fails_rest_stored(results, "response runs past")


# What each way of losing the connection is reported as: the start of the failed file's reason.
LOST = {
    "abort": "association aborted by the peer (A-ABORT from service-user)",
    "reset": "connection lost: [Errno 104] Connection reset by peer",
    "close": "connection lost: ",
}


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("how", ["abort", "reset", "close"])
@pytest.mark.parametrize("when", ["after command", "mid-dataset"])
def test_connection_lost_while_sending(study: list[Path], engine: str, how: str, when: str) -> None:
    def fault(conn: Conn) -> None:
        conn.accept()
        conn.read_command()
        if when == "mid-dataset":
            conn.read_pdu()
        {"abort": conn.abort, "reset": conn.reset, "close": conn.sock.close}[how]()
        if how == "abort":
            conn.sock.close()

    results = _run(fault, study[:3], engine)
    failed = _first_fails_rest_stored(results, LOST[how])
    # Closed with data unread, the socket may answer with an RST: either way the connection
    # is lost, and the reason says which the operating system reported.
    assert failed.reason.startswith(LOST[how]), failed.reason
    assert failed.retryable


@pytest.mark.parametrize("engine", ENGINES)
def test_peer_closes_right_after_accepting(study: list[Path], engine: str) -> None:
    def fault(conn: Conn) -> None:
        conn.accept()
        conn.sock.close()

    results = _run(fault, study[:3], engine)
    _first_fails_rest_stored(results, "connection lost")


@pytest.mark.parametrize("engine", ENGINES)
def test_peer_stops_reading_mid_dataset(study: list[Path], tmp_path: Path, engine: str) -> None:
    # Bigger than what loopback socket buffers absorb, so the write itself must time out.
    big = write_large_file(tmp_path / "big.dcm", 64 << 20)

    def fault(conn: Conn) -> None:
        conn.accept()
        conn.read_command()
        conn.stall()

    with ScriptedPeer(_on_first(fault)) as peer:
        results, _ = _push(peer, [big, *study[:2]], engine)
    by_path = {r.path: r for r in results}
    assert by_path[str(big)].outcome is Outcome.FAILED
    assert "timed out" in by_path[str(big)].reason
    assert by_path[str(big)].association == 1
    assert all(by_path[str(p)].outcome is Outcome.STORED for p in study[:2])


@pytest.mark.parametrize("engine", ENGINES)
def test_release_answered_with_endless_data(study: list[Path], engine: str) -> None:
    def fault(conn: Conn) -> None:
        conn.accept()
        conn.serve(answer_release=False)
        while True:  # anything but an A-RELEASE-RP, forever
            conn.send_pdv(1, bytes(64), command=True, last=False)
            time.sleep(0.01)

    with ScriptedPeer(_on_first(fault)) as peer:
        results, elapsed = _push(peer, study[:3], engine)
    assert all(r.outcome is Outcome.STORED for r in results)
    assert elapsed < 4 * TIMEOUT + 1


@pytest.mark.parametrize("engine", ENGINES)
def test_retry_recovers_the_file_that_met_the_fault(study: list[Path], engine: str) -> None:
    def fault(conn: Conn) -> None:
        conn.accept()
        conn.read_command()
        conn.read_pdu()
        conn.reset()

    with ScriptedPeer(_on_first(fault)) as peer:
        results, _ = _push(peer, study[:3], engine, retries=1)
    assert all(r.outcome is Outcome.STORED for r in results), [r.reason for r in results]
    assert peer.connections == 2
