"""What happened to each file in the router: ``RouteEvent`` and the JSONL journal of them.

The journal is for people and tools following a file through the router; durability rests on
the spool's folders, not on it. Each line is written whole with one ``write`` (a killed router
leaves complete lines).
"""

from __future__ import annotations

import enum
import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class Step(str, enum.Enum):
    RECEIVED = "received"
    """Spooled and queued for ``destination`` (one event per destination)."""
    DROPPED = "dropped"
    """``on_receive`` chose no destination: removed."""
    REFUSED = "refused"
    """Answered 0xA700 without being received: the spool is over its limit."""
    FORWARDED = "forwarded"
    RETRYING = "retrying"
    """A transient failure: it stays queued and goes again after a delay."""
    FAILED = "failed"
    """Refused for good by ``destination``: moved to ``failed/<destination>/``."""
    RECOVERED = "recovered"
    """Found in a queue at start-up, left by an earlier run."""

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class RouteEvent:
    """One step of one file's way through the router."""

    step: Step
    sop_instance_uid: str
    destination: str | None = None
    path: str | None = None
    sop_class_uid: str | None = None
    calling_ae: str | None = None
    status: int | None = None
    reason: str = ""
    bytes: int = 0
    maybe_duplicate: bool = False
    time: float = field(default_factory=time.time)

    def to_json(self) -> dict[str, Any]:
        data = dict(vars(self))  # flat fields: asdict()'s deep copy costs per file
        data["step"] = self.step.value
        return data


class Journal:
    """Appends events to a JSONL file; thread-safe."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._file = open(path, "a", encoding="utf-8", buffering=1)  # noqa: SIM115 - held open

    def write(self, event: RouteEvent) -> None:
        line = json.dumps(event.to_json(), separators=(",", ":")) + "\n"
        with self._lock:
            self._file.write(line)

    def close(self) -> None:
        with self._lock:
            self._file.close()
