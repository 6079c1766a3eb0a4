"""One input, described once: the ``Item`` that flows from the scan through planning, the client
and the association to the transport.

An input is a path, Part-10 bytes or a pydicom Dataset. ``describe`` turns any of them into an
``Item`` — its identity (SOP Class and Instance UID, from the dataset itself), its transfer
syntax and where its dataset bytes are — or into a ``Skip`` saying why it cannot be sent.
Nothing downstream looks at the input again.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeAlias

from .uids import EXPLICIT_VR_LE

if TYPE_CHECKING:
    from pydicom import Dataset

Source: TypeAlias = "bytes | tuple[str, int, int]"
"""A dataset in memory, or ``(path, offset, length)`` of a file: what a transport sends."""

Pair = tuple[str, str]
"""(SOP Class UID, transfer syntax UID)"""


@dataclass(frozen=True)
class Item:
    """A dataset ready to send: ``length`` bytes from ``offset`` of the file at ``path``, or of
    ``data`` when it is held in memory (Part-10 bytes, or a Dataset encoded once)."""

    path: str | None
    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax: str
    offset: int
    length: int
    data: bytes | None = None
    notes: tuple[str, ...] = ()

    @property
    def pair(self) -> Pair:
        return self.sop_class_uid, self.transfer_syntax

    @property
    def source(self) -> Source:
        if self.data is None:
            assert self.path is not None
            return self.path, self.offset, self.length
        if self.offset == 0 and self.length == len(self.data):
            return self.data
        return self.data[self.offset : self.offset + self.length]

    @property
    def name(self) -> str:
        """How logs and messages name it."""
        return self.path or self.sop_instance_uid


@dataclass(frozen=True)
class Skip:
    """An input that will not be sent, and why (``path`` is None for an in-memory input)."""

    path: str | None
    reason: str


Storable: TypeAlias = "str | os.PathLike[str] | bytes | Dataset | Item"


def describe(obj: Storable) -> Item | Skip:
    """The ``Item`` for a path, Part-10 bytes or pydicom Dataset (an ``Item`` stays as it is),
    or why it cannot be sent."""
    from .scan import describe_buffer, read_file

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
    from pydicom.dataset import FileMetaDataset
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_file_meta_info
    from pydicom.uid import UID

    from .payload import encode_dataset

    sop_class = str(ds.get("SOPClassUID", ""))
    sop_instance = str(ds.get("SOPInstanceUID", ""))
    if not sop_class or not sop_instance:
        return Skip(None, "dataset lacks SOPClassUID or SOPInstanceUID")
    own = getattr(ds, "file_meta", None)
    syntax = str(own.get("TransferSyntaxUID", "")) if own is not None else ""
    syntax = syntax or EXPLICIT_VR_LE
    try:
        body = encode_dataset(ds, syntax)
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = UID(sop_class)
        meta.MediaStorageSOPInstanceUID = UID(sop_instance)
        meta.TransferSyntaxUID = UID(syntax)
        header = DicomBytesIO()
        header.write(b"\0" * 128 + b"DICM")
        write_file_meta_info(header, meta, enforce_standard=True)
    except Exception as exc:  # pydicom raises many types for a dataset it cannot write
        return Skip(None, f"cannot encode dataset: {exc}")
    offset = header.tell()
    data = header.getvalue() + body
    return Item(None, sop_class, sop_instance, syntax, offset, len(body), data)
