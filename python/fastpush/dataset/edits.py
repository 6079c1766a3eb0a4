"""Tag edits and de-identification as data: the edit kinds, an ``EditPlan`` (parsed from plain
data such as a router config's ``edits = [...]`` and ``deidentify = {...}``), and its
compilation into the instruction list the Rust converter applies while a dataset streams out
(``fastpush._core.EditPlan``), and ``write_edited``: one file edited into a new Part-10 file. The
profile's rules live in ``deid``; sending an edited dataset is ``send``'s business.

A tag is a keyword (``InstitutionName``), ``(gggg,eeee)``, or a path into sequences
(``ReferencedSeriesSequence.SeriesInstanceUID``: that element in every item of the sequence).
Keys (for UID maps, pseudonyms and date offsets) are read from files, never given as text.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

from .meta import file_meta

if TYPE_CHECKING:
    from .._core import EditPlan as CompiledPlan
    from .item import Item

_TAG = re.compile(r"^\(?\s*([0-9A-Fa-f]{4})\s*,\s*([0-9A-Fa-f]{4})\s*\)?$")


def parse_tag(text: str) -> int:
    """A keyword or ``(gggg,eeee)`` as an int tag; ``ValueError`` for neither."""
    text = text.strip()
    match = _TAG.match(text)
    if match:
        return int(match[1] + match[2], 16)
    from pydicom.datadict import tag_for_keyword

    tag = tag_for_keyword(text)
    if tag is None:
        raise ValueError(f"{text!r} is neither a DICOM keyword nor a (gggg,eeee) tag")
    return int(tag)


def parse_path(text: str) -> tuple[list[int], int]:
    """``Seq.Seq2.Tag`` as (sequence tags, tag)."""
    parts = [parse_tag(p) for p in text.split(".")]
    return parts[:-1], parts[-1]


def read_key(path: str | Path) -> bytes:
    """The secret key in a file (surrounding whitespace dropped); ``ValueError`` when empty."""
    key = Path(path).read_bytes().strip()
    if len(key) < 16:
        raise ValueError(f"the key in {path} is shorter than 16 bytes: too easy to guess")
    return key


@dataclass(frozen=True)
class Set:
    """Set ``tag`` to ``value`` (added where missing); ``vr`` for an element the dictionary
    does not know."""

    tag: str
    value: str
    vr: str | None = None


@dataclass(frozen=True)
class Remove:
    tag: str


@dataclass(frozen=True)
class Copy:
    """Set ``tag`` to the value of the top-level element ``source`` (left alone when the
    dataset has no ``source``)."""

    tag: str
    source: str


@dataclass(frozen=True)
class Prefix:
    tag: str
    prefix: str


@dataclass(frozen=True)
class MapUids:
    """Map every UID (but the standard's own) to ``2.25.<HMAC of the UID>`` with the plan's
    key: the same UID maps to the same UID, so a study stays one study."""


Edit: TypeAlias = Set | Remove | Copy | Prefix | MapUids


@dataclass(frozen=True)
class Deidentify:
    """The PS3.15 Annex E Basic Application Level Confidentiality Profile, with its options.

    ``keep_private`` names private elements kept, as ``"gggg,CREATOR,ee"`` (the group, the
    private creator's value, the element's low byte); every other private element is removed.
    ``allow_burned_in`` sends images that may carry burned-in text (refused otherwise)."""

    retain_uids: bool = False
    """Retain UIDs: study, series and instance UIDs go out as they are."""
    retain_dates: bool = False
    """Retain Longitudinal Temporal Information with Modified Dates: the dates of its column
    (DA, DT) shifted back by a per-patient offset (1-3650 days) from the key, times kept."""
    retain_patient_characteristics: bool = False
    """Retain Patient Characteristics: sex, age, size, weight and the like are kept."""
    retain_device_identity: bool = False
    """Retain Device Identity: device serial numbers, station names and the like are kept."""
    clean_descriptors: bool = False
    """Clean Descriptors: the caller states that the free text Table E.1-1 marks C (study and
    series descriptions, protocol names, comments; and the C cells of the options chosen) is
    clean, so it is kept and the option's code is recorded; removed otherwise."""
    keep_private: tuple[str, ...] = ()
    allow_burned_in: bool = False


RuleTuple: TypeAlias = "tuple[Any, list[int] | None, str, Any, str | None]"


@dataclass(frozen=True)
class EditPlan:
    """Edits applied in order (the first edit naming an element wins), then ``deidentify``.

    ``key_file`` holds the key for ``MapUids`` and de-identification."""

    edits: tuple[Edit, ...] = ()
    """The edits (``Set``, ``Remove``, ``Copy``, ``Prefix``, ``MapUids``), in order."""
    deidentify: Deidentify | None = None
    key_file: str | None = None
    _key: bytes | None = field(default=None, repr=False, compare=False)
    """The key itself, for callers that hold it already (read from ``key_file`` otherwise)."""

    def __post_init__(self) -> None:
        needs_key = self.deidentify is not None or any(isinstance(e, MapUids) for e in self.edits)
        if needs_key and self.key_file is None and self._key is None:
            raise ValueError("mapping UIDs and de-identifying need a key file")
        for edit in self.edits:
            if not isinstance(edit, MapUids):
                parse_path(edit.tag)
            if isinstance(edit, Copy):
                parse_tag(edit.source)

    @classmethod
    def from_config(
        cls,
        edits: Sequence[Mapping[str, Any]] = (),
        deidentify: Mapping[str, Any] | None = None,
        key_file: str | None = None,
    ) -> EditPlan:
        """A plan from plain data: ``[{"set": TAG, "value": V}, {"remove": TAG},
        {"copy": TAG, "from": TAG}, {"prefix": TAG, "value": P}, {"map_uids": true,
        "key_file": F}]`` and ``{"profile": "basic", "key_file": F, "retain_uids": ...}``."""
        parsed: list[Edit] = []
        for entry in edits:
            entry = dict(entry)
            if "set" in entry:
                parsed.append(Set(entry["set"], str(entry["value"]), entry.get("vr")))
            elif "remove" in entry:
                parsed.append(Remove(entry["remove"]))
            elif "copy" in entry:
                parsed.append(Copy(entry["copy"], entry["from"]))
            elif "prefix" in entry:
                parsed.append(Prefix(entry["prefix"], str(entry["value"])))
            elif entry.get("map_uids"):
                parsed.append(MapUids())
                if isinstance(entry["map_uids"], str):
                    key_file = key_file or entry["map_uids"]
                key_file = key_file or entry.get("key_file")
            else:
                raise ValueError(
                    f"unknown edit {entry!r}: use set, remove, copy, prefix or map_uids"
                )
        deid = None
        if deidentify is not None:
            options = dict(deidentify)
            profile = options.pop("profile", "basic")
            if profile != "basic":
                raise ValueError(f"unknown de-identification profile {profile!r}: use basic")
            key_file = options.pop("key_file", None) or key_file
            keep = tuple(options.pop("keep_private", ()))
            known = set(Deidentify.__dataclass_fields__)
            unknown = set(options) - known
            if unknown:
                raise ValueError(
                    f"unknown de-identification option(s): {', '.join(sorted(unknown))}"
                )
            deid = Deidentify(keep_private=keep, **options)
        return cls(tuple(parsed), deid, key_file)

    @cached_property
    def key(self) -> bytes:
        if self._key is not None:
            return self._key
        return read_key(self.key_file) if self.key_file is not None else b""

    def describe(self) -> str:
        """One line for logs and reports: which edits apply."""
        parts = [
            type(e).__name__.lower() + (f" {e.tag}" if not isinstance(e, MapUids) else "")
            for e in self.edits
        ]
        if self.deidentify is not None:
            parts.append("deidentify basic")
        return ", ".join(parts)

    def rules(self) -> tuple[list[RuleTuple], bool]:
        """The instruction list and whether every other UID is mapped."""
        rules: list[RuleTuple] = []
        map_uids = False
        for edit in self.edits:
            if isinstance(edit, MapUids):
                map_uids = True
                continue
            path, tag = parse_path(edit.tag)
            if isinstance(edit, Set):
                rules.append((tag, path, "set", edit.value, edit.vr))
            elif isinstance(edit, Remove):
                rules.append((tag, path, "remove", None, None))
            elif isinstance(edit, Copy):
                rules.append((tag, path, "copy", parse_tag(edit.source), None))
            else:
                rules.append((tag, path, "prefix", edit.prefix, None))
        if self.deidentify is not None:
            from .deid import profile_rules

            rules.extend(profile_rules(self.deidentify))
        return rules, map_uids

    @cached_property
    def compiled(self) -> CompiledPlan:
        """The Rust instruction list (built once per plan)."""
        from .._core import EditPlan as Compiled

        rules, map_uids = self.rules()
        deid = self.deidentify
        return Compiled(
            rules,
            key=self.key,
            private="remove" if deid is not None else None,
            map_uids=map_uids,
            refuse_burned_in=deid is not None and not deid.allow_burned_in,
        )


def write_edited(item: Item, plan: EditPlan, path: str | os.PathLike[str]) -> str:
    """Write ``item`` edited with ``plan`` as a new Part-10 file at ``path``, in its transfer
    syntax, its file meta naming the edited SOP Instance UID (returned). The edited header comes
    from the Rust editor and the pixel data is copied file to file by the kernel, never through
    Python. ``ConversionError`` when the plan cannot apply; no file is left then."""
    compiled = plan.compiled
    uid = compiled.instance_uid(item.sop_instance_uid)
    syntax = item.transfer_syntax
    meta = file_meta(item.sop_class_uid, uid, syntax)
    compiled.write_edited(item.source, syntax, syntax, path, meta)
    return uid
