"""Routing rules: which destinations a received file goes to, decided from how it came and
from its header.

A :class:`Rule` matches on the calling AE title, the called AE title, the sender's address
(CIDR), the SOP Class, and top-level header elements named by keyword or ``(gggg,eeee)``; it
sends the file to one or more destinations, or drops it. :class:`Rules` holds rules in order
with two policies: ``first_match`` (True: the first rule that matches decides; False: every rule
that matches adds its destinations, and a matching ``drop`` rule vetoes them all) and
``unmatched`` (where a file no rule matched goes: nowhere, or the destinations named).

Matching reads the header only: the top-level elements the rules name, walked with the bounded
header walker from the dataset's first bytes (the head the server read, the spool file past it),
stopping past the largest tag named: never the pixel data, never inside a sequence. A file whose
header cannot be walked matches no rule that names an element.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import logging
import math
import os
import re
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeAlias

from pydicom._uid_dict import UID_dictionary
from pydicom.datadict import dictionary_VR, tag_for_keyword

from ..dataset.header import (
    DEFLATED_SYNTAXES,
    BufferSource,
    FileSource,
    InflatedSource,
    Source,
    Unreadable,
    read_top_elements,
)
from ..receive.received import Received
from ..uids import EXPLICIT_VR_BE, IMPLICIT_VR_LE

log = logging.getLogger("fastpush.route.rules")

CONNECTION_KEYS = ("calling_ae", "called_ae", "address", "sop_class")
"""What a rule matches besides header elements."""

NUMERIC_VRS = frozenset({"IS", "DS", "US", "SS", "UL", "SL", "FL", "FD", "SV", "UV"})
_BINARY = {"US": "H", "SS": "h", "UL": "I", "SL": "i", "FL": "f", "FD": "d", "SV": "q", "UV": "Q"}
_GLOB = re.compile(r"[*?\[]")
_TAG = re.compile(r"\(?([0-9A-Fa-f]{4}),?([0-9A-Fa-f]{4})\)?")
# Bytes of the spool file read past the head, at most, to reach the elements rules name.
_BUDGET = 1 << 20
_UNMATCHED = "unmatched"

Plain: TypeAlias = "str | int | float | bool | Sequence[str] | Mapping[str, object]"
"""A condition as a config file writes it (see :meth:`Match.of`)."""


@dataclass(frozen=True)
class Match:
    """A condition on one value; every part given must hold.

    ``equals``: the value is one of these (exactly, case-sensitive); ``glob``: it fits one of
    these shell patterns (``*``, ``?``, ``[...]``, case-sensitive); ``regex``: the expression is
    found in it (``re.search``; anchor it with ``^...$``); ``eq``, ``gt``, ``ge``, ``lt``,
    ``le``: numeric comparisons, for elements whose VR is numeric (IS, DS, US, SS, UL, SL, FL,
    FD, SV, UV); ``present``: True, the element is there, False, it is not; ``cidr``: the
    sender's address is in one of these networks (for ``address``). A multi-valued element
    matches when the whole value or any one of its values does.
    """

    equals: tuple[str, ...] = ()
    glob: tuple[str, ...] = ()
    regex: str | None = None
    eq: float | None = None
    gt: float | None = None
    ge: float | None = None
    lt: float | None = None
    le: float | None = None
    present: bool | None = None
    cidr: tuple[str, ...] = ()
    _pattern: re.Pattern[str] | None = field(default=None, init=False, repr=False, compare=False)
    _networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = field(
        default=(), init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        for name in ("equals", "glob", "cidr"):
            value = getattr(self, name)
            if isinstance(value, str):
                object.__setattr__(self, name, (value,))
            elif not all(isinstance(v, str) for v in value):
                raise ValueError(f"{name} takes text or a list of texts")
            else:
                object.__setattr__(self, name, tuple(value))
        for name in ("eq", "gt", "ge", "lt", "le"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, (int, float))
            ):
                raise ValueError(f"{name} takes a number, not {value!r}")
        if self.present is not None and not isinstance(self.present, bool):
            raise ValueError(f"present takes true or false, not {self.present!r}")
        if self.regex is not None:
            try:
                object.__setattr__(self, "_pattern", re.compile(self.regex))
            except re.error as exc:
                raise ValueError(f"regex {self.regex!r} does not compile: {exc}") from None
        try:
            networks = tuple(ipaddress.ip_network(c, strict=False) for c in self.cidr)
        except ValueError as exc:
            raise ValueError(f"cidr: {exc}") from None
        object.__setattr__(self, "_networks", networks)
        if not self.parts():
            raise ValueError("a condition needs at least one of " + ", ".join(_PARTS))

    @classmethod
    def of(cls, value: Plain | Match) -> Match:
        """A condition from its plain form: text is ``equals`` (``glob`` when it has ``*``,
        ``?`` or ``[``), a list of texts any of them, a number ``eq``, true or false
        ``present``, a table the parts by name (``{ regex = "^CT" }``, ``{ gt = 5 }``)."""
        if isinstance(value, Match):
            return value
        if isinstance(value, bool):
            return cls(present=value)
        if isinstance(value, (int, float)):
            return cls(eq=value)
        if isinstance(value, str):
            return cls(glob=(value,)) if _GLOB.search(value) else cls(equals=(value,))
        if isinstance(value, Mapping):
            unknown = sorted(set(value) - set(_PARTS))
            if unknown:
                raise ValueError(f"unknown condition {unknown[0]!r} (use {', '.join(_PARTS)})")
            return cls(**value)  # type: ignore[arg-type]
        if isinstance(value, Sequence) and value and all(isinstance(v, str) for v in value):
            texts = tuple(value)
            return cls(glob=texts) if any(_GLOB.search(t) for t in texts) else cls(equals=texts)
        raise ValueError(
            f"cannot match on {value!r}: give text, a list of texts, a number, "
            "true/false or a table"
        )

    def parts(self) -> list[str]:
        """The parts given, by name."""
        return [p for p in _PARTS if getattr(self, p) not in (None, ())]

    @property
    def numeric(self) -> bool:
        return any(getattr(self, p) is not None for p in ("eq", "gt", "ge", "lt", "le"))

    def describe(self) -> str:
        """The condition in a few words, for the routing table."""
        words = []
        for part in self.parts():
            value = getattr(self, part)
            shown = " | ".join(map(repr, value)) if isinstance(value, tuple) else repr(value)
            words.append(f"{part} {shown}")
        return " and ".join(words)

    def test_text(self, values: Sequence[str], numbers: Sequence[float]) -> bool:
        """Whether a value that is there matches: ``values`` its texts (whole, then each one
        of a multi-valued element), ``numbers`` its numbers (numeric VRs)."""
        if self.present is False:
            return False
        if self.equals and not any(v in self.equals for v in values):
            return False
        if self.glob and not any(fnmatch.fnmatchcase(v, g) for v in values for g in self.glob):
            return False
        if self._pattern is not None and not any(self._pattern.search(v) for v in values):
            return False
        if self.numeric and not any(self._compare(n) for n in numbers):
            return False
        return not self.cidr

    def test_absent(self) -> bool:
        return self.present is False

    def test_address(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in net for net in self._networks)

    def _compare(self, n: float) -> bool:
        return (
            (self.eq is None or n == self.eq)
            and (self.gt is None or n > self.gt)
            and (self.ge is None or n >= self.ge)
            and (self.lt is None or n < self.lt)
            and (self.le is None or n <= self.le)
        )


_PARTS = ("equals", "glob", "regex", "eq", "gt", "ge", "lt", "le", "present", "cidr")


def element_tag(name: str) -> int:
    """The tag a rule names: a keyword (``Modality``) or ``(gggg,eeee)`` / ``ggggeeee``."""
    found = _TAG.fullmatch(name.strip())
    if found is not None and not name.isalpha():
        return int(found.group(1) + found.group(2), 16)
    tag = tag_for_keyword(name)
    if tag is None:
        raise ValueError(f"{name!r} is neither a DICOM keyword nor a tag (gggg,eeee)")
    return tag


def _sop_class(match: Match) -> Match:
    """``sop_class`` may name a class by its keyword (``CTImageStorage``): use its UID."""
    uids = {entry[4]: uid for uid, entry in UID_dictionary.items()}
    if not match.equals:
        return match
    named = tuple(uids.get(v, v) for v in match.equals)
    return match if named == match.equals else Match(equals=named)


@dataclass(frozen=True)
class Rule:
    """One routing rule: when every condition of ``match`` holds, send to ``to`` (destination
    names) or, with ``drop``, nowhere. ``match`` keys: ``calling_ae``, ``called_ae``,
    ``address`` (the sender's IP in a CIDR network: text or a list), ``sop_class`` (a UID or
    its keyword, e.g. ``CTImageStorage``), and any header element by keyword or
    ``(gggg,eeee)``; values are :class:`Match` objects or their plain forms
    (:meth:`Match.of`). An empty ``match`` matches every file. ``name`` names it in the
    journal (default ``rules[N]``, N its place from 0)."""

    match: Mapping[str, Plain | Match] = field(default_factory=dict)
    to: Sequence[str] = ()
    drop: bool = False
    name: str = ""
    conditions: dict[str, Match] = field(init=False, repr=False, compare=False)
    tags: dict[str, int] = field(init=False, repr=False, compare=False)
    """The header elements named, by their key in ``match``."""

    def __post_init__(self) -> None:
        if isinstance(self.to, str):
            object.__setattr__(self, "to", (self.to,))
        object.__setattr__(self, "to", tuple(self.to))
        if self.drop and self.to:
            raise ValueError("a rule either drops (drop) or sends (to), not both")
        if not self.drop and not self.to:
            raise ValueError("a rule needs destinations (to) or drop")
        conditions: dict[str, Match] = {}
        tags: dict[str, int] = {}
        for key, plain in self.match.items():
            try:
                condition = Match.of(plain)
            except (ValueError, TypeError) as exc:
                raise RuleError(key, str(exc)) from None
            if key == "address":
                if not condition.cidr:
                    condition = _address(key, plain)
            elif condition.cidr:
                raise RuleError(key, "cidr applies to address only")
            elif key == "sop_class":
                condition = _sop_class(condition)
            if key in CONNECTION_KEYS and (condition.numeric or condition.present is not None):
                raise RuleError(key, f"{key} takes text conditions")
            if key not in CONNECTION_KEYS:
                try:
                    tag = element_tag(key)
                except ValueError as exc:
                    raise RuleError(key, str(exc)) from None
                vr = _dictionary_vr(tag)
                if condition.numeric and vr and vr not in NUMERIC_VRS:
                    raise RuleError(key, f"numeric comparison on {key}, whose VR is {vr}")
                tags[key] = tag
            conditions[key] = condition
        object.__setattr__(self, "conditions", conditions)
        object.__setattr__(self, "tags", tags)

    def matches(self, received: Received, header: Header | None) -> bool:
        """Whether every condition holds for ``received``, whose header elements are
        ``header`` (None: it could not be read, and no element condition holds)."""
        for key, condition in self.conditions.items():
            if key == "address":
                ok = condition.test_address(received.address)
            elif key in CONNECTION_KEYS:
                value = {
                    "calling_ae": received.calling_ae,
                    "called_ae": received.called_ae,
                    "sop_class": received.sop_class_uid,
                }[key].strip()
                ok = condition.test_text((value,), ())
            elif header is None:
                ok = False
            else:
                ok = header.test(self.tags[key], condition)
            if not ok:
                return False
        return True

    def describe(self) -> str:
        """The rule in one line, for the routing table."""
        conditions = (
            " and ".join(f"{k} {c.describe()}" for k, c in self.conditions.items()) or "any file"
        )
        return f"{conditions} -> {'drop' if self.drop else ', '.join(self.to)}"


class RuleError(ValueError):
    """A rule's condition is not valid; ``key`` is its key in ``match``."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"match.{key}: {message}")
        self.key = key
        self.message = message


def _address(key: str, plain: object) -> Match:
    texts = (plain,) if isinstance(plain, str) else plain
    if not isinstance(texts, Sequence) or not all(isinstance(t, str) for t in texts):
        raise RuleError(key, "address takes a network (CIDR) or a list of them")
    try:
        return Match(cidr=tuple(texts))
    except ValueError as exc:
        raise RuleError(key, str(exc)) from None


def _dictionary_vr(tag: int) -> str:
    try:
        return str(dictionary_VR(tag)).split(" or ")[0]
    except KeyError:
        return ""


@dataclass(frozen=True)
class Decision:
    """What the rules decided for one file."""

    destinations: dict[str, str]
    """The destination names it goes to, each with the label of the rule that sent it."""
    rule: str
    """The label of the rule that decided (the first that matched, a dropping one, or
    ``unmatched``)."""


class Rules:
    """Rules in order, and the two policies (see the module). ``unmatched``: the destinations
    of a file no rule matched (empty: drop it)."""

    def __init__(
        self,
        rules: Iterable[Rule],
        *,
        first_match: bool = True,
        unmatched: str | Sequence[str] = (),
    ) -> None:
        self.rules = list(rules)
        self.first_match = first_match
        self.unmatched = (
            ()
            if unmatched in ("", "drop")
            else (unmatched,)
            if isinstance(unmatched, str)
            else tuple(unmatched)
        )
        self.labels = [r.name or f"rules[{n}]" for n, r in enumerate(self.rules)]
        tags = {tag for r in self.rules for tag in r.tags.values()}
        self.tags = frozenset(tags)

    def destinations(self) -> set[str]:
        """Every destination a file may be sent to."""
        return {name for r in self.rules for name in r.to} | set(self.unmatched)

    def decide(self, received: Received) -> Decision:
        """Where ``received`` goes."""
        header = read_header(received, self.tags) if self.tags else None
        return self._decide(received, header)

    def decide_early(self, received: Received) -> Decision | None:
        """Where ``received`` goes, from its ``head`` while the rest still arrives; None when
        the head does not reach past every element the rules name (or is deflated): only
        the whole file can tell then. The same decision ``decide`` makes once it is whole."""
        header = None
        if self.tags:
            syntax = received.transfer_syntax
            if syntax in DEFLATED_SYNTAXES:
                return None
            try:
                elements = _walk(_Prefix(received.head), 0, syntax, self.tags)
            except Unreadable:
                return None
            header = Header(elements, syntax != EXPLICIT_VR_BE)
        return self._decide(received, header)

    def _decide(self, received: Received, header: Header | None) -> Decision:
        picked: dict[str, str] = {}
        matched = ""
        for rule, label in zip(self.rules, self.labels, strict=True):
            if not rule.matches(received, header):
                continue
            if rule.drop:
                return Decision({}, label)
            matched = matched or label
            for name in rule.to:
                picked.setdefault(name, label)
            if self.first_match:
                break
        if matched:
            return Decision(picked, matched)
        return Decision(dict.fromkeys(self.unmatched, _UNMATCHED), _UNMATCHED)

    def describe(self) -> list[str]:
        """The routing table, one line a rule and one for the unmatched policy."""
        lines = [
            f"{label}: {rule.describe()}"
            for rule, label in zip(self.rules, self.labels, strict=True)
        ]
        lines.append(f"unmatched: {', '.join(self.unmatched) or 'drop'}")
        return lines


class _Prefix(BufferSource):
    """The first bytes of a dataset that still arrives: running into their end is not the
    dataset's end, so a walk that reaches it is undecided (``Unreadable``)."""

    __slots__ = ()

    def window(self, pos: int, n: int) -> tuple[bytes, int]:
        if pos + n > len(self.data):
            raise Unreadable("the element runs past the bytes arrived so far")
        return self.data, 0


class Header:
    """The top-level elements rules name, read from one dataset."""

    def __init__(self, elements: dict[int, tuple[str, bytes]], little: bool) -> None:
        self.elements = elements
        self.little = little

    def test(self, tag: int, condition: Match) -> bool:
        element = self.elements.get(tag)
        if element is None:
            return condition.test_absent()
        vr, raw = element
        if vr in ("", "UN"):
            vr = _dictionary_vr(tag) or vr
        if condition.present is True and len(condition.parts()) == 1:
            return True
        texts, numbers = _values(vr, raw, self.little)
        return condition.test_text(texts, numbers)


def _values(vr: str, raw: bytes, little: bool) -> tuple[list[str], list[float]]:
    """An element's texts (the whole value first, then each one) and numbers."""
    code = _BINARY.get(vr)
    if code is not None:
        size = struct.calcsize(code)
        count = len(raw) // size
        values = [
            float(n)
            for n in struct.unpack(("<" if little else ">") + code * count, raw[: count * size])
        ]
        texts = [_number_text(n) for n in values]
        return (["\\".join(texts), *texts] if len(texts) > 1 else texts), values
    if vr in ("SQ", "OB", "OW", "OF", "OD", "OL", "OV", "UN"):
        return [], []
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    text = text.strip("\0 ")
    parts = [p.strip("\0 ") for p in text.split("\\")]
    texts = [text, *parts] if len(parts) > 1 else [text]
    numbers: list[float] = []
    if vr in NUMERIC_VRS:
        for part in parts:
            try:
                number = float(part)
            except ValueError:
                continue
            if math.isfinite(number):
                numbers.append(number)
    return texts, numbers


def _number_text(n: float) -> str:
    return str(int(n)) if n.is_integer() else repr(n)


def read_header(received: Received, tags: frozenset[int]) -> Header | None:
    """The elements ``tags`` of ``received``'s dataset, from the head the server read and
    the spool file past it (one read of the file's start when there is no head); None, with a
    log line, when the dataset cannot be walked there."""
    syntax = received.transfer_syntax
    little = syntax != EXPLICIT_VR_BE
    try:
        if received.path is None:
            return Header(_walk(BufferSource(received.data or b""), 0, syntax, tags), little)
        fd = os.open(received.path, os.O_RDONLY)
        try:
            size = os.fstat(fd).st_size
            offset = size - received.size
            head = received.head or os.pread(fd, 1 << 16, offset)
            src = FileSource(fd, head, size, _BUDGET + len(head), base=offset)
            return Header(_walk(src, offset, syntax, tags), little)
        finally:
            os.close(fd)
    except (Unreadable, OSError) as exc:
        log.warning(
            "Cannot read the header of %s for the rules: %s", received.sop_instance_uid, exc
        )
        return None


def _walk(src: Source, pos: int, syntax: str, tags: frozenset[int]) -> dict[int, tuple[str, bytes]]:
    if syntax in DEFLATED_SYNTAXES:
        src, pos = InflatedSource(src, pos, _BUDGET), 0
    return read_top_elements(
        src, pos, tags, implicit=syntax == IMPLICIT_VR_LE, little=syntax != EXPLICIT_VR_BE
    )
