"""Fuzzing the server's side of the parsers (hypothesis): what a sender's A-ASSOCIATE-RQ and
command sets turn into. Decoding may raise ``ProtocolError``; everything after it (the
negotiation, the A-ASSOCIATE-AC, the response command, the file meta of a stored file) must work
on whatever decoded. Then the same bytes go to a running :class:`StorageServer`: it answers each
with an A-ASSOCIATE-AC/RJ, a response or an A-ABORT, never by dropping the connection, and no
association thread fails."""

from __future__ import annotations

import contextlib
import logging
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastpush.errors import ProtocolError
from fastpush.receive.negotiation import AcceptPolicy
from fastpush.receive.server import StorageServer
from fastpush.receive.storage import file_meta, prefix
from fastpush.uids import (
    EXPLICIT_VR_BE,
    EXPLICIT_VR_LE,
    IMPLICIT_VR_LE,
    VERIFICATION,
)
from fastpush.wire import dimse, pdu
from fastpush.wire.identity import UserIdentity

from support.fakesender import FakeSender, dataset
from support.fuzzing import associate_requests, command_sets

CT = "1.2.840.10008.5.1.4.1.1.2"
UNKNOWN_CLASS = "1.2.3.4.5.6"
JPEG = "1.2.840.10008.1.2.4.50"


def _request() -> bytes:
    """An A-ASSOCIATE-RQ body as storescu sends one: several contexts, one of them for a class
    no server knows, one compressed syntax, a user identity."""
    contexts = (
        pdu.ContextProposal(1, CT, (EXPLICIT_VR_LE, IMPLICIT_VR_LE, EXPLICIT_VR_BE)),
        pdu.ContextProposal(3, CT, (JPEG,)),
        pdu.ContextProposal(5, UNKNOWN_CLASS, (IMPLICIT_VR_LE,)),
        pdu.ContextProposal(7, VERIFICATION, (IMPLICIT_VR_LE,)),
    )
    who = UserIdentity.user("alice", "secret", positive_response=True)
    rq = pdu.AssociateRQ("ANY-SCP", "STORESCU", contexts, 16384, "1.2.3", "SENDER", who)
    return pdu.encode_associate_rq(rq)[6:]


REQUEST = _request()
STORED = "1.2.826.0.1.3680043.8.498.1"
COMMANDS = {
    "store": dimse.store_rq(7, CT, STORED),
    "echo": dimse.echo_rq(3),
    # A C-FIND-RQ: a command the server does not serve.
    "find": dimse.response(0x0020, 5, 0, CT)[:-10],
}
# What the unmutated store announces; a mutated command gets it too, and its answer.
DATASET = dataset(STORED, pixels=256)
POLICIES = (
    AcceptPolicy(),
    AcceptPolicy(check_called_ae=True, calling_aes={"STORESCU"}, syntax="big"),
    AcceptPolicy(promiscuous=True, syntax="all", max_pdu=0),
    AcceptPolicy(sop_classes={CT}, syntax="implicit", max_pdu=4096),
)


def test_seeds_are_what_they_claim() -> None:
    rq = pdu.decode_associate_rq(REQUEST)
    assert [c.context_id for c in rq.contexts] == [1, 3, 5, 7]
    ac = POLICIES[0].acceptance(rq)
    assert [r.result for r in ac.contexts] == [0, 0, 3, 0]
    assert dimse.decode(COMMANDS["store"]).command_field == dimse.C_STORE_RQ
    assert dimse.decode(COMMANDS["echo"]).command_field == dimse.C_ECHO_RQ
    assert dimse.decode(COMMANDS["find"]).command_field == 0x0020


def _negotiate(body: bytes) -> None:
    """What the server does with a request body, short of the socket."""
    try:
        rq = pdu.decode_associate_rq(body)
    except ProtocolError:
        return
    for policy in POLICIES:
        if policy.rejection(rq, "ANY-SCP") is not None:
            continue
        ac = policy.acceptance(rq, b"ticket")
        again = pdu.decode_associate_ac(pdu.encode_associate_ac(ac)[6:])
        assert again.contexts == ac.contexts
        assert {r.context_id for r in ac.contexts} == {p.context_id for p in rq.contexts}


def _answer(data: bytes) -> None:
    """What the server builds from a command set: the response and, for a C-STORE, the file
    meta and name of the file it would write."""
    try:
        command = dimse.decode(data)
    except ProtocolError:
        return
    reply = dimse.response(
        command.command_field | 0x8000,
        command.message_id or 0,
        0,
        command.sop_class_uid,
        command.sop_instance_uid,
    )
    assert dimse.decode(reply).status == 0
    if command.command_field == dimse.C_STORE_RQ:
        file_meta(command.sop_class_uid, command.sop_instance_uid, EXPLICIT_VR_LE, "STORESCU")
        prefix(command.sop_class_uid)


@settings(max_examples=1000, deadline=None)
@given(body=associate_requests())
def test_drawn_request_negotiates_or_fails_cleanly(body: bytes) -> None:
    _negotiate(body)


@settings(max_examples=300, deadline=None)
@given(body=st.binary(max_size=400))
def test_random_request_negotiates_or_fails_cleanly(body: bytes) -> None:
    _negotiate(body)


@settings(max_examples=1000, deadline=None)
@given(command=command_sets())
def test_drawn_command_answered_or_fails_cleanly(command: bytes) -> None:
    _answer(command)


# --------------------------------------------------------------------------------------------
# the same bytes against a running server


class _Failures(logging.Handler):
    """Collects the association threads' last-resort log records (an escaped exception)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info is not None:
            self.records.append(record)


@contextlib.contextmanager
def _server(directory: Path | None) -> Iterator[tuple[StorageServer, _Failures]]:
    failures = _Failures()
    logger = logging.getLogger("fastpush.receive.server")
    logger.addHandler(failures)
    try:
        with StorageServer("127.0.0.1", 0, directory=directory, timeout=10) as server:
            yield server, failures
    finally:
        logger.removeHandler(failures)


def _pdata(command: bytes, dataset: bytes | None) -> bytes:
    """The command set in one PDV on context 1, then the dataset in one more, each in its own
    P-DATA-TF; an odd-length command is sent as it is."""
    out = b""
    for value, header in ((command, 0x03), (dataset, 0x02)):
        if value is None:
            continue
        body = struct.pack(">IBB", len(value) + 2, 1, header) + value
        out += struct.pack(">BxI", pdu.P_DATA_TF, len(body)) + body
    return out


def _assert_clean(failures: _Failures) -> None:
    assert not failures.records, [r.exc_info for r in failures.records]


def test_server_answers_every_request(tmp_path: Path) -> None:
    with _server(tmp_path) as (server, failures):

        @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
        @given(body=associate_requests())
        def run(body: bytes) -> None:
            with FakeSender(server.port) as sender:
                sender.send(struct.pack(">BxI", pdu.ASSOCIATE_RQ, len(body)) + body)
                answer = sender.recv_pdu()
            assert answer is not None, body
            assert answer[0] in (pdu.ASSOCIATE_AC, pdu.ASSOCIATE_RJ, pdu.ABORT), answer

        run()
        server.shutdown()  # waits for every association thread
    _assert_clean(failures)


@pytest.mark.parametrize("store_to", ["files", "nowhere"])
def test_server_answers_every_command(tmp_path: Path, store_to: str) -> None:
    out = tmp_path / "out"
    with _server(out if store_to == "files" else None) as (server, failures):

        @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
        @given(command=command_sets())
        def run(command: bytes) -> None:
            try:
                has_dataset = dimse.decode(command).has_dataset
            except ProtocolError:
                has_dataset = False
            with FakeSender(server.port) as sender:
                sender.associate(max_pdu=0)
                sender.send(_pdata(command, DATASET if has_dataset else None))
                answer = sender.recv_pdu()
                assert answer is not None, command
                assert answer[0] in (pdu.P_DATA_TF, pdu.ABORT), answer
                if answer[0] == pdu.P_DATA_TF:
                    reply = dimse.decode(
                        b"".join(bytes(p.data) for p in pdu.decode_pdvs(answer[1]))
                    )
                    assert reply.command_field & 0x8000
                    sender.send(pdu.encode_release_rq())
                    assert sender.recv_pdu() == (pdu.RELEASE_RP, bytes(4))

        run()
        server.shutdown()
    _assert_clean(failures)
    assert not list(out.glob(".*.part"))


def test_fake_sender_seed_is_stored(tmp_path: Path) -> None:
    """The live fuzz's unmutated C-STORE is stored: the fuzz reaches the storage path."""
    with _server(tmp_path) as (server, _failures), FakeSender(server.port) as sender:
        sender.associate(max_pdu=0)
        sender.send(_pdata(COMMANDS["store"], DATASET))
        answer = sender.recv_pdu()
        assert answer is not None and answer[0] == pdu.P_DATA_TF
        assert dimse.decode(b"".join(bytes(p.data) for p in pdu.decode_pdvs(answer[1]))).status == 0
    assert [p.name for p in tmp_path.iterdir()] == [f"CT.{STORED}"]


@pytest.mark.parametrize(
    ("offset", "title", "reason"),
    [(4, b" " * 16, 7), (20, b"STORE\\SCU".ljust(16), 3)],
    ids=["blank-called-ae", "backslash-in-calling-ae"],
)
def test_title_we_cannot_answer_is_rejected(
    tmp_path: Path, offset: int, title: bytes, reason: int
) -> None:
    """A title the A-ASSOCIATE-AC could not carry back is "not recognized": an A-ASSOCIATE-RJ
    (found by the fuzz above before it was handled: the thread failed, the sender saw a close)."""
    body = bytearray(REQUEST)
    body[offset : offset + 16] = title
    with _server(tmp_path) as (server, failures), FakeSender(server.port) as sender:
        sender.send(struct.pack(">BxI", pdu.ASSOCIATE_RQ, len(body)) + body)
        assert sender.recv_pdu() == (pdu.ASSOCIATE_RJ, bytes([0, 1, 1, reason]))
    _assert_clean(failures)
