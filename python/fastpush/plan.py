"""Grouping scanned files into presentation contexts and associations.

One presentation context per (SOP Class, transfer syntax) the files need; at most 128 contexts
fit one association, so a larger plan becomes several groups, each with its own associations.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .scan import FileItem

MAX_CONTEXTS = 128

Pair = tuple[str, str]
"""(SOP Class UID, transfer syntax UID)"""


@dataclass(frozen=True)
class Group:
    """The pairs one association proposes and the files it carries, in input order."""

    pairs: tuple[Pair, ...]
    items: tuple[FileItem, ...]


def proposal(transfer_syntax: str) -> tuple[str, ...]:
    """The transfer syntaxes proposed for files in ``transfer_syntax``.

    Only the file's own syntax for now: the data is streamed verbatim, and an SCP that chose
    another syntax from a longer list (DCMTK prefers Explicit VR LE) would leave the file
    unsendable until conversion exists.
    """
    return (transfer_syntax,)


def contexts(pairs: Sequence[Pair]) -> list[tuple[str, tuple[str, ...]]]:
    """The presentation contexts an association proposes for ``pairs``."""
    return [(sop_class, proposal(syntax)) for sop_class, syntax in pairs]


def plan(items: Sequence[FileItem]) -> list[Group]:
    keys: dict[Pair, None] = {}
    for item in items:
        keys.setdefault((item.sop_class_uid, item.transfer_syntax), None)
    ordered = list(keys)
    groups = []
    for start in range(0, len(ordered), MAX_CONTEXTS):
        pairs = tuple(ordered[start : start + MAX_CONTEXTS])
        wanted = set(pairs)
        members = tuple(i for i in items if (i.sop_class_uid, i.transfer_syntax) in wanted)
        groups.append(Group(pairs, members))
    return groups
