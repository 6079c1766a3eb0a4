"""What a storage server hands its user: :class:`Received` for each stored dataset, and the
types of the hooks (``on_store``, ``before_store``, ``identity_check``) it calls.

Lives apart from ``server`` so that ``association``, which builds ``Received``, needs nothing
from the module that imports it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from ..wire.identity import UserIdentity

if TYPE_CHECKING:
    from .._core import LiveDataset


@dataclass(frozen=True)
class Received:
    """One dataset received with C-STORE, as ``on_store`` sees it.

    ``path`` is the Part-10 file written (when the server has a ``directory``), else ``data``
    holds the dataset bytes as received (no file meta), in ``transfer_syntax``.
    """

    path: Path | None
    data: bytes | None
    sop_class_uid: str
    """The SOP Class UID the C-STORE command announced."""
    sop_instance_uid: str
    """The SOP Instance UID the command announced."""
    transfer_syntax: str
    calling_ae: str
    """The sender's AE title."""
    called_ae: str
    """The AE title the sender called us by."""
    size: int
    """The dataset's size in bytes, as received."""
    association_id: int
    """The number the server gave the association it came on."""
    message_id: int
    """The Message ID of the C-STORE request."""
    address: str = ""
    """The sender's IP address."""
    head: bytes = b""
    """The dataset's first bytes as received (up to 64 KiB, deflated ones still deflated),
    when the server read them; empty otherwise."""


@dataclass(frozen=True, eq=False)
class Incoming:
    """A dataset still being received, past its server's ``CutThrough.threshold`` bytes: what
    a hook needs to forward it while it arrives (``Transport.send_live``)."""

    dataset: LiveDataset
    path: Path
    """The file it is written into, under its temporary name."""
    offset: int
    """Where the dataset starts in the file (after the file meta)."""
    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax: str
    calling_ae: str
    called_ae: str
    address: str
    """The sender's IP address."""
    head: bytes
    """The dataset's first bytes (up to 64 KiB), as ``Received.head``."""


class CutThrough(Protocol):
    """A server's hook for datasets larger than ``threshold`` bytes (written to files):
    ``start`` when one passes the threshold (in the association's thread, between reads: keep
    it quick), ``end`` with the status it is answered with, before the answer goes (success
    means ``on_store`` took it), whatever became of it — also when it never arrived whole."""

    threshold: int

    def start(self, incoming: Incoming) -> None: ...

    def end(self, incoming: Incoming, status: int) -> None: ...


StoreHandler = Callable[[Received], "int | None"]
"""Called for each dataset received; returns a DIMSE status (None: success, 0x0000)."""

StoreGate = Callable[[str, str, str], "int | None"]
"""Called with the SOP class, SOP instance and calling AE of each C-STORE request before its
dataset is received: a status refuses it (the dataset is read and dropped), None lets it in."""

IdentityCheck = Callable[[UserIdentity | None, str], "bool | bytes"]
"""Called with the user identity a request carries (None without one) and its calling AE:
True accepts, False rejects, bytes accept and are sent back as the server response."""

__all__ = ["CutThrough", "IdentityCheck", "Incoming", "Received", "StoreGate", "StoreHandler"]
