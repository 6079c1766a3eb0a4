"""The start of a dataset: which encoding it is in, its SOP Class and Instance UIDs, and the
top-level elements a routing rule names.

Element headers are walked from the dataset's first byte to the first top-level element past
the last one wanted ((0008,0018) for the identity); values are skipped by their length
(sequences of undefined length item by item), never decoded, and the pixel data is never
reached. Bytes come from a ``Source`` that reads more of a file only when the walk needs it,
within a budget: a crafted or broken file costs a bounded amount of reading, and every problem
is an ``Unreadable`` with a reason.
"""

from __future__ import annotations

import functools
import os
import struct
import zlib
from collections.abc import Callable, Collection, Iterator
from typing import Any, Protocol

from ..uids import DEFLATED_EXPLICIT_VR_LE, EXPLICIT_VR_BE, EXPLICIT_VR_LE, IMPLICIT_VR_LE

# JPIP Referenced Deflate: its dataset is deflated like Deflated Explicit VR Little Endian.
DEFLATED_SYNTAXES = frozenset({DEFLATED_EXPLICIT_VR_LE, "1.2.840.10008.1.2.8.1"})
SYNTAX_NAMES = {
    IMPLICIT_VR_LE: "Implicit VR Little Endian",
    EXPLICIT_VR_LE: "Explicit VR Little Endian",
    EXPLICIT_VR_BE: "Explicit VR Big Endian",
}

VRS = frozenset(
    {b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FD", b"FL", b"IS", b"LO", b"LT"}
    | {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"PN", b"SH", b"SL", b"SQ", b"SS", b"ST"}
    | {b"SV", b"TM", b"UC", b"UI", b"UL", b"UN", b"UR", b"US", b"UT", b"UV"}
)
# VRs whose explicit encoding has 2 reserved bytes and a 4-byte length (PS3.5 7.1.2).
LONG_VRS = frozenset(
    {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
)

SOP_CLASS = 0x0008_0016
SOP_INSTANCE = 0x0008_0018
_UNDEFINED = 0xFFFF_FFFF
_ITEM = 0xFFFE_E000
_ITEM_TAGS = frozenset({_ITEM, 0xFFFE_E00D, 0xFFFE_E0DD})
_ITEM_GROUP = 0xFFFE
# A UID is at most 64 characters; anything much longer is not a UID.
_MAX_UID = 256
# Real datasets nest a few levels; a crafted one must not grow the stack without bound.
_MAX_DEPTH = 64
# Element headers walked before (0008,0018): sequences there are rare and small.
_MAX_STEPS = 1 << 16
# The first read of a file: a file meta and group 0008 up to (0008,0018) fit many times over.
HEAD = 1 << 12
CHUNK = 1 << 14
# The longest value read_top_elements reads: far above any header value a rule compares.
MAX_VALUE = 1 << 16

_LE = struct.Struct("<HHI")
_BE = struct.Struct(">HHI")
_LE_LONG = struct.Struct("<I")
_BE_LONG = struct.Struct(">I")


class Unreadable(Exception):
    """The input cannot be sent; the message is the reason."""


class Source(Protocol):
    def get(self, pos: int, n: int) -> bytes:
        """``n`` bytes at ``pos``, fewer only where the data ends."""

    def window(self, pos: int, n: int) -> tuple[bytes, int]:
        """Bytes and the position of their first byte, holding the ``n`` bytes at ``pos`` (fewer
        only where the data ends): what a walk reads headers from without a call per header."""


class BufferSource:
    """Bytes already in memory."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    def get(self, pos: int, n: int) -> bytes:
        return self.data[pos : pos + n]

    def window(self, pos: int, n: int) -> tuple[bytes, int]:
        return self.data, 0


class FileSource:
    """An open file (descriptor) seen through the bytes already read, reading more (within
    ``budget``) on demand. A value skipped by its length is not read. ``head`` holds the
    file's bytes from ``base``."""

    __slots__ = ("base", "budget", "data", "fd", "size")

    def __init__(self, fd: int, head: bytes, size: int, budget: int, base: int = 0) -> None:
        self.fd, self.data, self.base, self.size = fd, head, base, size
        self.budget = budget - len(head)

    def get(self, pos: int, n: int) -> bytes:
        off = pos - self.base
        if off >= 0 and off + n <= len(self.data):
            return self.data[off : off + n]
        want = min(max(n, CHUNK), self.size - pos)
        if want <= 0:
            # An empty window at the end: a walk tells the end (pos == size) from a value
            # that ran past it (pos > size).
            self.data, self.base = b"", self.size
            return b""
        if want > self.budget:
            raise Unreadable(f"gave up reading the dataset's start at byte {pos}: too much to read")
        self.budget -= want
        self.data, self.base = os.pread(self.fd, want, pos), pos
        return self.data[:n]

    def window(self, pos: int, n: int) -> tuple[bytes, int]:
        self.get(pos, n)
        return self.data, self.base


class InflatedSource:
    """The inflated bytes of a raw deflate stream (PS3.5 A.5) that starts at ``start`` in ``raw``.

    Only forward: bytes before the last position asked for are dropped. At most ``budget``
    bytes are inflated.
    """

    __slots__ = ("base", "budget", "data", "raw", "rpos", "z")

    def __init__(self, raw: Source, start: int, budget: int) -> None:
        self.raw, self.rpos, self.budget = raw, start, budget
        self.z = zlib.decompressobj(-zlib.MAX_WBITS)
        self.data, self.base = b"", 0

    def get(self, pos: int, n: int) -> bytes:
        off = pos - self.base
        while len(self.data) - off < n and not self.z.eof:
            piece = self.z.unconsumed_tail
            if not piece:
                piece = self.raw.get(self.rpos, CHUNK)
                self.rpos += len(piece)
                if not piece:
                    break
            try:
                out = self.z.decompress(piece, CHUNK)
            except zlib.error as exc:
                raise Unreadable(f"deflated dataset cannot be inflated: {exc}") from None
            self.budget -= len(out)
            if self.budget < 0:
                raise Unreadable("gave up inflating the dataset's start: too much to inflate")
            drop = min(off, len(self.data))
            self.data, self.base, off = self.data[drop:] + out, self.base + drop, off - drop
        return self.data[off : off + n]

    def window(self, pos: int, n: int) -> tuple[bytes, int]:
        self.get(pos, n)
        return self.data, self.base


def inflated_head(head: bytes, transfer_syntax: str, limit: int = 1 << 16) -> bytes:
    """The first bytes of a received dataset as a walk reads them: ``head`` itself, or at most
    ``limit`` inflated bytes of a deflated one (PS3.5 A.5); ``Unreadable`` when it does not
    inflate."""
    if transfer_syntax not in DEFLATED_SYNTAXES:
        return head
    try:
        return zlib.decompressobj(-zlib.MAX_WBITS).decompress(head, limit)
    except zlib.error as exc:
        raise Unreadable(f"deflated dataset cannot be inflated: {exc}") from None


def head_identity(head: bytes, transfer_syntax: str) -> tuple[str, str]:
    """The SOP Class and Instance UIDs ('' when absent) at the start of a received dataset, in
    ``transfer_syntax`` (compressed ones encode the dataset in Explicit VR Little Endian);
    ``Unreadable`` when its first bytes are not element headers that lead there."""
    data = inflated_head(head, transfer_syntax)
    if not data:
        raise Unreadable("dataset is empty")
    return read_uids(
        BufferSource(data),
        0,
        implicit=transfer_syntax == IMPLICIT_VR_LE,
        little=transfer_syntax != EXPLICIT_VR_BE,
        strict_order=True,
    )


def looks_explicit(vr: bytes) -> bool:
    """pydicom's test for an explicit VR where an implicit length could be: two capitals."""
    return len(vr) == 2 and 0x40 < vr[0] < 0x5B and 0x40 < vr[1] < 0x5B


def detect_raw(head: bytes, size: int) -> tuple[bool, bool]:
    """(implicit, little endian) of data with no 'DICM' marker, from its first element header.

    A dataset that can be sent has (0008,0016), so its first element is in a group up to 0008:
    anything else is not DICOM (or nothing to send), decided from eight bytes.
    """
    if len(head) < 8:
        raise Unreadable("not a DICOM file: too short" if head else "not a DICOM file: empty")
    group_le = head[0] | head[1] << 8
    group_be = head[0] << 8 | head[1]
    if head[4:6] in VRS:
        if group_le <= 8:
            return False, True
        if group_be <= 8:
            return False, False
    elif group_le <= 8:
        (length,) = _LE_LONG.unpack_from(head, 4)
        if length == _UNDEFINED or length <= size - 8:
            return True, True
    raise Unreadable(
        "not a DICOM file: no 'DICM' marker at byte 128 and no DICOM element at the start"
    )


def read_uids(
    src: Source, pos: int, implicit: bool, little: bool, strict_order: bool = False
) -> tuple[str, str]:
    """The dataset's (0008,0016) and (0008,0018) values ('' when absent), walking from ``pos``.

    ``strict_order``: top-level tags must ascend, as PS3.5 7.1 requires (used where nothing
    else says the data is DICOM).
    """
    found = read_top_uids(src, pos, _IDENTITY, implicit, little, strict_order)
    return found.get(SOP_CLASS, ""), found.get(SOP_INSTANCE, "")


_IDENTITY = {SOP_CLASS: "SOP Class UID (0008,0016)", SOP_INSTANCE: "SOP Instance UID (0008,0018)"}


@functools.cache
def _fast_walk() -> Callable[[bytes, int, list[int], bool, bool, bool], Any] | None:
    """``_core.top_uids``, or None in an install without the Rust core (``--engine python``)."""
    try:
        from .._core import top_uids
    except ImportError:
        return None
    return top_uids


def read_top_uids(
    src: Source,
    pos: int,
    wanted: dict[int, str],
    implicit: bool,
    little: bool,
    strict_order: bool = False,
) -> dict[int, str]:
    """The values of the top-level UI elements ``wanted`` (tag: name for messages) that the
    dataset has, walking element headers from ``pos`` and stopping past the last of them."""
    fast_walk = _fast_walk()
    if fast_walk is not None and type(src) is BufferSource:  # every file the router takes in
        fast = fast_walk(src.data, pos, list(wanted), implicit, little, strict_order)
        if fast is not None:
            return dict(fast)
    found: dict[int, str] = {}
    last_name = wanted[max(wanted)]
    walk = walk_top(src, pos, wanted, last_name, implicit, little, strict_order)
    for tag, _, start, length in walk:
        if length != _UNDEFINED:
            found[tag] = _uid(src, start, length, wanted[tag])
    return found


def read_top_elements(
    src: Source, pos: int, wanted: Collection[int], implicit: bool, little: bool
) -> dict[int, tuple[str, bytes]]:
    """The top-level elements ``wanted`` (tags) that the dataset has, as (VR, value bytes);
    the VR is '' in Implicit VR, and a sequence's value (or one of undefined length) is b''.
    The walk stops past the largest tag wanted; a value over ``MAX_VALUE`` bytes is an
    ``Unreadable``."""
    found: dict[int, tuple[str, bytes]] = {}
    if not wanted:
        return found
    last = f"({max(wanted) >> 16:04X},{max(wanted) & 0xFFFF:04X})"
    for tag, vr, start, length in walk_top(src, pos, wanted, last, implicit, little):
        name = f"({tag >> 16:04X},{tag & 0xFFFF:04X})"
        if length == _UNDEFINED:
            found[tag] = (vr.decode("ascii", "replace"), b"")
            continue
        if length > MAX_VALUE:
            raise Unreadable(f"dataset's element {name} is {length} bytes long")
        value = src.get(start, length)
        if len(value) < length:
            raise Unreadable(f"dataset is truncated in its element {name}")
        found[tag] = (vr.decode("ascii", "replace"), value)
    return found


def walk_top(
    src: Source,
    pos: int,
    wanted: Collection[int],
    last_name: str,
    implicit: bool,
    little: bool,
    strict_order: bool = False,
) -> Iterator[tuple[int, bytes, int, int]]:
    """(tag, VR, value position, value length) of each top-level element in ``wanted``,
    walking element headers from ``pos`` and stopping past the largest of them. The caller
    reads a value before asking for the next element (a deflated source reads forward only).
    An element of undefined length is yielded with that length, before it is skipped."""
    stop = max(wanted)
    last = -1
    buf, base = src.window(pos, 12)
    tags, long_length = (_LE, _LE_LONG) if little else (_BE, _BE_LONG)
    for _ in range(_MAX_STEPS):
        off = pos - base
        if off + 12 > len(buf):
            buf, base = src.window(pos, 12)
            off = pos - base
            if off + 8 > len(buf):
                if off == len(buf):
                    return
                raise Unreadable(f"dataset is truncated at byte {pos}, before its {last_name}")
        group, elem, length = tags.unpack_from(buf, off)
        tag = group << 16 | elem
        # Items and delimiters (group FFFE) out of place end the walk here too.
        if tag > stop:
            return
        if tag <= last and strict_order:
            raise Unreadable(f"not a DICOM file: elements out of order at byte {pos}")
        last = tag
        vr = b""
        if implicit:
            pos += 8
        else:
            vr = buf[off + 4 : off + 6]
            if vr in LONG_VRS:
                if off + 12 > len(buf):
                    raise Unreadable(f"dataset is truncated at byte {pos}")
                (length,) = long_length.unpack_from(buf, off + 8)
                pos += 12
            else:
                # The 2-byte length is the upper (LE) or lower (BE) half of what was unpacked.
                length = length >> 16 if little else length & 0xFFFF
                pos += 8
        if tag in wanted:
            yield tag, vr, pos, length
        if length == _UNDEFINED:
            pos = _skip_sequence(src, pos, *_content(vr, implicit, little))
            continue
        pos += length
    raise Unreadable(f"dataset has too many elements before its {last_name}")


def _content(vr: bytes, implicit: bool, little: bool) -> tuple[bool, bool]:
    """(implicit, little) of the content of an element of undefined length: its own, except
    for UN, whose content is Implicit VR Little Endian (PS3.5 6.2.2)."""
    return (True, True) if vr == b"UN" else (implicit, little)


def _skip_sequence(src: Source, pos: int, implicit: bool, little: bool) -> int:
    """The position after the delimiter of the sequence of undefined length whose content
    starts at ``pos``; nested sequences and items of undefined length are walked too."""
    # Open sequences and items: the (implicit, little) of their content.
    stack = [(implicit, little)]
    for _ in range(_MAX_STEPS):
        header = src.get(pos, 12)
        if len(header) < 8:
            raise Unreadable(f"dataset is truncated at byte {pos}, in a sequence")
        implicit, little = stack[-1]
        group, elem, length = (_LE if little else _BE).unpack_from(header)
        tag = group << 16 | elem
        vr = b""
        if group == _ITEM_GROUP:
            if tag not in _ITEM_TAGS:
                raise Unreadable(f"dataset has an unknown item tag at byte {pos}")
            pos += 8
            if tag != _ITEM:
                stack.pop()
                if not stack:
                    return pos
                continue
        elif implicit:
            pos += 8
        else:
            vr = header[4:6]
            if vr in LONG_VRS:
                if len(header) < 12:
                    raise Unreadable(f"dataset is truncated at byte {pos}, in a sequence")
                (length,) = (_LE_LONG if little else _BE_LONG).unpack_from(header, 8)
                pos += 12
            else:
                length = length >> 16 if little else length & 0xFFFF
                pos += 8
        if length != _UNDEFINED:
            pos += length
        elif len(stack) < _MAX_DEPTH:
            stack.append(_content(vr, implicit, little))
        else:
            raise Unreadable(f"dataset nests sequences too deep at byte {pos}")
    raise Unreadable("dataset has too many elements in a sequence before its SOP Instance UID")


def _uid(src: Source, pos: int, length: int, name: str) -> str:
    if length > _MAX_UID:
        raise Unreadable(f"dataset's {name} is {length} bytes long: not a UID")
    value = src.get(pos, length)
    if len(value) < length:
        raise Unreadable(f"dataset is truncated in its {name}")
    try:
        return value.decode("ascii").strip("\0 ")
    except UnicodeDecodeError:
        raise Unreadable(f"dataset's {name} is not ASCII: {value!r}") from None
