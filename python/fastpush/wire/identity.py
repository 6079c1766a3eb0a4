"""User Identity negotiation (PS3.7 D.3.3.7): who we are, as the A-ASSOCIATE-RQ tells it.

Owns :class:`UserIdentity` and the bytes of its sub-items: the request (item type 0x58) and the
acceptor's server response (0x59). Where they sit in the user information item is ``pdu``'s
business; what the response means for the association is ``association``'s.

Secrets (the passcode, a Kerberos ticket, a SAML assertion, a JWT) never appear in a ``repr``,
a log line, an event or a report.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ProtocolError
from .limits import TOKEN_NAMES

RQ_ITEM = 0x58
AC_ITEM = 0x59

_RQ_HEAD = struct.Struct(">BBH")  # type, positive response requested, primary field length
_LENGTH = struct.Struct(">H")


class IdentityType(enum.IntEnum):
    """The kind of a user identity (PS3.7 D.3.3.7): a username, a username and passcode, or
    a Kerberos, SAML or JWT token."""

    USERNAME = 1
    USERNAME_PASSCODE = 2
    KERBEROS = 3
    SAML = 4
    JWT = 5


TOKEN_TYPES = {name: IdentityType[name.upper()] for name in TOKEN_NAMES}


@dataclass(frozen=True)
class UserIdentity:
    """One user identity to negotiate. ``primary`` is the username or the token; ``secondary``
    the passcode (username + passcode only). With ``positive_response`` we ask the acceptor to
    confirm it accepted the identity (for tokens, with a server response)."""

    kind: IdentityType
    """What the identity is: a username (with or without a passcode) or a token."""
    primary: bytes = field(repr=False)
    secondary: bytes = field(default=b"", repr=False)
    positive_response: bool = False

    def __post_init__(self) -> None:
        if not self.primary:
            raise ValueError("a user identity needs a username or a token")
        if self.secondary and self.kind is not IdentityType.USERNAME_PASSCODE:
            raise ValueError("only a username + passcode identity has a secondary field")
        for name, value in (("username or token", self.primary), ("passcode", self.secondary)):
            if len(value) > 0xFFFF:
                raise ValueError(f"the {name} is {len(value)} bytes; at most 65535 fit")

    @classmethod
    def user(
        cls, username: str, password: str | None = None, *, positive_response: bool = False
    ) -> UserIdentity:
        if password is None:
            return cls(IdentityType.USERNAME, username.encode(), b"", positive_response)
        kind = IdentityType.USERNAME_PASSCODE
        return cls(kind, username.encode(), password.encode(), positive_response)

    @classmethod
    def token(
        cls, kind: IdentityType, token: bytes, *, positive_response: bool = False
    ) -> UserIdentity:
        if kind not in (IdentityType.KERBEROS, IdentityType.SAML, IdentityType.JWT):
            raise ValueError(f"{kind.name} is not a token identity type")
        return cls(kind, token, b"", positive_response)

    def describe(self) -> str:
        """Safe for logs: the type, and the username (never a passcode or token)."""
        if self.kind in (IdentityType.USERNAME, IdentityType.USERNAME_PASSCODE):
            who = self.primary.decode("utf-8", "replace")
            extra = " with passcode" if self.kind is IdentityType.USERNAME_PASSCODE else ""
            return f"username {who!r}{extra}"
        return f"{self.kind.name} token ({len(self.primary)} bytes)"


def read_secret(path: str | Path, *, binary: bool = False) -> bytes:
    """A password or token from a file. Text secrets lose their trailing line break (what an
    editor or ``echo`` leaves); a binary one (a Kerberos ticket) is taken as it is."""
    data = Path(path).read_bytes()
    return data if binary else data.rstrip(b"\r\n")


def encode_rq(identity: UserIdentity) -> bytes:
    """The value of a 0x58 sub-item (without its 4-byte item header)."""
    head = _RQ_HEAD.pack(identity.kind, int(identity.positive_response), len(identity.primary))
    return head + identity.primary + _LENGTH.pack(len(identity.secondary)) + identity.secondary


def decode_rq(value: bytes | memoryview) -> UserIdentity:
    if len(value) < _RQ_HEAD.size:
        raise ProtocolError("truncated user identity sub-item")
    kind, positive, primary_length = _RQ_HEAD.unpack_from(value)
    end = _RQ_HEAD.size + primary_length
    if end + 2 > len(value):
        raise ProtocolError("user identity primary field runs past its sub-item")
    (secondary_length,) = _LENGTH.unpack_from(value, end)
    if end + 2 + secondary_length > len(value):
        raise ProtocolError("user identity secondary field runs past its sub-item")
    try:
        return UserIdentity(
            IdentityType(kind),
            bytes(value[_RQ_HEAD.size : end]),
            bytes(value[end + 2 : end + 2 + secondary_length]),
            bool(positive),
        )
    except ValueError as exc:
        raise ProtocolError(f"invalid user identity sub-item: {exc}") from exc


def encode_ac(server_response: bytes) -> bytes:
    """The value of a 0x59 sub-item."""
    return _LENGTH.pack(len(server_response)) + server_response


def decode_ac(value: bytes | memoryview) -> bytes:
    if len(value) < 2:
        raise ProtocolError("truncated user identity response sub-item")
    (length,) = _LENGTH.unpack_from(value)
    if 2 + length > len(value):
        raise ProtocolError("user identity server response runs past its sub-item")
    return bytes(value[2 : 2 + length])
