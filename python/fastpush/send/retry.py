"""Which failures are worth another attempt, and how long to wait before it.

Transient: the connection could not be made or was lost, the peer aborted or answered too late,
it rejected the association as transient or congested, or it answered Out of Resources (A7xx) or
Resource Limitation (0213). Everything else (a refused SOP class, Cxxx, a permanent rejection, a
refused user identity, a TLS failure: an untrusted certificate stays untrusted) is permanent:
trying again would only get the same answer.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import AssociationAborted, AssociationRejected, ProtocolError, TLSError
from ..wire import dimse
from .failure import Failure

_CONGESTION = (3, 1)  # source: presentation service-provider; reason: temporary congestion


@dataclass(frozen=True)
class RetryPolicy:
    """``retries`` further attempts after the first, ``backoff`` doubling up to ``max_backoff``."""

    retries: int = 3
    backoff: float = 0.5
    max_backoff: float = 30.0

    def __post_init__(self) -> None:
        if self.retries < 0 or self.backoff < 0 or self.max_backoff < 0:
            raise ValueError("retries and backoff must not be negative")

    def allows(self, attempts: int) -> bool:
        return attempts <= self.retries

    def delay(self, attempts: int) -> float:
        """Seconds to wait after the ``attempts``-th failed attempt."""
        return float(min(self.max_backoff, self.backoff * 2 ** (attempts - 1)))


def retryable(
    failure: Failure, status: int | None = None, error: BaseException | None = None
) -> bool:
    """Whether an item that failed this way may succeed on another attempt: the one place
    this is decided. A file lost in transfer goes again on a fresh association; one the peer
    refused goes again only if the refusal was transient; the input's own faults, refused
    contexts and cancels never do."""
    if failure is Failure.TRANSFER:
        return True
    if failure is Failure.STATUS:
        return transient_status(status)
    if failure is Failure.ASSOCIATION:
        return error is not None and transient_error(error)
    return False


def transient_status(status: int | None) -> bool:
    return status is not None and (
        dimse.out_of_resources(status) or status == dimse.RESOURCE_LIMITATION
    )


def transient_error(exc: BaseException) -> bool:
    """A failure to open or keep an association that a later attempt may not meet."""
    if isinstance(exc, AssociationRejected):
        return exc.transient or (exc.source, exc.reason) == _CONGESTION
    if isinstance(exc, TLSError):
        return False
    return isinstance(exc, (OSError, AssociationAborted, ProtocolError))
