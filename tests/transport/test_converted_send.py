"""Sending converted: both transports put on the socket exactly ``frame_message(...,
convert=...)``, and a bad dataset fails before a byte is sent."""

from __future__ import annotations

import socket
import struct
from pathlib import Path

import pytest

from fastpush.errors import ConversionError
from fastpush.transport import pure as pytransport
from fastpush.uids import DEFLATED_EXPLICIT_VR_LE, EXPLICIT_VR_BE, EXPLICIT_VR_LE, IMPLICIT_VR_LE

from support.transports import ENGINES, drain, make_transport


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
