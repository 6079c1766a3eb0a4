"""The kinds of failure a result can carry (``Result.failure``)."""

from __future__ import annotations

import enum


class Failure(str, enum.Enum):
    """Why a result is not ``stored``: the one fact retries and the exit code are decided from."""

    ASSOCIATION = "association"
    """No association could be opened (or kept open) to send it: nothing was sent."""
    REFUSED = "refused"
    """The association has no accepted context for its SOP class and transfer syntax."""
    SOURCE = "source"
    """The input itself: not DICOM, unreadable, vanished or changed since the scan, or not
    convertible to what the peer accepted. Nothing was sent; another attempt would not help."""
    TRANSFER = "transfer"
    """The connection was lost while it was sent or answered; the association is gone."""
    STATUS = "status"
    """The peer answered with a failure status."""
    CANCELLED = "cancelled"
    """The push was cancelled before it was sent."""
    COMMITMENT = "commitment"
    """Stored, but the peer did not commit to keeping it (Storage Commitment asked for): it
    reported a failure, never reported, or could not be asked."""

    def __str__(self) -> str:
        return self.value
