"""The Part-10 file header: the 128-byte preamble, ``DICM`` and the file meta group.

The one writer of a file meta in fastpush: the storage SCP puts it in front of each received
dataset (the bytes ``storescp +B`` writes), and a pydicom Dataset handed to a sender is framed
with it before it is described like a file. Reading a file meta is ``scan``'s business.
"""

from __future__ import annotations

import struct

from ..uids import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME

PREAMBLE = 128
MAGIC = b"DICM"


def _element(tag: int, vr: bytes, value: bytes) -> bytes:
    if vr == b"OB":
        return struct.pack("<HH2s2xI", tag >> 16, tag & 0xFFFF, vr, len(value)) + value
    return struct.pack("<HH2sH", tag >> 16, tag & 0xFFFF, vr, len(value)) + value


def _ui(uid: str) -> bytes:
    raw = uid.encode("ascii")
    return raw + b"\0" if len(raw) % 2 else raw


def _text(text: str) -> bytes:
    raw = text.encode("ascii", "replace")
    return raw + b" " if len(raw) % 2 else raw


def file_meta(
    sop_class_uid: str,
    sop_instance_uid: str,
    transfer_syntax: str,
    source_ae: str | None = None,
) -> bytes:
    """The 128-byte preamble, ``DICM`` and the file meta group (Explicit VR Little Endian)
    of a file holding ``sop_instance_uid`` of ``sop_class_uid`` in ``transfer_syntax``, with
    fastpush's implementation UID and name, and Source Application Entity Title ``source_ae``
    (left out when None)."""
    elements = [
        _element(0x00020001, b"OB", b"\0\1"),
        _element(0x00020002, b"UI", _ui(sop_class_uid)),
        _element(0x00020003, b"UI", _ui(sop_instance_uid)),
        _element(0x00020010, b"UI", _ui(transfer_syntax)),
        _element(0x00020012, b"UI", _ui(IMPLEMENTATION_CLASS_UID)),
        _element(0x00020013, b"SH", _text(IMPLEMENTATION_VERSION_NAME)),
    ]
    if source_ae is not None:
        elements.append(_element(0x00020016, b"AE", _text(source_ae)))
    body = b"".join(elements)
    group_length = _element(0x00020000, b"UL", struct.pack("<I", len(body)))
    return b"\0" * PREAMBLE + MAGIC + group_length + body
