"""What happened to each input: the per-file ``Result`` and the association ``Event``."""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field
from typing import Any


class Outcome(str, enum.Enum):
    STORED = "stored"
    WARNING = "warning"
    FAILED = "failed"
    SKIPPED = "skipped"

    def __str__(self) -> str:
        return self.value


@dataclass
class Result:
    """The one result every input gets: stored, stored with a warning, failed or skipped."""

    path: str | None
    outcome: Outcome
    sop_class_uid: str | None = None
    sop_instance_uid: str | None = None
    transfer_syntax: str | None = None
    status: int | None = None
    reason: str = ""
    bytes: int = 0
    seconds: float = 0.0
    association: int | None = None
    attempts: int = 0
    maybe_duplicate: bool = False
    """The file was fully sent but its response was lost: the peer may hold it already."""

    @property
    def ok(self) -> bool:
        return self.outcome in (Outcome.STORED, Outcome.WARNING)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["outcome"] = self.outcome.value
        data["seconds"] = round(self.seconds, 6)
        return data


class EventKind(str, enum.Enum):
    REQUESTING = "requesting"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    CONNECT_FAILED = "connect-failed"
    SENDING = "sending"
    RESPONSE = "response"
    RELEASED = "released"
    ABORTED = "aborted"


@dataclass(frozen=True)
class Event:
    """One step of an association's story, as fo-dicom's events and DCMTK's ``-v`` lines tell it."""

    kind: EventKind
    association: int
    message: str
    details: dict[str, Any] = field(default_factory=dict)
