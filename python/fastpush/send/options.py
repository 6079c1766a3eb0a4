"""What a connection to a storage SCP needs, as one typed value: :class:`ConnectionOptions`.

``Association`` is opened with one; ``StoreClient``, ``Push``, ``push``, ``iter_push``, ``echo``,
the cluster push and the router's forwarders pass one down instead of loose keyword arguments.
The public calls still take its fields as keyword arguments (``push(..., calling_ae="X")``),
typed by :class:`ConnectionKeywords` (``**options: Unpack[ConnectionKeywords]``), and
:func:`connection_options` makes the value from an optional ``connection=`` and those keywords
(a keyword replaces the field of the same name).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TypedDict

from ..transport.tls import TLSOptions
from ..wire import pdu
from ..wire.identity import UserIdentity


@dataclass(frozen=True)
class ConnectionOptions:
    """How to connect to a storage SCP and negotiate an association with it.

    ``calling_ae`` is our AE title and ``called_ae`` the peer's (checked when made: at most 16
    characters of the default repertoire). ``engine`` picks the data path (``"rust"``,
    ``"python"``; None: the Rust core when it is built). ``max_pdu`` is our Maximum Length
    Received (0: no limit) and ``max_send_pdu`` lowers the PDU length we send with below the
    peer's maximum. ``connect_timeout`` bounds making the connection, ``acse_timeout`` each
    association message (request, release) and ``dimse_timeout`` each response (seconds, None:
    no limit). ``tls`` (:class:`~fastpush.TLSOptions`) makes the connection over TLS;
    ``identity`` (:class:`~fastpush.UserIdentity`) is offered in the association request.
    """

    calling_ae: str = "FASTPUSH"
    """Our AE title."""
    called_ae: str = "ANY-SCP"
    """The peer's AE title."""
    engine: str | None = None
    """The data path: ``"rust"``, ``"python"``, or None for the Rust core when built."""
    max_pdu: int = pdu.REQUESTOR_MAX_PDU
    """Our Maximum Length Received (0: no limit)."""
    max_send_pdu: int | None = None
    """The largest PDU we send, when lower than the peer's maximum."""
    connect_timeout: float | None = 10.0
    """Seconds to make the connection (None: no limit)."""
    acse_timeout: float | None = 30.0
    """Seconds to wait for each association message (None: no limit)."""
    dimse_timeout: float | None = 60.0
    """Seconds to wait for each response (None: no limit)."""
    tls: TLSOptions | None = None
    """Connect over TLS with these options."""
    identity: UserIdentity | None = None
    """The user identity offered in the association request."""

    def __post_init__(self) -> None:
        # Checked now so that a bad title fails before any connection is made.
        pdu.encode_ae_title(self.calling_ae)
        pdu.encode_ae_title(self.called_ae)


class ConnectionKeywords(TypedDict, total=False):
    """The fields of :class:`ConnectionOptions` as keyword arguments of the public calls."""

    calling_ae: str
    called_ae: str
    engine: str | None
    max_pdu: int
    max_send_pdu: int | None
    connect_timeout: float | None
    acse_timeout: float | None
    dimse_timeout: float | None
    tls: TLSOptions | None
    identity: UserIdentity | None


def connection_options(
    connection: ConnectionOptions | None, keywords: ConnectionKeywords
) -> ConnectionOptions:
    """``connection`` (default: the defaults) with the fields named in ``keywords`` replaced."""
    if connection is None:
        return ConnectionOptions(**keywords)
    return dataclasses.replace(connection, **keywords) if keywords else connection
