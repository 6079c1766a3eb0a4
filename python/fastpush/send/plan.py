"""Grouping scanned files into presentation contexts and associations, and choosing, once the
peer answered, which accepted context carries each file (``Routes``): verbatim when the file's
own syntax was accepted, else converted or decoded into another.

Per SOP class the plan proposes one context per transfer syntax the files are in (sent verbatim
when accepted: the fast path), plus, unless conversion is off, one fallback context with the
uncompressed syntaxes (by default Explicit VR LE, then Implicit VR LE, which every SCP must
accept). Separate contexts, as DCMTK's storescu does, because an SCP picks one syntax per
context by its own preference: offered a JPEG file's syntax and Explicit VR LE in one context,
storescp picks Explicit VR LE and the file would be decompressed for nothing.

At most 128 contexts fit one association, so a larger plan becomes several groups, each with
associations of its own.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ..dataset.convert import CONVERTIBLE
from ..dataset.item import Item, Pair
from ..errors import NoAcceptedContext
from ..uids import (
    DEFLATED_EXPLICIT_VR_LE,
    EXPLICIT_VR_BE,
    EXPLICIT_VR_LE,
    IMPLICIT_VR_LE,
    uid_name,
)

MAX_CONTEXTS = 128

SYNTAX_ALIASES = {
    "implicit": IMPLICIT_VR_LE,
    "explicit": EXPLICIT_VR_LE,
    "big": EXPLICIT_VR_BE,
    "deflated": DEFLATED_EXPLICIT_VR_LE,
}


def syntax_uid(name: str) -> str:
    """A transfer syntax UID from a UID or one of the aliases (implicit, explicit, big,
    deflated); only the uncompressed syntaxes can be produced, so only they are accepted."""
    uid = SYNTAX_ALIASES.get(name.strip().lower(), name.strip())
    if uid not in CONVERTIBLE:
        choices = ", ".join(SYNTAX_ALIASES)
        raise ValueError(f"{name!r} is not an uncompressed transfer syntax ({choices} or a UID)")
    return uid


@dataclass(frozen=True)
class Proposal:
    """Which transfer syntaxes to propose and send.

    ``conversion=False`` proposes only each file's own syntax (``--no-conversion``).
    ``prefer`` lists uncompressed syntaxes proposed first in the fallback context and, for
    uncompressed files, sent in preference to the file's own (``--prefer``).
    ``required_only`` keeps the fallback to Implicit VR LE, the syntax every SCP supports
    (``--required-only``).
    ``strict`` fails a non-conformant dataset (an odd-length value) that would otherwise be
    sent repaired with a warning (``--strict``).
    """

    conversion: bool = True
    prefer: tuple[str, ...] = ()
    required_only: bool = False
    strict: bool = False

    def fallback(self) -> tuple[str, ...]:
        """The syntaxes of the fallback context; empty when conversion is off."""
        if not self.conversion:
            return ()
        defaults = (IMPLICIT_VR_LE,) if self.required_only else (EXPLICIT_VR_LE, IMPLICIT_VR_LE)
        return tuple(dict.fromkeys((*self.prefer, *defaults)))

    def send_order(self, file_syntax: str) -> tuple[str, ...]:
        """Accepted syntaxes in the order a file in ``file_syntax`` would rather be sent in."""
        if not self.conversion:
            return (file_syntax,)
        own_first = (file_syntax, *self.fallback(), *sorted(CONVERTIBLE))
        if file_syntax in CONVERTIBLE:
            # Conversion between uncompressed syntaxes is lossless: preferences win.
            own_first = (*self.prefer, *own_first)
        return tuple(dict.fromkeys(own_first))


DEFAULT_PROPOSAL = Proposal()


@dataclass(frozen=True)
class Group:
    """The (SOP class, syntax) pairs one association serves and the files it carries, in input
    order."""

    pairs: tuple[Pair, ...]
    items: tuple[Item, ...]


def contexts(
    pairs: Iterable[Pair], proposal: Proposal = DEFAULT_PROPOSAL
) -> list[tuple[str, tuple[str, ...]]]:
    """The presentation contexts ``pairs`` need, in first-use order, without duplicates."""
    found: dict[tuple[str, tuple[str, ...]], None] = {}
    fallback = proposal.fallback()
    for sop_class, syntax in pairs:
        found.setdefault((sop_class, (syntax,)))
        if fallback:
            found.setdefault((sop_class, fallback))
    return list(found)


def fitting(pairs: Sequence[Pair], proposal: Proposal = DEFAULT_PROPOSAL) -> int:
    """How many of ``pairs``, from the first, one association can propose (at least one)."""
    count = 1
    while count < len(pairs) and len(contexts(pairs[: count + 1], proposal)) <= MAX_CONTEXTS:
        count += 1
    return count


def plan(items: Sequence[Item], proposal: Proposal = DEFAULT_PROPOSAL) -> list[Group]:
    """Split ``items`` into groups of at most ``MAX_CONTEXTS`` contexts, keeping the contexts of
    one (SOP class, syntax) pair together."""
    pairs = list(dict.fromkeys((i.sop_class_uid, i.transfer_syntax) for i in items))
    groups = []
    while pairs:
        count = fitting(pairs, proposal)
        chosen, pairs = pairs[:count], pairs[count:]
        wanted = set(chosen)
        members = tuple(i for i in items if (i.sop_class_uid, i.transfer_syntax) in wanted)
        groups.append(Group(tuple(chosen), members))
    return groups


@dataclass(frozen=True)
class AcceptedContext:
    context_id: int
    abstract_syntax: str
    transfer_syntax: str


class Routes:
    """Which accepted context carries each (SOP class, syntax): the first of
    ``proposal.send_order`` the peer accepted. The accepted contexts of an association never
    change, so each pair is routed once."""

    def __init__(self, accepted: Iterable[AcceptedContext], proposal: Proposal) -> None:
        self._by_class: dict[str, dict[str, AcceptedContext]] = {}
        for ctx in accepted:
            self._by_class.setdefault(ctx.abstract_syntax, {}).setdefault(ctx.transfer_syntax, ctx)
        self._proposal = proposal
        self._chosen: dict[Pair, AcceptedContext] = {}

    def route(self, sop_class: str, syntax: str) -> AcceptedContext:
        """The context for a dataset of ``sop_class`` in ``syntax``; ``NoAcceptedContext``
        (saying what was accepted instead) when none can carry it."""
        chosen = self._chosen.get((sop_class, syntax))
        if chosen is None:
            chosen = self._chosen[(sop_class, syntax)] = self._choose(sop_class, syntax)
        return chosen

    def any(self, sop_class: str) -> AcceptedContext:
        """Some accepted context of ``sop_class``, whatever its syntax (for C-ECHO)."""
        for ctx in self._by_class.get(sop_class, {}).values():
            return ctx
        raise NoAcceptedContext(f"no accepted presentation context for {uid_name(sop_class)}")

    def _choose(self, sop_class: str, syntax: str) -> AcceptedContext:
        by_syntax = self._by_class.get(sop_class, {})
        for candidate in self._proposal.send_order(syntax):
            if candidate in by_syntax:
                return by_syntax[candidate]
        offered = sorted(uid_name(s) for s in by_syntax)
        detail = f" (accepted only {', '.join(offered)})" if offered else ""
        raise NoAcceptedContext(
            f"no accepted presentation context for {uid_name(sop_class)} in {uid_name(syntax)}"
            f"{detail}"
        )
