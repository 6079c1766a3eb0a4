"""Finding what to send: walking paths and reading only the file meta (group 0002) of each file.

A file is described by its SOP Class, SOP Instance, transfer syntax and the byte range of its
dataset; nothing past the file meta is read. A file that cannot be sent becomes a ``Skip`` with a
reason, never an exception.
"""

from __future__ import annotations

import os
import stat
import struct
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from .item import Item, Skip

_PREAMBLE = 128
_MAGIC = b"DICM"
# VRs whose explicit encoding has 2 reserved bytes and a 4-byte length (PS3.5 7.1.2).
_LONG_VRS = {
    b"OB",
    b"OD",
    b"OF",
    b"OL",
    b"OV",
    b"OW",
    b"SQ",
    b"SV",
    b"UC",
    b"UN",
    b"UR",
    b"UT",
    b"UV",
}
_META_LIMIT = 1 << 20


class _Unreadable(Exception):
    pass


def parse_meta(head: bytes, total: int) -> tuple[dict[int, str], int]:
    """Parse the preamble and group 0002 from the first bytes of a Part-10 file.

    Return the text values of the meta elements by element number and the dataset offset.
    ``total`` is the size of the whole file (or buffer), to tell truncation from a short read.
    """
    if len(head) < _PREAMBLE + 4 or head[_PREAMBLE : _PREAMBLE + 4] != _MAGIC:
        raise _Unreadable("not a DICOM Part-10 file (no 'DICM' after the 128-byte preamble)")
    pos = _PREAMBLE + 4
    values: dict[int, str] = {}
    while True:
        if pos + 8 > len(head):
            if pos == total:
                break
            raise _Unreadable("file meta is truncated")
        group, elem = struct.unpack_from("<HH", head, pos)
        if group != 0x0002:
            break
        vr = head[pos + 4 : pos + 6]
        if vr in _LONG_VRS:
            if pos + 12 > len(head):
                raise _Unreadable("file meta is truncated")
            (length,) = struct.unpack_from("<I", head, pos + 8)
            start = pos + 12
        else:
            (length,) = struct.unpack_from("<H", head, pos + 6)
            start = pos + 8
        end = start + length
        if end > len(head):
            raise _Unreadable("file meta is truncated")
        if vr in (b"UI", b"AE", b"SH", b"CS", b"LO"):
            values[elem] = head[start:end].decode("ascii", "replace").rstrip("\0 ")
        pos = end
    return values, pos


def _describe(
    values: dict[int, str], offset: int, size: int, path: str | None, data: bytes | None = None
) -> Item:
    sop_class = values.get(0x0002, "")
    sop_instance = values.get(0x0003, "")
    syntax = values.get(0x0010, "")
    missing = [
        name
        for name, value in (
            ("MediaStorageSOPClassUID", sop_class),
            ("MediaStorageSOPInstanceUID", sop_instance),
            ("TransferSyntaxUID", syntax),
        )
        if not value
    ]
    if missing:
        raise _Unreadable(f"file meta lacks {', '.join(missing)}")
    if offset >= size:
        raise _Unreadable("file has a file meta but no dataset")
    return Item(path, sop_class, sop_instance, syntax, offset, size - offset, data)


def read_file(path: str | os.PathLike[str]) -> Item | Skip:
    """Describe one file from its file meta, or say why it cannot be sent."""
    name = os.fspath(path)
    try:
        # Non-blocking, so that a FIFO or a device is looked at, not waited on.
        fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        with open(fd, "rb") as f:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                return Skip(name, f"not a regular file ({_file_kind(info.st_mode)})")
            size = info.st_size
            head = f.read(16384)
            values, offset = _parse_growing(f, head, size)
        return _describe(values, offset, size, name)
    except _Unreadable as exc:
        return Skip(name, str(exc))
    except OSError as exc:
        return Skip(name, f"cannot read: {exc.strerror or exc}")


def _file_kind(mode: int) -> str:
    kinds = {
        stat.S_ISFIFO: "a FIFO",
        stat.S_ISSOCK: "a socket",
        stat.S_ISCHR: "a character device",
        stat.S_ISBLK: "a block device",
    }
    return next((name for test, name in kinds.items() if test(mode)), "not a file")


def _parse_growing(f: BinaryIO, head: bytes, size: int) -> tuple[dict[int, str], int]:
    """Parse the meta, reading further when it is longer than the first read (large meta)."""
    while True:
        try:
            return parse_meta(head, size)
        except _Unreadable:
            if len(head) >= min(size, _META_LIMIT):
                raise
            head += f.read(len(head))


def describe_buffer(data: bytes) -> Item | Skip:
    """Describe a Part-10 file held in memory."""
    try:
        values, offset = parse_meta(data, len(data))
        return _describe(values, offset, len(data), None, data)
    except _Unreadable as exc:
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
