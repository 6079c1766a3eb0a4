"""Grouping scanned files into presentation contexts and associations.

One presentation context per (SOP Class, transfer syntax) the files need; at most 128 contexts
fit one association, so a larger plan becomes several associations.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .scan import FileItem

MAX_CONTEXTS = 128


@dataclass(frozen=True)
class AssociationPlan:
    """The contexts one association proposes and the files it carries, in input order."""

    contexts: tuple[tuple[str, tuple[str, ...]], ...]
    items: tuple[FileItem, ...]


def proposal(transfer_syntax: str) -> tuple[str, ...]:
    """The transfer syntaxes proposed for files in ``transfer_syntax``.

    Only the file's own syntax for now: the data is streamed verbatim, and an SCP that chose
    another syntax from a longer list (DCMTK prefers Explicit VR LE) would leave the file
    unsendable until conversion exists.
    """
    return (transfer_syntax,)


def plan(items: Sequence[FileItem]) -> list[AssociationPlan]:
    keys: dict[tuple[str, str], int] = {}
    for item in items:
        keys.setdefault((item.sop_class_uid, item.transfer_syntax), len(keys))
    plans = []
    ordered = list(keys)
    for start in range(0, len(ordered), MAX_CONTEXTS):
        chunk = set(ordered[start : start + MAX_CONTEXTS])
        plans.append(
            AssociationPlan(
                tuple((sop, proposal(ts)) for sop, ts in ordered[start : start + MAX_CONTEXTS]),
                tuple(i for i in items if (i.sop_class_uid, i.transfer_syntax) in chunk),
            )
        )
    return plans
