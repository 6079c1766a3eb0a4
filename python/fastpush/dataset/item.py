"""One input, described once: the ``Item`` that flows from the scan through planning, the client
and the association to the transport.

An input is a path, Part-10 bytes or a pydicom Dataset. ``scan.to_item`` turns any of them into
an ``Item`` — its identity (SOP Class and Instance UID, from the dataset itself), its transfer
syntax and where its dataset bytes are — or into a ``Skip`` saying why it cannot be sent.
Nothing downstream looks at the input again.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeAlias

if TYPE_CHECKING:
    from pydicom import Dataset

Source: TypeAlias = "bytes | tuple[str, int, int]"
"""A dataset in memory, or ``(path, offset, length)`` of a file: what a transport sends."""

Pair = tuple[str, str]
"""(SOP Class UID, transfer syntax UID)"""


@dataclass(frozen=True)
class Item:
    """A dataset ready to send: ``length`` bytes from ``offset`` of the file at ``path``, or of
    ``data`` when it is held in memory (Part-10 bytes, or a Dataset encoded once)."""

    path: str | None
    sop_class_uid: str
    """Its SOP Class UID (the dataset's, not the file meta's)."""
    sop_instance_uid: str
    """Its SOP Instance UID (the dataset's)."""
    transfer_syntax: str
    """The transfer syntax the dataset is encoded in."""
    offset: int
    length: int
    data: bytes | None = None
    notes: tuple[str, ...] = ()
    """What the scan noticed without refusing it (e.g. file meta UIDs that disagree with the
    dataset's)."""

    @property
    def pair(self) -> Pair:
        return self.sop_class_uid, self.transfer_syntax

    @property
    def source(self) -> Source:
        if self.data is None:
            assert self.path is not None
            return self.path, self.offset, self.length
        if self.offset == 0 and self.length == len(self.data):
            return self.data
        return self.data[self.offset : self.offset + self.length]

    @property
    def name(self) -> str:
        """How logs and messages name it."""
        return self.path or self.sop_instance_uid


@dataclass(frozen=True)
class Skip:
    """An input that will not be sent, and why (``path`` is None for an in-memory input)."""

    path: str | None
    reason: str


Storable: TypeAlias = "str | os.PathLike[str] | bytes | Dataset | Item"
