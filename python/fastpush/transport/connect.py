"""Choosing a data path and opening a connection with it.

Both engines implement the same interface (``send_pdu``, ``send_message``, ``recv_pdu``,
``close``, ``timeout``): the Rust core ``fastpush._core.Transport`` and the pure-Python
``fastpush.transport.pure.PyTransport``. The association layer only ever talks to that interface.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Protocol, cast

from .engines import ENGINES as ENGINES

if TYPE_CHECKING:
    from collections.abc import Sequence

    from .tls import TLSOptions

try:
    from .. import _core
except ImportError:  # pragma: no cover - exercised only on installs without the extension
    _core = None  # type: ignore[assignment]


class Transport(Protocol):
    timeout: float | None

    @property
    def tls(self) -> tuple[str, str] | None:
        """``(protocol, cipher suite)`` of a TLS connection; ``None`` for plain TCP."""

    def send_pdu(self, data: bytes) -> None: ...
    def send_message(
        self,
        context_id: int,
        command: bytes,
        dataset: bytes | tuple[str, int, int] | None,
        max_pdu: int,
        convert: tuple[str, str] | None = None,
        verify: str | None = None,
    ) -> int: ...
    def recv_pdu(self, max_length: int) -> tuple[int, bytes]: ...
    def recv_command(
        self, max_length: int, contexts: Sequence[int], max_bytes: int
    ) -> tuple[int, int, bytes]: ...
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
    tls: TLSOptions | None = None,
) -> Transport:
    """Open a TCP connection and wrap it in the chosen engine's transport.

    With ``tls``, the TLS handshake runs here, bounded by ``timeout``, with ``host`` as the name
    the server's certificate must match; a failure raises ``fastpush.errors.TLSError``.
    """
    # Here rather than at import: `--version` reads default_engine, and needs no socket.
    import socket

    from .tls import describe_ssl_error, rust_config, ssl_context

    chosen = resolve_engine(engine)
    # getaddrinfo runs a str host through the idna codec, whose import (stringprep,
    # unicodedata: ~4 ms) a plain ASCII name or address does not need; it takes bytes as they
    # are (typeshed names str alone).
    address = cast("tuple[str, int]", (host.encode() if host.isascii() else host, port))
    if chosen == "rust":
        # Built before connecting: a bad CA or key file is not a network failure.
        config = None if tls is None else rust_config(tls)
        sock = socket.create_connection(address, timeout=connect_timeout)
        return _core.Transport(sock.detach(), timeout, nodelay, tls=config, server_name=host)
    context = None if tls is None else ssl_context(tls)
    sock = socket.create_connection(address, timeout=connect_timeout)
    if context is not None:
        import ssl

        sock.settimeout(timeout)
        try:
            sock = context.wrap_socket(sock, server_hostname=host)
        except ssl.SSLError as exc:
            sock.close()
            raise describe_ssl_error(exc) from exc
        except BaseException:
            sock.close()
            raise
    from .pure import PyTransport  # only for the engine that runs on it

    return PyTransport(sock, timeout, nodelay)
