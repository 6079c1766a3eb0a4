"""DICOM TLS options (PS3.15, BCP 195) and their two engines' configurations.

:class:`TLSOptions` is what users give (``Association(tls=...)``, ``push(tls=...)``, the CLI's
``--tls*``). This module turns it into a ``fastpush._core.TlsConfig`` (rustls, the fast path) or an
``ssl.SSLContext`` (the pure-Python path) with the same policy: TLS 1.2 minimum, 1.3 preferred,
the server's certificate checked against the CA file or the system store and against the host
name, an optional client certificate, and ``no_verify`` only when asked for, with a warning. Both
are built once per options value and reused, so later associations resume the TLS session.
Connecting is ``transport``'s business.
"""

from __future__ import annotations

import functools
import logging
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import TLSError

if TYPE_CHECKING:
    import ssl

    from .._core import TlsConfig

log = logging.getLogger(__name__)

_NO_VERIFY_WARNING = (
    "TLS certificate verification is OFF (--tls-no-verify): the connection is encrypted but the "
    "server is not authenticated; anyone in the path can read and alter what is sent"
)


@dataclass(frozen=True)
class TLSOptions:
    """How to secure a connection. All paths are PEM files.

    ``ca_file``: CA certificates to trust (default: the system store). ``cert_file`` and
    ``key_file``: our client certificate, for servers that require one. ``no_verify``: accept any
    server certificate and name — insecure, logged as a warning.
    """

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    no_verify: bool = False

    def __post_init__(self) -> None:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("a client certificate needs both a certificate file and a key file")
        for name in ("ca_file", "cert_file", "key_file"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, os.fspath(value))


def _warn_if_unverified(options: TLSOptions) -> None:
    if options.no_verify:
        log.warning(_NO_VERIFY_WARNING)


@functools.lru_cache(maxsize=8)
def rust_config(options: TLSOptions) -> TlsConfig:
    """The Rust engine's ``_core.TlsConfig`` for ``options`` (cached)."""
    from .. import _core

    _warn_if_unverified(options)
    return _core.TlsConfig(
        ca_file=options.ca_file,
        cert_file=options.cert_file,
        key_file=options.key_file,
        no_verify=options.no_verify,
    )


@functools.lru_cache(maxsize=8)
def ssl_context(options: TLSOptions) -> ssl.SSLContext:
    """The Python engine's ``ssl.SSLContext`` for ``options`` (cached)."""
    import ssl  # ~10 ms of start-up: loaded only by a TLS connection

    _warn_if_unverified(options)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        if options.no_verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        elif options.ca_file is not None:
            context.load_verify_locations(cafile=options.ca_file)
        else:
            context.load_default_certs()
        if options.cert_file is not None:
            context.load_cert_chain(options.cert_file, options.key_file)
    except (ssl.SSLError, OSError) as exc:  # a missing file too: configuration, not network
        raise TLSError(f"TLS error: cannot load certificates or key: {exc}") from exc
    return context


# OpenSSL verify codes (X509_V_ERR_*) worth a plain-words hint; the same words as the Rust core.
_VERIFY_HINTS = {
    9: "the server's certificate is not valid yet",
    10: "the server's certificate has expired",
    18: "the server's certificate is not signed by a trusted CA",
    19: "the server's certificate is not signed by a trusted CA",
    20: "the server's certificate is not signed by a trusted CA",
    21: "the server's certificate is not signed by a trusted CA",
    62: "the server's certificate does not match the host name",
    64: "the server's certificate does not match the host name",
}
_REFUSED_HINT = (
    "the server refused the TLS connection (does it require a client certificate we did not "
    "send, or not trust the one we did?)"
)
_REFUSING_ALERTS = (
    "CERTIFICATE_REQUIRED",
    "HANDSHAKE_FAILURE",
    "BAD_CERTIFICATE",
    "UNKNOWN_CA",
    "CERTIFICATE_UNKNOWN",
    "ACCESS_DENIED",
)


def describe_ssl_error(exc: OSError) -> TLSError:
    """An ``ssl`` failure as the :class:`TLSError` the Rust engine raises for the same cause."""
    import ssl

    if isinstance(exc, ssl.SSLEOFError):
        # OpenSSL reports the TLS 1.3 "certificate required" alert from a server that hangs up
        # right after sending it (DCMTK does) as a bare EOF.
        return TLSError(f"TLS error: {_REFUSED_HINT} (connection closed: {exc})")
    if isinstance(exc, ssl.SSLCertVerificationError):
        hint = _VERIFY_HINTS.get(exc.verify_code, "the server's certificate was refused")
        return TLSError(f"TLS error: {hint} ({exc.verify_message})")
    reason = str(getattr(exc, "reason", "") or "")
    if any(alert in reason for alert in _REFUSING_ALERTS):
        return TLSError(f"TLS error: {_REFUSED_HINT} ({reason})")
    return TLSError(f"TLS error: {exc}")
