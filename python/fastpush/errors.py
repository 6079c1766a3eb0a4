"""Exceptions fastpush raises. OS-level failures stay ``OSError`` subclasses
(``TimeoutError``, ``ConnectionResetError``); these cover DICOM protocol trouble."""

from __future__ import annotations


class FastpushError(Exception):
    """Base class of fastpush's own exceptions."""


class ProtocolError(FastpushError):
    """The peer sent something the protocol does not allow (bad PDU, oversized PDU, bad command)."""


class AssociationRejected(FastpushError):
    """The peer answered the A-ASSOCIATE-RQ with an A-ASSOCIATE-RJ.

    ``result``, ``source`` and ``reason`` are the rejection's fields as sent (PS3.8 table 9-21:
    result 1 permanent, 2 transient; source 1 service-user, 2 service-provider ACSE, 3
    service-provider presentation); ``description`` is the message, in words.
    """

    def __init__(self, result: int, source: int, reason: int, description: str) -> None:
        super().__init__(description)
        self.result = result
        self.source = source
        self.reason = reason

    @property
    def transient(self) -> bool:
        """Whether the peer called the rejection transient (worth another attempt later)."""
        return self.result == 2


class IdentityRejected(AssociationRejected):
    """Rejected, not for congestion, while we offered a user identity: taken as a refusal of
    the identity, so never retried, whatever result the peer chose (pynetdicom answers a bad
    password with rejected-transient): repeating a wrong password can lock an account.

    ``result``, ``source``, ``reason`` and ``description`` are as in ``AssociationRejected``."""

    @property
    def transient(self) -> bool:
        return False


class AssociationAborted(FastpushError):
    """The peer sent an A-ABORT (or an A-P-ABORT was diagnosed).

    ``source`` and ``reason`` are the abort's fields as sent (PS3.8 table 9-26: source 0
    service-user, 2 service-provider); ``description`` is the message, in words.
    """

    def __init__(self, source: int, reason: int, description: str) -> None:
        super().__init__(description)
        self.source = source
        self.reason = reason


class NoAcceptedContext(FastpushError):
    """No accepted presentation context can carry this SOP class and transfer syntax."""


class ConversionError(FastpushError):
    """A dataset cannot be converted to the transfer syntax the peer accepted (malformed, or
    compressed pixel data with no codec). Raised before any byte of the message is sent."""


class SourceError(FastpushError, OSError):
    """A dataset's source cannot be read as it was scanned: the file vanished, became
    unreadable, or is shorter than its dataset. Raised by both data paths before any byte of
    the message is sent, so the association is unharmed: it is that file's failure alone.

    An ``OSError`` carrying the errno and file name of the underlying error when there is one."""


class TLSError(FastpushError, OSError):
    """TLS failed: the handshake (an untrusted, expired or wrong-host certificate, a client
    certificate the server wanted), an alert from the server, or the TLS options themselves.

    An ``OSError`` like every connection failure, so code that handles a lost connection
    handles this one too; both data paths raise it with the same wording."""
