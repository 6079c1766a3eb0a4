"""Sending converted: both transports put on the socket exactly ``frame_message(...,
convert=...)``, a bad dataset fails before a byte is sent, and the proposals and routing."""

from __future__ import annotations

import socket
import struct
from pathlib import Path

import pytest

from fastpush.dataset.item import Item
from fastpush.errors import ConversionError
from fastpush.send.plan import DEFAULT_PROPOSAL, Proposal, contexts, plan, syntax_uid
from fastpush.transport import pure as pytransport
from fastpush.uids import DEFLATED_EXPLICIT_VR_LE, EXPLICIT_VR_BE, EXPLICIT_VR_LE, IMPLICIT_VR_LE

from support.transports import ENGINES, drain, make_transport

CT = "1.2.840.10008.5.1.4.1.1.2"
JPEG = "1.2.840.10008.1.2.4.50"


def _implicit_dataset(pixels: int) -> bytes:
    """Patient name, Bits Allocated 16, then ``pixels`` bytes of OW Pixel Data."""
    out = struct.pack("<HHI", 0x0010, 0x0010, 4) + b"DOE^"
    out += struct.pack("<HHIH", 0x0028, 0x0100, 2, 16)
    body = bytes((i * 31) & 0xFF for i in range(pixels))
    return out + struct.pack("<HHI", 0x7FE0, 0x0010, len(body)) + body


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("target", [EXPLICIT_VR_BE, DEFLATED_EXPLICIT_VR_LE])
def test_converted_send_matches_frame_message(engine: str, target: str, tmp_path: Path) -> None:
    path = tmp_path / "ds.bin"
    path.write_bytes(b"x" * 10 + _implicit_dataset(5_000_000))
    region = (str(path), 10, path.stat().st_size - 10)
    convert = (IMPLICIT_VR_LE, target)
    ours, peer = socket.socketpair()
    thread, received = drain(peer)
    transport = make_transport(engine, ours)
    written = transport.send_message(3, b"command!", region, 16384, convert)
    transport.close()
    thread.join(10)
    peer.close()
    expected = pytransport.frame_message(3, b"command!", region, 16384, convert)
    assert written == len(expected)
    assert bytes(received) == expected


@pytest.mark.parametrize("engine", ENGINES)
def test_bad_dataset_fails_before_sending(engine: str) -> None:
    ours, peer = socket.socketpair()
    transport = make_transport(engine, ours)
    truncated = _implicit_dataset(100)[:-10]
    with pytest.raises(ConversionError, match="truncated"):
        transport.send_message(1, b"command!", truncated, 16384, (IMPLICIT_VR_LE, EXPLICIT_VR_LE))
    peer.setblocking(False)
    with pytest.raises(BlockingIOError):
        peer.recv(1)  # nothing was written
    transport.close()
    peer.close()


def _item(syntax: str, sop: str = CT) -> Item:
    return Item("f.dcm", sop, "1.2.3", syntax, 0, 10)


def contexts_for(
    items: list[Item], proposal: Proposal = DEFAULT_PROPOSAL
) -> list[tuple[str, tuple[str, ...]]]:
    return contexts([(i.sop_class_uid, i.transfer_syntax) for i in items], proposal)


def test_default_proposal_adds_one_fallback_context_per_sop_class() -> None:
    items = [_item(EXPLICIT_VR_LE), _item(IMPLICIT_VR_LE), _item(JPEG)]
    assert contexts_for(items) == [
        (CT, (EXPLICIT_VR_LE,)),
        (CT, (EXPLICIT_VR_LE, IMPLICIT_VR_LE)),
        (CT, (IMPLICIT_VR_LE,)),
        (CT, (JPEG,)),
    ]
    assert contexts_for(items, Proposal(conversion=False)) == [
        (CT, (EXPLICIT_VR_LE,)),
        (CT, (IMPLICIT_VR_LE,)),
        (CT, (JPEG,)),
    ]
    required = Proposal(required_only=True, prefer=(EXPLICIT_VR_BE,))
    assert contexts_for(items[:1], required) == [
        (CT, (EXPLICIT_VR_LE,)),
        (CT, (EXPLICIT_VR_BE, IMPLICIT_VR_LE)),
    ]


def test_send_order() -> None:
    assert Proposal().send_order(EXPLICIT_VR_LE)[:2] == (EXPLICIT_VR_LE, IMPLICIT_VR_LE)
    assert Proposal(prefer=(IMPLICIT_VR_LE,)).send_order(EXPLICIT_VR_LE)[0] == IMPLICIT_VR_LE
    # A compressed file keeps its own syntax first: decoding is not free, nor always lossless.
    assert Proposal(prefer=(IMPLICIT_VR_LE,)).send_order(JPEG)[0] == JPEG
    assert Proposal(conversion=False).send_order(JPEG) == (JPEG,)


def test_plan_splits_at_128_contexts() -> None:
    items = [_item(EXPLICIT_VR_LE, f"1.2.3.{n}") for n in range(100)]
    groups = plan(items)
    assert [len(contexts(g.pairs)) for g in groups] == [128, 72]
    assert sum(len(g.items) for g in groups) == 100


def test_syntax_aliases() -> None:
    assert syntax_uid("Implicit") == IMPLICIT_VR_LE
    assert syntax_uid(EXPLICIT_VR_BE) == EXPLICIT_VR_BE
    with pytest.raises(ValueError, match="not an uncompressed"):
        syntax_uid(JPEG)
