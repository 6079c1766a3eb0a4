"""What goes on the wire for one item: the dataset bytes or file region, and how they must be
changed for the syntax the peer accepted — converted in the data path (uncompressed syntaxes),
decompressed through pydicom (compressed ones), or padded (an odd deflated stream).

``association`` decides which accepted context carries the item; this module says what to send
over it, or why it cannot be sent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import ConversionError
from .item import Item, Source
from .rewrite import CONVERTIBLE
from .uids import DEFLATED_EXPLICIT_VR_LE, EXPLICIT_VR_BE, IMPLICIT_VR_LE, uid_name

if TYPE_CHECKING:
    from pydicom import Dataset


@dataclass(frozen=True)
class Payload:
    dataset: Source
    convert: tuple[str, str] | None = None
    """``(from, to)`` syntaxes for the data path's streaming rewriter."""
    warning: str = ""
    """Why the result is a warning even if the peer answers success (lossy decompression)."""


def prepare(item: Item, syntax: str) -> Payload:
    """The payload that sends ``item`` in ``syntax``. Raises ``ConversionError`` with the
    reason it cannot."""
    dataset = item.source
    if syntax != item.transfer_syntax:
        if item.transfer_syntax in CONVERTIBLE:
            return Payload(dataset, (item.transfer_syntax, syntax))
        from .decompress import decompress  # pydicom and codecs: only when needed

        part10 = item.data if item.data is not None else item.path
        assert part10 is not None
        unpacked = decompress(part10, item.transfer_syntax, syntax)
        return Payload(unpacked.data, warning=unpacked.warning)
    if item.length % 2:
        # PDV fragments must be even, and a peer refuses an odd one mid-message.
        if item.transfer_syntax != DEFLATED_EXPLICIT_VR_LE:
            raise ConversionError(
                f"the dataset has an odd length ({item.length} bytes), which DICOM does not "
                "allow: not sent"
            )
        # PS3.5 A.5: a deflated stream of odd length is padded with one null byte.
        return Payload(_read(dataset) + b"\0")
    return Payload(dataset)


def _read(dataset: Source) -> bytes:
    if isinstance(dataset, bytes):
        return dataset
    path, offset, length = dataset
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(length)


def encode_dataset(ds: Dataset, syntax: str) -> bytes:
    """A pydicom Dataset's bytes in ``syntax``; ValueError for one pydicom cannot write."""
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset

    if syntax == DEFLATED_EXPLICIT_VR_LE:
        raise ValueError(f"cannot encode a dataset in {uid_name(syntax)}")
    # Every other syntax encodes the dataset as Explicit VR LE (compressed ones encapsulate
    # only the pixel data), but for Implicit VR LE and the retired big-endian one.
    buffer = DicomBytesIO()
    buffer.is_little_endian = syntax != EXPLICIT_VR_BE
    buffer.is_implicit_VR = syntax == IMPLICIT_VR_LE
    write_dataset(buffer, ds)
    return buffer.getvalue()
