"""Both data paths side by side, for tests that run the same thing through the Rust core's
``_core.Transport`` and the pure-Python ``PyTransport``: the engine parameters, a transport on
a socket, and a thread that drains what the peer end receives."""

from __future__ import annotations

import socket
import threading
from typing import Any

import pytest

from fastpush.transport import pure as pytransport

try:
    from fastpush import _core
except ImportError:  # pragma: no cover - CI builds the extension
    _core = None  # type: ignore[assignment]

__all__ = ["ENGINES", "drain", "make_transport", "needs_core"]

needs_core = pytest.mark.skipif(
    _core is None, reason="fastpush._core is not built (run `pip install -e .` to build it)"
)

ENGINES = [pytest.param("python", id="python"), pytest.param("rust", id="rust", marks=needs_core)]


def make_transport(engine: str, sock: socket.socket, timeout: float | None = 5.0) -> Any:
    if engine == "rust":
        return _core.Transport(sock.detach(), timeout, True)
    return pytransport.PyTransport(sock, timeout, True)


def drain(sock: socket.socket) -> tuple[threading.Thread, bytearray]:
    """Read everything the peer receives until EOF, in a thread."""
    received = bytearray()

    def run() -> None:
        while chunk := sock.recv(1 << 16):
            received.extend(chunk)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, received
