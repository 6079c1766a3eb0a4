"""Streaming conversion between the uncompressed transfer syntaxes, in pure Python.

The pure-Python data path's port of the Rust rewriter (``rust/convert/``), step for step, so
both engines put the same bytes on the wire (tested): Implicit VR LE, Explicit VR LE, Explicit
VR BE and Deflated Explicit VR LE, read in place and produced in bounded pieces. Sequences and
items are written with undefined length; group lengths are dropped; a value too long for a
2-byte length becomes UN; an odd-length value is padded to even length (a dataset converted to
its own syntax is re-encoded that way); encapsulated pixel data is an error. Why each choice:
see the Rust module's documentation.
"""

from __future__ import annotations

import array
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, replace
from functools import lru_cache

from ..errors import ConversionError
from ..uids import DEFLATED_EXPLICIT_VR_LE, EXPLICIT_VR_BE, EXPLICIT_VR_LE, IMPLICIT_VR_LE

__all__ = ["CONVERTIBLE", "Converter", "check", "convert_bytes", "convert_chunks"]

CONVERTIBLE = frozenset({IMPLICIT_VR_LE, EXPLICIT_VR_LE, EXPLICIT_VR_BE, DEFLATED_EXPLICIT_VR_LE})

_CHUNK = 1 << 20
_DEFLATE_STAGE = 256 << 10
_INFLATE_STEP = 64 << 10
_DEFLATE_LEVEL = 6
_MAX_DEPTH = 256
_UNDEFINED = 0xFFFFFFFF
_ITEM, _ITEM_END, _SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_PIXEL_DATA, _BITS_ALLOCATED, _PIXEL_REPRESENTATION = 0x7FE00010, 0x00280100, 0x00280103

# Every VR of PS3.5 table 6.2-1; anything else in an explicit VR header is an error.
# fmt: off
_KNOWN_VRS = frozenset((
    "AE", "AS", "AT", "CS", "DA", "DS", "DT", "FD", "FL", "IS", "LO", "LT", "OB", "OD", "OF",
    "OL", "OV", "OW", "PN", "SH", "SL", "SQ", "SS", "ST", "SV", "TM", "UC", "UI", "UL", "UN",
    "UR", "US", "UT", "UV",
))
# fmt: on
_LONG_VRS = frozenset(
    ["OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"]
)
# Padded with a space when odd (PS3.5 6.2); every other VR with a zero.
_TEXT_VRS = frozenset(
    ["AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UR", "UT"]
)
_SWAP = {"US": 2, "SS": 2, "OW": 2, "AT": 2, "UL": 4, "SL": 4, "FL": 4, "OF": 4, "OL": 4}
_SWAP.update(dict.fromkeys(("FD", "OD", "SV", "UV", "OV"), 8))


@dataclass(frozen=True)
class _Encoding:
    explicit: bool
    big: bool

    @property
    def order(self) -> str:
        return ">" if self.big else "<"


_IMPLICIT_LE = _Encoding(False, False)
_EXPLICIT_LE = _Encoding(True, False)
_EXPLICIT_BE = _Encoding(True, True)
_ENCODINGS = {
    IMPLICIT_VR_LE: _IMPLICIT_LE,
    EXPLICIT_VR_LE: _EXPLICIT_LE,
    DEFLATED_EXPLICIT_VR_LE: _EXPLICIT_LE,
    EXPLICIT_VR_BE: _EXPLICIT_BE,
}


@dataclass(frozen=True)
class _Context:
    pixel_representation: int | None = None
    bits_allocated: int | None = None


@dataclass(frozen=True)
class _Frame:
    sequence: bool
    end: int | None  # None: delimited; -1: the top level, ends with the input
    src: _Encoding
    dst: _Encoding
    ctx: _Context


_TOP = -1


@lru_cache(maxsize=1)
def _repeaters() -> tuple[tuple[int, int, str], ...]:
    from pydicom._dicom_dict import RepeatersDictionary

    masks = []
    for pattern, entry in RepeatersDictionary.items():
        mask = int("".join("0" if c == "x" else "F" for c in pattern), 16)
        masks.append((mask, int(pattern.replace("x", "0"), 16), entry[0]))
    return tuple(sorted(masks))


@lru_cache(maxsize=4096)
def _dictionary(tag: int) -> str | None:
    from pydicom._dicom_dict import DicomDictionary

    entry = DicomDictionary.get(tag)
    if entry is not None and entry[0] != "NONE":
        return entry[0]
    return next((vr for mask, value, vr in _repeaters() if tag & mask == value), None)


def implicit_vr(tag: int, ctx: _Context) -> str | None:
    """The VR of ``tag`` in an implicit VR dataset (the Rust ``implicit_vr``); ``None``: unknown."""
    group, element = tag >> 16, tag & 0xFFFF
    if element == 0:
        return "UL"
    if group % 2:
        return "LO" if 0x10 <= element <= 0xFF else None
    name = _dictionary(tag)
    if name is None:
        return None
    if name == "US or SS":
        return "SS" if ctx.pixel_representation == 1 else "US"
    if name == "OB or OW":
        bits = ctx.bits_allocated
        return "OB" if tag == _PIXEL_DATA and bits is not None and bits <= 8 else "OW"
    if name in ("US or OW", "US or SS or OW"):
        return "OW"
    return name


class _Input:
    """The source as a stream with a position: in place, or inflated a window at a time."""

    def __init__(self, data: bytes | memoryview, deflated: bool) -> None:
        self._data = memoryview(data)
        self.pos = 0
        self._z = zlib.decompressobj(-zlib.MAX_WBITS) if deflated else None
        self._src_pos = 0
        self._buf = bytearray()
        self._start = 0

    def peek(self, n: int) -> memoryview:
        if self._z is None:
            return self._data[self.pos : self.pos + n]
        self._fill(n)
        return memoryview(self._buf)[self._start : self._start + n]

    @property
    def source_consumed(self) -> int:
        """Bytes of the source read so far (compressed bytes for a deflated source)."""
        return self.pos if self._z is None else self._src_pos

    def consume(self, n: int) -> None:
        self.pos += n
        if self._z is not None:
            self._start += n

    def at_end(self) -> bool:
        return not len(self.peek(1))

    def _fill(self, n: int) -> None:
        z = self._z
        assert z is not None
        while len(self._buf) - self._start < n and not z.eof:
            del self._buf[: self._start]
            self._start = 0
            src = self._data[self._src_pos :]
            try:
                out = z.decompress(src, _INFLATE_STEP)
            except zlib.error as exc:
                raise ConversionError(f"deflated dataset is corrupt: {exc}") from None
            self._src_pos += len(src) - len(z.unconsumed_tail)
            if not out and not z.eof:
                if self._src_pos >= len(self._data):
                    raise ConversionError("deflated dataset is truncated")
                raise ConversionError("deflated dataset does not inflate")
            self._buf += out


class Converter:
    """One dataset, from one uncompressed syntax to another, a bounded piece at a time."""

    def __init__(
        self, data: bytes | memoryview, from_syntax: str, to_syntax: str, *, dry: bool = False
    ) -> None:
        for uid in (from_syntax, to_syntax):
            if uid not in _ENCODINGS:
                raise ConversionError(
                    f"{uid} is not an uncompressed transfer syntax the converter handles"
                )
        self._input = _Input(data, from_syntax == DEFLATED_EXPLICIT_VR_LE)
        top = _Frame(False, _TOP, _ENCODINGS[from_syntax], _ENCODINGS[to_syntax], _Context())
        self._stack = [top]
        # (tag, remaining, swap width, padding byte of an odd value)
        self._copy: tuple[int, int, int, bytes] | None = None
        self._dry = dry
        deflate = to_syntax == DEFLATED_EXPLICIT_VR_LE and not dry
        self._z = (
            zlib.compressobj(_DEFLATE_LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS) if deflate else None
        )
        self._stage = bytearray()
        self._deflated = 0
        self.done = False
        self.odd: list[int] = []
        """Tags of the odd-length values met so far (padded in the output)."""

    @property
    def source_consumed(self) -> int:
        """Bytes of the source read so far: what a mapped source may release."""
        return self._input.source_consumed

    def _err(self, message: str) -> ConversionError:
        return ConversionError(f"{message} (at dataset offset {self._input.pos})")

    def fill(self, out: bytearray, limit: int) -> bool:
        """Append to ``out`` until it holds ``limit`` bytes (a step may go ~1 MiB past) or the
        dataset is done; return whether it is done."""
        while not self.done and len(out) < limit:
            if self._z is None:
                self.done = self._step(out)
                continue
            self.done = self._step(self._stage)
            if self.done or len(self._stage) >= _DEFLATE_STAGE:
                before = len(out)
                out += self._z.compress(self._stage)
                self._stage.clear()
                if self.done:
                    out += self._z.flush()
                    self._deflated += len(out) - before
                    if self._deflated % 2:
                        out += b"\0"  # PS3.5 A.5: pad an odd-length deflated stream
                else:
                    self._deflated += len(out) - before
        return self.done

    def _need(self, n: int) -> memoryview:
        got = self._input.peek(n)
        if len(got) < n:
            raise self._err("dataset is truncated")
        return got

    def _step(self, out: bytearray) -> bool:
        if self._copy is not None:
            self._copy_value(out)
            return False
        frame = self._stack[-1]
        pos = self._input.pos
        if frame.end is not None and frame.end >= 0:
            if pos == frame.end:
                self._close(out)
                return False
            if pos > frame.end:
                raise self._err(f"element runs past the end of its parent at {frame.end}")
        elif frame.end == _TOP and self._input.at_end():
            return True
        if frame.sequence:
            self._sequence_step(frame, out)
        else:
            self._dataset_step(frame, out)
        return False

    def _close(self, out: bytearray) -> None:
        frame = self._stack.pop()
        if not self._dry:
            tag = _SEQUENCE_END if frame.sequence else _ITEM_END
            out += struct.pack(frame.dst.order + "HHI", tag >> 16, tag & 0xFFFF, 0)

    def _push(self, frame: _Frame) -> None:
        if len(self._stack) >= _MAX_DEPTH:
            raise self._err(f"sequences nested deeper than {_MAX_DEPTH} levels")
        self._stack.append(frame)

    def _tag_and_length(self, enc: _Encoding) -> tuple[int, int]:
        group, element, length = struct.unpack(enc.order + "HHI", self._need(8))
        return (group << 16) | element, length

    def _end_of(self, parent: _Frame, start: int, length: int) -> int | None:
        if length == _UNDEFINED:
            return None
        end = start + length
        if parent.end is not None and parent.end >= 0 and end > parent.end:
            raise self._err(f"length {length} runs past the end of the enclosing item or sequence")
        return end

    def _sequence_step(self, frame: _Frame, out: bytearray) -> None:
        tag, length = self._tag_and_length(frame.src)
        if tag == _SEQUENCE_END and frame.end is None:
            self._input.consume(8)
            self._close(out)
        elif tag == _ITEM:
            end = self._end_of(frame, self._input.pos + 8, length)
            self._input.consume(8)
            if not self._dry:
                out += struct.pack(frame.dst.order + "HHI", 0xFFFE, 0xE000, _UNDEFINED)
            self._push(replace(frame, sequence=False, end=end))
        else:
            raise self._err(
                f"expected an item in a sequence, found ({tag >> 16:04X},{tag & 0xFFFF:04X})"
            )

    def _header(self, frame: _Frame) -> tuple[int, str | None, int, int]:
        src = frame.src
        if not src.explicit:
            tag, length = self._tag_and_length(src)
            return tag, implicit_vr(tag, frame.ctx), length, 8
        b = self._need(8)
        group, element = struct.unpack_from(src.order + "HH", b)
        tag = (group << 16) | element
        if group == 0xFFFE:
            (length,) = struct.unpack_from(src.order + "I", b, 4)
            return tag, None, length, 8
        raw_vr = bytes(b[4:6])
        vr = raw_vr.decode("latin-1")
        if vr not in _KNOWN_VRS:
            raise self._err(f"unknown VR {vr!r} in ({group:04X},{element:04X})")
        if vr not in _LONG_VRS:
            (short,) = struct.unpack_from(src.order + "H", b, 6)
            return tag, vr, short, 8
        (length,) = struct.unpack_from(src.order + "I", self._need(12), 8)
        return tag, vr, length, 12

    def _dataset_step(self, frame: _Frame, out: bytearray) -> None:
        tag, vr, length, size = self._header(frame)
        if tag == _ITEM_END:
            if frame.end is not None or length != 0:
                raise self._err("item delimiter where none belongs")
            self._input.consume(8)
            self._close(out)
            return
        if tag >> 16 == 0xFFFE:
            raise self._err(f"item tag (FFFE,{tag & 0xFFFF:04X}) inside a dataset")
        end = self._end_of(frame, self._input.pos + size, length)
        if vr == "SQ" or (vr in ("UN", None) and length == _UNDEFINED):
            vr_out, src, dst = (
                ("SQ", frame.src, frame.dst) if vr == "SQ" else ("UN", _IMPLICIT_LE, _IMPLICIT_LE)
            )
            self._input.consume(size)
            self._put_header(out, frame.dst, tag, vr_out, _UNDEFINED)
            self._push(_Frame(True, end, src, dst, frame.ctx))
            return
        if length == _UNDEFINED:
            if tag == _PIXEL_DATA:
                raise self._err(
                    "encapsulated (compressed) pixel data: converting it needs decoding"
                )
            raise self._err(
                f"undefined length on ({tag >> 16:04X},{tag & 0xFFFF:04X}), which is not a sequence"
            )
        vr = vr or "UN"
        # Odd values: see the Rust walker. Not UNDEFINED here, so one more byte fits.
        pad = (b" " if vr in _TEXT_VRS else b"\0") if length % 2 else b""
        out_length = length + len(pad)
        too_long = frame.dst.explicit and vr not in _LONG_VRS and out_length > 0xFFFF
        vr_out = "UN" if too_long else vr
        swap = 1
        if frame.src.big != frame.dst.big and vr_out != "UN":
            bits = frame.ctx.bits_allocated
            whole_pixels = tag == _PIXEL_DATA and vr == "OW" and bits in (32, 64)
            swap = bits // 8 if whole_pixels and bits else _SWAP.get(vr, 1)
        if length % swap:
            raise self._err(
                f"({tag >> 16:04X},{tag & 0xFFFF:04X}) {vr} value of {length} bytes is not a whole "
                f"number of {swap}-byte units"
            )
        if length == 2 and tag in (_BITS_ALLOCATED, _PIXEL_REPRESENTATION):
            (value,) = struct.unpack_from(frame.src.order + "H", self._need(size + 2), size)
            field = "bits_allocated" if tag == _BITS_ALLOCATED else "pixel_representation"
            top = self._stack[-1]
            self._stack[-1] = replace(top, ctx=replace(top.ctx, **{field: value}))
        self._input.consume(size)
        dropped = tag & 0xFFFF == 0  # group lengths: see the Rust module
        if not dropped:
            self._put_header(out, frame.dst, tag, vr_out, out_length)
            if pad:
                self.odd.append(tag)
        self._copy = (tag, length, swap, pad)
        if dropped:
            keep, self._dry = self._dry, True
            try:
                self._copy_value(out)
            finally:
                self._dry = keep

    def _put_header(self, out: bytearray, dst: _Encoding, tag: int, vr: str, length: int) -> None:
        if self._dry:
            return
        o = dst.order
        if not dst.explicit:
            out += struct.pack(o + "HHI", tag >> 16, tag & 0xFFFF, length)
        elif vr in _LONG_VRS:
            out += struct.pack(o + "HH2sHI", tag >> 16, tag & 0xFFFF, vr.encode(), 0, length)
        else:
            out += struct.pack(o + "HH2sH", tag >> 16, tag & 0xFFFF, vr.encode(), length)

    def _copy_value(self, out: bytearray) -> None:
        assert self._copy is not None
        tag, remaining, swap, pad = self._copy
        while True:
            n = min(remaining, _CHUNK)
            data = self._input.peek(n)
            if len(data) < n:
                raise self._err(
                    f"dataset is truncated in the value of ({tag >> 16:04X},{tag & 0xFFFF:04X})"
                )
            if not self._dry:
                out += data if swap == 1 else _swapped(data, swap)
            self._input.consume(n)
            remaining -= n
            if remaining == 0 or not self._dry:
                break
        if remaining:
            self._copy = (tag, remaining, swap, pad)
            return
        self._copy = None
        if not self._dry:
            out += pad


def _swapped(data: memoryview, width: int) -> bytes:
    units = array.array(_ARRAY_CODES[width])
    units.frombytes(data)
    units.byteswap()
    return units.tobytes()


_ARRAY_CODES = {2: "H", 4: "I", 8: "Q"}


def convert_chunks(
    data: bytes | memoryview, from_syntax: str, to_syntax: str, chunk: int = 4 << 20
) -> Iterator[bytearray]:
    """Yield the converted dataset in pieces of about ``chunk`` bytes (the last may be empty)."""
    conv = Converter(data, from_syntax, to_syntax)
    while True:
        out = bytearray()
        done = conv.fill(out, chunk)
        yield out
        if done:
            return


def convert_bytes(data: bytes | memoryview, from_syntax: str, to_syntax: str) -> bytes:
    """The whole converted dataset (the same syntax twice: re-encoded, odd values padded)."""
    return b"".join(convert_chunks(data, from_syntax, to_syntax))


def check(data: bytes | memoryview, from_syntax: str, to_syntax: str) -> tuple[int, ...]:
    """Walk the whole dataset without output: raise the error converting it to ``to_syntax``
    would meet; return the tags of its odd-length values (which converting pads)."""
    conv = Converter(data, from_syntax, to_syntax, dry=True)
    out = bytearray()
    while not conv.fill(out, 1 << 62):
        pass
    return tuple(conv.odd)
