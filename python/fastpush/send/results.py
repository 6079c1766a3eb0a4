"""What happened to each input: the per-file ``Result`` and the association ``Event``."""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field
from typing import Any

from ..dataset.item import Item, Skip
from .failure import Failure
from .retry import retryable


class Outcome(str, enum.Enum):
    """How an input ended: ``stored``, stored with a ``warning``, ``failed`` or ``skipped``."""

    STORED = "stored"
    WARNING = "warning"
    FAILED = "failed"
    SKIPPED = "skipped"

    def __str__(self) -> str:
        return self.value


@dataclass
class Result:
    """The one result every input gets: stored, stored with a warning, failed or skipped.

    ``transfer_syntax`` is the file's; ``sent_syntax`` the one chosen to send it in (None
    when no accepted context could carry it), different when the peer accepted another syntax
    and the file was converted or decompressed.
    """

    path: str | None
    """The input's path (None for bytes or a Dataset)."""
    outcome: Outcome
    """How it ended."""
    sop_class_uid: str | None = None
    """Its SOP Class UID, when known."""
    sop_instance_uid: str | None = None
    """Its SOP Instance UID, when known."""
    transfer_syntax: str | None = None
    """The transfer syntax of the input."""
    status: int | None = None
    """The DIMSE status the peer answered, when it answered."""
    reason: str = ""
    """Why it failed, was skipped or warned, in words; empty when stored."""
    bytes: int = 0
    """The size of its dataset in bytes."""
    seconds: float = 0.0
    """Seconds its last attempt took, from sending the command to the response."""
    association: int | None = None
    """The number of the association that sent it last (None: not sent)."""
    attempts: int = 0
    """How many times it was sent (retries included)."""
    maybe_duplicate: bool = False
    """The file was fully sent but its response was lost: the peer may hold it already."""
    sent_syntax: str | None = None
    """The transfer syntax it was sent in (None when no accepted context could carry it)."""
    failure: Failure | None = None
    """Set on every result that is not ``stored`` or ``warning``."""
    notes: list[str] = field(default_factory=list)
    """What was noticed on the way without changing the outcome (e.g. file meta UIDs that
    disagree with the dataset's, which are the ones sent)."""
    committed: bool | None = None
    """Whether the peer committed to keeping it (Storage Commitment): None when not asked;
    False comes with ``failure`` ``commitment`` and the reason."""
    retryable: bool = field(default=False, repr=False)
    """Whether another attempt may succeed: set with ``failure`` by ``retry.classify``."""

    @classmethod
    def of(cls, item: Item, outcome: Outcome = Outcome.FAILED, **fields: Any) -> Result:
        """A result for ``item``: its identity, syntax, size and notes, and ``fields``."""
        return cls(
            item.path,
            outcome,
            item.sop_class_uid,
            item.sop_instance_uid,
            item.transfer_syntax,
            bytes=item.length,
            notes=list(item.notes),
            **fields,
        )

    @classmethod
    def skipped(cls, skip: Skip) -> Result:
        """The result of an input that will not be sent (not DICOM, unreadable...)."""
        return cls(skip.path, Outcome.SKIPPED).fail(
            Failure.SOURCE, skip.reason, outcome=Outcome.SKIPPED
        )

    @property
    def ok(self) -> bool:
        return self.outcome in (Outcome.STORED, Outcome.WARNING)

    def fail(
        self,
        failure: Failure,
        reason: str,
        *,
        status: int | None = None,
        error: BaseException | None = None,
        outcome: Outcome = Outcome.FAILED,
    ) -> Result:
        """Mark this result not stored, for ``reason``; whether to retry follows from the
        failure (``retry.retryable``). Returns the result, for chaining."""
        self.outcome = outcome
        self.failure = failure
        self.reason = reason
        self.status = status
        self.retryable = retryable(failure, status, error)
        return self

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["outcome"] = self.outcome.value
        data["failure"] = None if self.failure is None else self.failure.value
        del data["retryable"]
        data["seconds"] = round(self.seconds, 6)
        return data


class EventKind(str, enum.Enum):
    """What step of an association's story an ``Event`` tells."""

    REQUESTING = "requesting"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    CONNECT_FAILED = "connect-failed"
    SENDING = "sending"
    RESPONSE = "response"
    RELEASED = "released"
    ABORTED = "aborted"
    WAITING = "waiting"
    """The client waits before another attempt to open an association (association 0)."""


@dataclass(frozen=True)
class Event:
    """One step of an association's story, as fo-dicom's events and DCMTK's ``-v`` lines tell it."""

    kind: EventKind
    """What step this is."""
    association: int
    """The number of the association it happened on (0: none yet)."""
    message: str
    """The log line, as DCMTK's ``-v`` would print it."""
    details: dict[str, Any] = field(default_factory=dict)
    """The step's facts as data (status, path, bytes, peer_max_pdu...)."""
