"""Choosing a data path and opening a connection with it.

Both engines implement the same interface (``send_pdu``, ``send_message``, ``recv_pdu``,
``close``, ``timeout``): the Rust core ``fastpush._core.Transport`` and the pure-Python
``fastpush.pytransport.PyTransport``. The association layer only ever talks to that interface.
"""

from __future__ import annotations

import os
import socket
from typing import Protocol

from .pytransport import PyTransport

try:
    from . import _core
except ImportError:  # pragma: no cover - exercised only on installs without the extension
    _core = None  # type: ignore[assignment]

ENGINES = ("rust", "python")


class Transport(Protocol):
    timeout: float | None

    def send_pdu(self, data: bytes) -> None: ...
    def send_message(
        self,
        context_id: int,
        command: bytes,
        dataset: bytes | tuple[str, int, int] | None,
        max_pdu: int,
        convert: tuple[str, str] | None = None,
    ) -> int: ...
    def recv_pdu(self, max_length: int) -> tuple[int, bytes]: ...
    def close(self) -> None: ...


def default_engine() -> str:
    """``FASTPUSH_ENGINE`` if set, else Rust when the extension is built, else Python."""
    chosen = os.environ.get("FASTPUSH_ENGINE", "").strip().lower()
    if chosen:
        return resolve_engine(chosen)
    return "rust" if _core is not None else "python"


def resolve_engine(engine: str | None) -> str:
    if engine is None:
        return default_engine()
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}: choose one of {', '.join(ENGINES)}")
    if engine == "rust" and _core is None:
        raise ValueError("the Rust engine is not built in this install; use --engine python")
    return engine


def connect(
    host: str,
    port: int,
    *,
    engine: str | None = None,
    connect_timeout: float | None = 10.0,
    timeout: float | None = None,
    nodelay: bool = True,
) -> Transport:
    """Open a TCP connection and wrap it in the chosen engine's transport."""
    chosen = resolve_engine(engine)
    sock = socket.create_connection((host, port), timeout=connect_timeout)
    if chosen == "rust":
        return _core.Transport(sock.detach(), timeout, nodelay)
    return PyTransport(sock, timeout, nodelay)
