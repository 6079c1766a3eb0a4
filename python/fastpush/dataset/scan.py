"""Finding what to send: walking paths and describing each file from its first bytes.

A file is described by its SOP Class and Instance UIDs — the dataset's own (0008,0016) and
(0008,0018), which go on the wire — its transfer syntax and the byte range of its dataset. Part-10
files are read through their file meta; a dataset without one (or with a meta that lacks its
transfer syntax) has its encoding detected from its first element, as DCMTK and pydicom do. Only
the start of the dataset is read (see ``dataset_head``). A file that cannot be sent becomes a
``Skip`` with a reason, never an exception; what was odd but sendable is said in ``notes``.
"""

from __future__ import annotations

import os
import stat
import struct
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from ..uids import EXPLICIT_VR_BE, EXPLICIT_VR_LE, IMPLICIT_VR_LE
from .header import (
    DEFLATED_SYNTAXES,
    HEAD,
    LONG_VRS,
    SYNTAX_NAMES,
    BufferSource,
    FileSource,
    InflatedSource,
    Source,
    Unreadable,
    detect_raw,
    looks_explicit,
    read_uids,
)
from .item import Item, Skip, Storable
from .meta import MAGIC, PREAMBLE, file_meta

if TYPE_CHECKING:
    from pydicom import Dataset

# Bytes read (or inflated) per file before giving up on finding where its dataset starts and
# what its UIDs are: far above any real file meta and group 0008.
_BUDGET = 8 << 20
_MAX_META_VALUE = 1024
_META_NAMES = {0x0002: "MediaStorageSOPClassUID", 0x0003: "MediaStorageSOPInstanceUID"}
_DATASET_NAMES = {0x0002: "SOPClassUID", 0x0003: "SOPInstanceUID"}
_META_ELEMENT = struct.Struct("<HHI")
_META_LONG = struct.Struct("<I")
_META_VALUES = frozenset({0x0002, 0x0003, 0x0010})


def parse_meta(src: Source, pos: int, size: int) -> tuple[dict[int, str], int]:
    """Parse group 0002 from ``pos``: the text values of its UID elements by element number, and
    the dataset offset. An Implicit VR meta (a known writer bug) is read too, as pydicom does."""
    buf, base = src.window(pos, 12)
    implicit = not looks_explicit(buf[pos - base + 4 : pos - base + 6])
    values: dict[int, str] = {}
    while True:
        off = pos - base
        if off + 12 > len(buf):
            buf, base = src.window(pos, 12)
            off = pos - base
        available = len(buf) - off
        if available < 8:
            if available:
                raise Unreadable("file meta is truncated")
            break
        group, elem, length = _META_ELEMENT.unpack_from(buf, off)
        if group != 0x0002:
            break
        start = pos + 8
        if not implicit:
            if buf[off + 4 : off + 6] in LONG_VRS:
                if available < 12:
                    raise Unreadable("file meta is truncated")
                start = pos + 12
                (length,) = _META_LONG.unpack_from(buf, off + 8)
            else:
                length >>= 16
        if elem in _META_VALUES:
            if length > _MAX_META_VALUE:
                raise Unreadable(f"file meta element (0002,{elem:04X}) is {length} bytes long")
            value = src.get(start, length)
            if len(value) < length:
                raise Unreadable("file meta is truncated")
            values[elem] = value.decode("ascii", "replace").strip("\0 ")
        pos = start + length
    if pos > size:
        raise Unreadable("file meta is truncated")
    return values, pos


def _describe(src: Source, size: int, path: str | None, data: bytes | None = None) -> Item:
    head = src.get(0, PREAMBLE + 4)
    notes: list[str] = []
    values: dict[int, str] = {}
    offset = 0
    if head[PREAMBLE:] == MAGIC:
        values, offset = parse_meta(src, PREAMBLE + 4, size)
    else:
        implicit, little = detect_raw(head, size)
        if head[:2] == b"\x02\x00" and not implicit:
            values, offset = parse_meta(src, 0, size)
            notes.append("file meta has no preamble")
    if values or offset:
        if offset >= size:
            raise Unreadable("file has a file meta but no dataset")
        syntax = _meta_syntax(src, values.get(0x0010, ""), offset, size, notes)
    else:
        syntax = _SYNTAXES[implicit, little]
        notes.append(f"no file meta: {SYNTAX_NAMES[syntax]} detected from the dataset")
    walked, start = (src, offset)
    if syntax in DEFLATED_SYNTAXES:
        walked, start = InflatedSource(src, offset, _BUDGET), 0
    sop_class, sop_instance = read_uids(
        walked,
        start,
        implicit=syntax == IMPLICIT_VR_LE,
        little=syntax != EXPLICIT_VR_BE,
        strict_order=not values and not offset,
    )
    if not sop_class:
        raise Unreadable("dataset has no SOP Class UID (0008,0016)")
    if not sop_instance:
        raise Unreadable("dataset has no SOP Instance UID (0008,0018)")
    if values or offset:
        for elem, used in ((0x0002, sop_class), (0x0003, sop_instance)):
            _compare(values.get(elem, ""), used, elem, notes)
    return Item(path, sop_class, sop_instance, syntax, offset, size - offset, data, tuple(notes))


_SYNTAXES = {
    (True, True): IMPLICIT_VR_LE,
    (False, True): EXPLICIT_VR_LE,
    (False, False): EXPLICIT_VR_BE,
}


def _meta_syntax(src: Source, declared: str, offset: int, size: int, notes: list[str]) -> str:
    """The syntax the dataset is in: the meta's, unless it lacks one or the dataset shows the
    other VR encoding (pydicom reads such files the same way)."""
    first = src.get(offset, 8)
    if not declared:
        try:
            found = _SYNTAXES[detect_raw(first, size - offset)]
        except Unreadable:
            raise Unreadable(
                "file meta lacks TransferSyntaxUID and the dataset's first element does not"
                " tell its encoding"
            ) from None
        notes.append(f"file meta lacks TransferSyntaxUID: {SYNTAX_NAMES[found]} detected")
        return found
    if declared in DEFLATED_SYNTAXES or len(first) < 6:
        return declared
    explicit = looks_explicit(first[4:6])
    found = declared
    if declared == IMPLICIT_VR_LE and explicit:
        found = EXPLICIT_VR_LE
    elif declared == EXPLICIT_VR_LE and not explicit:
        found = IMPLICIT_VR_LE
    elif declared != IMPLICIT_VR_LE and not explicit:
        raise Unreadable(
            f"file meta TransferSyntaxUID {declared} is an explicit VR syntax but the dataset is"
            " Implicit VR: it cannot be sent in either"
        )
    if found != declared:
        notes.append(
            f"file meta TransferSyntaxUID {SYNTAX_NAMES[declared]} does not match the dataset's"
            f" encoding: sent as {SYNTAX_NAMES[found]}"
        )
    return found


def _compare(meta: str, used: str, elem: int, notes: list[str]) -> None:
    if not meta:
        notes.append(f"file meta lacks {_META_NAMES[elem]}: sent with the dataset's")
    elif meta != used:
        notes.append(
            f"file meta {_META_NAMES[elem]} {meta} differs from the dataset's"
            f" {_DATASET_NAMES[elem]} {used}: sent with the dataset's"
        )


def read_file(path: str | os.PathLike[str]) -> Item | Skip:
    """Describe one file from its first bytes, or say why it cannot be sent."""
    name = os.fspath(path)
    try:
        # A bare descriptor: no buffered file object to build, the first read sized for the need.
        # Non-blocking, so that a FIFO or a device is looked at, not waited on.
        fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK)
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                return Skip(name, f"not a regular file ({_file_kind(info.st_mode)})")
            size = info.st_size
            return _describe(FileSource(fd, os.read(fd, HEAD), size, _BUDGET), size, name)
        finally:
            os.close(fd)
    except Unreadable as exc:
        return Skip(name, str(exc))
    except OSError as exc:
        return Skip(name, f"cannot read: {exc.strerror or exc}")


def _file_kind(mode: int) -> str:
    kinds = {
        stat.S_ISFIFO: "a FIFO",
        stat.S_ISSOCK: "a socket",
        stat.S_ISCHR: "a character device",
        stat.S_ISBLK: "a block device",
        stat.S_ISDIR: "a folder",
    }
    return next((name for test, name in kinds.items() if test(mode)), "not a file")


def describe_buffer(data: bytes) -> Item | Skip:
    """Describe a DICOM file (or bare dataset) held in memory."""
    try:
        return _describe(BufferSource(data), len(data), None, data)
    except Unreadable as exc:
        return Skip(None, str(exc))


def expand(paths: Iterable[str | os.PathLike[str]], recursive: bool = True) -> Iterator[str]:
    """Every file named by ``paths``, folders expanded (recursively if asked) in sorted order.

    Everything but a folder is yielded — a path that does not exist, a dangling link, a FIFO —
    so that it gets a result of its own.
    """
    for path in paths:
        name = os.fspath(path)
        if os.path.isdir(name):
            walker = sorted(Path(name).rglob("*") if recursive else Path(name).iterdir())
            yield from (str(p) for p in walker if not p.is_dir())
        else:
            yield name


def to_item(obj: Storable) -> Item | Skip:
    """The ``Item`` for a path, Part-10 bytes or pydicom Dataset (an ``Item`` stays as it is),
    or why it cannot be sent."""
    if isinstance(obj, Item):
        return obj
    if isinstance(obj, (str, os.PathLike)):
        return read_file(obj)
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return describe_buffer(bytes(obj))
    return _describe_dataset(obj)


def _describe_dataset(ds: Dataset) -> Item | Skip:
    """A Dataset is encoded once, as Part-10 bytes in its own transfer syntax (its file meta's,
    else Explicit VR LE): from there it is sent, converted or decompressed as a file would be."""
    from .payload import encode_dataset  # pydicom: only for a Dataset

    sop_class = str(ds.get("SOPClassUID", ""))
    sop_instance = str(ds.get("SOPInstanceUID", ""))
    if not sop_class or not sop_instance:
        return Skip(None, "dataset lacks SOPClassUID or SOPInstanceUID")
    own = getattr(ds, "file_meta", None)
    syntax = str(own.get("TransferSyntaxUID", "")) if own is not None else ""
    syntax = syntax or EXPLICIT_VR_LE
    try:
        body = encode_dataset(ds, syntax)
        header = file_meta(sop_class, sop_instance, syntax)
    except Exception as exc:  # pydicom raises many types for a dataset it cannot write
        return Skip(None, f"cannot encode dataset: {exc}")
    offset = len(header)
    data = header + body
    return Item(None, sop_class, sop_instance, syntax, offset, len(body), data)
