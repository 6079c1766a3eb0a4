"""The transports over real sockets: the Rust ``_core.Transport`` and the pure-Python
``PyTransport`` put identical bytes on the wire, read PDUs back with limits, and fail with the
documented exceptions. Includes a bounded-memory check for a 1 GB (sparse) file."""

from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import fastpush
from fastpush.errors import ProtocolError
from fastpush.transport import pure as pytransport

from support.transports import ENGINES, drain, make_transport, needs_core

try:
    from fastpush import _core
except ImportError:  # pragma: no cover - CI builds the extension
    _core = None  # type: ignore[assignment]


@pytest.fixture
def tcp_pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """A connected loopback TCP pair ``(ours, peer)``."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        ours = socket.create_connection(server.getsockname())
        peer, _ = server.accept()
    peer.settimeout(10)
    yield ours, peer
    ours.close()
    peer.close()


def pdu(pdu_type: int, body: bytes) -> bytes:
    return struct.pack(">BxI", pdu_type, len(body)) + body


@pytest.fixture(scope="module")
def dataset_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, bytes]:
    content = bytes((i * 7 + 3) & 0xFF for i in range(3_000_000 + 132))
    path = tmp_path_factory.mktemp("ds") / "file.dcm"
    path.write_bytes(content)
    return str(path), content


@pytest.mark.parametrize("max_pdu", [0, 16384, 4097])
def test_engines_write_identical_bytes(
    max_pdu: int, dataset_file: tuple[str, bytes], tcp_pair: Any
) -> None:
    path, content = dataset_file
    command = bytes(range(200))
    region = (path, 132, len(content) - 132)
    expected = pytransport.frame_message(1, command, region, max_pdu)
    engines = ["python"] + (["rust"] if _core is not None else [])
    for engine in engines:
        with socket.create_server(("127.0.0.1", 0)) as server:
            ours = socket.create_connection(server.getsockname())
            peer, _ = server.accept()
        with peer:
            thread, received = drain(peer)
            transport = make_transport(engine, ours)
            written = transport.send_message(1, command, region, max_pdu)
            transport.send_message(3, b"second", None, max_pdu)
            transport.close()
            thread.join(10)
        second = pytransport.frame_message(3, b"second", None, max_pdu)
        assert written == len(expected), engine
        assert bytes(received) == expected + second, engine


@pytest.mark.parametrize("engine", ENGINES)
def test_recv_pdu_round_trip(engine: str, tcp_pair: Any) -> None:
    ours, peer = tcp_pair
    transport = make_transport(engine, ours)
    body = bytes(range(256)) * 40
    stream = pdu(0x02, body) + pdu(0x06, b"\x00\x00\x00\x00") + pdu(0x05, b"")
    # Dribble it in pieces so the reader sees partial headers and bodies.
    for i in range(0, len(stream), 4001):
        peer.sendall(stream[i : i + 4001])
    assert transport.recv_pdu(len(body)) == (0x02, body)
    assert transport.recv_pdu(4) == (0x06, b"\x00\x00\x00\x00")
    assert transport.recv_pdu(0) == (0x05, b"")
    transport.send_pdu(pdu(0x05, b"\x00" * 4))
    assert peer.recv(100) == pdu(0x05, b"\x00" * 4)
    transport.close()


@pytest.mark.parametrize("engine", ENGINES)
def test_oversized_pdu_is_a_protocol_error(engine: str) -> None:
    ours, peer = socket.socketpair()
    with peer:
        transport = make_transport(engine, ours)
        peer.sendall(b"\x04\x00\xff\xff\xff\xff")  # 4 GiB announced, nothing follows
        with pytest.raises(ProtocolError, match="4294967295"):
            transport.recv_pdu(16384)
        transport.close()


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("sent", [b"", b"\x04\x00", b"\x04\x00\x00\x00\x00\x10abc"])
def test_peer_close_is_connection_reset(engine: str, sent: bytes) -> None:
    ours, peer = socket.socketpair()
    transport = make_transport(engine, ours)
    peer.sendall(sent)
    peer.close()
    with pytest.raises(ConnectionResetError, match="closed by peer"):
        transport.recv_pdu(1000)
    transport.close()


@pytest.mark.parametrize("engine", ENGINES)
def test_send_to_closed_peer_is_connection_error(engine: str) -> None:
    ours, peer = socket.socketpair()
    transport = make_transport(engine, ours)
    peer.close()
    with pytest.raises((BrokenPipeError, ConnectionResetError)):
        transport.send_message(1, b"cmd", b"x" * 1_000_000, 16384)
    transport.close()


@pytest.mark.parametrize("engine", ENGINES)
def test_peer_closing_mid_file_region_is_connection_error(engine: str, tmp_path: Path) -> None:
    # The error must be the connection's, not a failure to unmap the file behind it.
    path = tmp_path / "data"
    path.write_bytes(b"\x01" * 4_000_000)
    ours, peer = socket.socketpair()
    transport = make_transport(engine, ours)

    def read_a_little_then_close() -> None:
        peer.recv(65536)
        peer.close()

    reader = threading.Thread(target=read_a_little_then_close)
    reader.start()
    with pytest.raises((BrokenPipeError, ConnectionResetError)):
        transport.send_message(1, b"cmd", (str(path), 0, 4_000_000), 16384)
    reader.join()
    transport.close()


@pytest.mark.parametrize("engine", ENGINES)
def test_timeouts(engine: str) -> None:
    ours, peer = socket.socketpair()
    with peer:
        transport = make_transport(engine, ours, timeout=0.05)
        with pytest.raises(TimeoutError):
            transport.recv_pdu(100)
        # Nobody reads: the socket buffer fills and the send times out.
        with pytest.raises(TimeoutError):
            transport.send_message(1, b"cmd", bytes(64 << 20), 0)
        transport.timeout = 0
        assert transport.timeout == 0
        with pytest.raises(TimeoutError):
            transport.recv_pdu(100)
        transport.close()


@pytest.mark.parametrize("engine", ENGINES)
def test_timeout_property_and_close(engine: str) -> None:
    ours, peer = socket.socketpair()
    with peer:
        transport = make_transport(engine, ours, timeout=None)
        assert transport.timeout is None
        transport.timeout = 2.5
        assert transport.timeout == 2.5
        transport.timeout = None
        assert transport.timeout is None
        for bad in (-1.0, float("nan"), float("inf")):
            with pytest.raises(ValueError):
                transport.timeout = bad
        assert not transport.closed
        transport.close()
        transport.close()
        assert transport.closed
        with pytest.raises(OSError):
            transport.recv_pdu(10)
        with pytest.raises(OSError):
            transport.send_pdu(b"\x05\x00\x00\x00\x00\x00")
        assert peer.recv(10) == b""  # the fd really was closed


@needs_core
def test_rust_close_from_another_thread_wakes_a_blocked_receive() -> None:
    ours, peer = socket.socketpair()
    with peer:
        transport = _core.Transport(ours.detach(), None, True)
        errors: list[BaseException] = []
        started = threading.Event()

        def receive() -> None:
            started.set()
            try:
                transport.recv_pdu(100)
            except BaseException as e:
                errors.append(e)

        thread = threading.Thread(target=receive, daemon=True)
        thread.start()
        started.wait(5)
        transport.close()
        thread.join(10)
        assert not thread.is_alive()
        assert len(errors) == 1 and isinstance(errors[0], OSError)
        assert transport.closed


@needs_core
def test_rust_transport_rejects_bad_fd() -> None:
    with pytest.raises(ValueError):
        _core.Transport(-1)
    with pytest.raises(OSError):
        _core.Transport(2**30)


RSS_SCRIPT = textwrap.dedent(
    """
    import os, resource, socket, sys, threading
    from fastpush.transport import pure as pytransport
    engine, path, size = sys.argv[1], sys.argv[2], int(sys.argv[3])

    def peak_mb():
        # VmHWM is this process image's own peak; ru_maxrss (used where /proc is missing) also
        # carries the parent's peak across fork+exec, so from a big pytest it reads too high.
        try:
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) // 1024
        except OSError:
            pass
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024

    ours, peer = socket.socketpair()

    def discard():
        buf = bytearray(1 << 20)
        while peer.recv_into(buf):
            pass

    reader = threading.Thread(target=discard)
    reader.start()
    if engine == "rust":
        from fastpush import _core
        transport = _core.Transport(ours.detach(), 60.0, True)
    else:
        transport = pytransport.PyTransport(ours, 60.0, True)
    before = peak_mb()
    written = transport.send_message(1, b"c" * 200, (path, 132, size - 132), 16384)
    transport.close()
    reader.join()
    print(written, before, peak_mb())
    """
)


@pytest.mark.parametrize("engine", ENGINES)
def test_sending_a_1gb_file_keeps_rss_bounded(engine: str, tmp_path: Path) -> None:
    size = 1 << 30
    if engine == "rust" and _core.BUILD_PROFILE == "debug":
        size = 256 << 20
    path = tmp_path / "big.dcm"
    with path.open("wb") as f:
        f.truncate(size)  # sparse: cheap to create, but every page read is resident if mapped
    proc = subprocess.run(
        [sys.executable, "-c", RSS_SCRIPT, engine, str(path), str(size)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        # The child imports the same fastpush as this process, installed or not.
        env={**os.environ, "PYTHONPATH": str(Path(fastpush.__file__).parent.parent)},
    )
    assert proc.returncode == 0, proc.stderr
    written, before_mb, peak_mb = map(int, proc.stdout.split())
    fragments = -(-(size - 132) // 16378) + 1
    assert written == size - 132 + 200 + 12 * fragments
    assert peak_mb < 100, f"peak RSS {peak_mb} MB (before sending: {before_mb} MB)"


class _Interrupted(Exception):
    pass


@pytest.mark.parametrize("engine", ENGINES)
def test_signal_interrupts_a_wait_without_timeout(engine: str) -> None:
    """A signal handler's exception surfaces from a receive blocked with no timeout (Ctrl-C)."""
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals are delivered to the main thread")

    def on_alarm(signum: int, frame: object) -> None:
        raise _Interrupted

    ours, peer = socket.socketpair()
    old = signal.signal(signal.SIGALRM, on_alarm)
    try:
        with peer:
            transport = make_transport(engine, ours, timeout=None)
            signal.setitimer(signal.ITIMER_REAL, 0.05)
            with pytest.raises(_Interrupted):
                transport.recv_pdu(100)
            transport.close()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
