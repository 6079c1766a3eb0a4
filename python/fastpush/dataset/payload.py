"""What goes on the wire for one item: the dataset bytes or file region, and how they must be
changed for the syntax the peer accepted — converted in the data path (uncompressed syntaxes),
decompressed through pydicom (compressed ones), padded (an odd deflated stream), or re-encoded
with its odd-length values padded (a non-conformant dataset of odd length).

``association`` decides which accepted context carries the item; this module says what to send
over it, or why it cannot be sent.
"""

from __future__ import annotations

import mmap
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from ..errors import ConversionError, SourceError
from ..uids import DEFLATED_EXPLICIT_VR_LE, EXPLICIT_VR_BE, IMPLICIT_VR_LE, uid_name
from .convert import CONVERTIBLE
from .item import Item, Source

if TYPE_CHECKING:
    from pydicom import Dataset

    from .._core import EditPlan, LiveDataset


class Live(Protocol):
    """A dataset sent while it is still being received (cut-through)."""

    dataset: LiveDataset
    stall: float | None
    """Seconds the receive may store nothing new before the send is given up (None: no
    limit)."""

    def wanted(self) -> bool:
        """Once the dataset is whole: whether its receiver kept it, so the message is finished
        (else it is given up, the association aborted). May block until the receiver knows."""
        ...


@dataclass(frozen=True)
class Payload:
    dataset: Source
    convert: tuple[str, str] | None = None
    """``(from, to)`` syntaxes for the data path's streaming rewriter."""
    warning: str = ""
    """Why the result is a warning even if the peer answers success (lossy decompression, a
    repaired dataset)."""
    repaired: str = ""
    """What was wrong with a dataset that goes out repaired, e.g. ``"odd-length value in
    (300A,00B0)"``; empty when nothing was. ``Proposal.strict`` refuses it: see
    :func:`refuse_repaired`."""
    verify: str | None = None
    """The syntax to walk a verbatim dataset in before it is sent (a truncated one fails)."""
    edits: EditPlan | None = None
    """Edits the data path applies on the way (always with ``convert``, maybe to the same
    syntax)."""
    live: Live | None = None
    """The dataset is still being received: sent as it arrives, verbatim (the Rust engine
    only)."""


def refuse_repaired(payload: Payload) -> None:
    """Raise ``ConversionError`` when ``payload`` was repaired (``Proposal.strict``)."""
    if payload.repaired:
        raise ConversionError(f"{payload.repaired}: not sent (--strict)")


def prepare(
    item: Item, syntax: str, *, strict: bool = False, edits: EditPlan | None = None
) -> Payload:
    """The payload that sends ``item`` in ``syntax``, with ``edits`` applied on the way.
    Raises ``ConversionError`` with the reason it cannot (``strict``: also when it would go
    out repaired), ``SourceError`` when its file cannot be read."""
    try:
        payload = _prepare(item, syntax) if edits is None else _edited(item, syntax, edits)
    except OSError as exc:
        raise SourceError(exc.errno, exc.strerror, item.path) from exc
    if strict:
        refuse_repaired(payload)
    return payload


def _prepare(item: Item, syntax: str) -> Payload:
    dataset = item.source
    if item.length % 2 and item.transfer_syntax in _WALKABLE:
        return _repaired(dataset, item.transfer_syntax, syntax)
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
    return Payload(
        dataset, verify=item.transfer_syntax if item.transfer_syntax in _WALKABLE else None
    )


def _edited(item: Item, syntax: str, edits: EditPlan) -> Payload:
    """An edited dataset always goes through the converter (to its own syntax when it needs no
    conversion; a compressed one with its pixel data fragments copied); one that must be
    decompressed is decompressed first, then edited."""
    if item.transfer_syntax in CONVERTIBLE or item.transfer_syntax == syntax:
        return Payload(item.source, (item.transfer_syntax, syntax), edits=edits)
    from .decompress import decompress

    part10 = item.data if item.data is not None else item.path
    assert part10 is not None
    unpacked = decompress(part10, item.transfer_syntax, syntax)
    return Payload(unpacked.data, (syntax, syntax), warning=unpacked.warning, edits=edits)


# Uncompressed syntaxes whose dataset length is the sum of its elements' (a deflated stream's
# length says nothing about its values).
_WALKABLE = CONVERTIBLE - {DEFLATED_EXPLICIT_VR_LE}
_NAMED = 5


def _repaired(dataset: Source, transfer_syntax: str, syntax: str) -> Payload:
    """An odd-length dataset: when it parses, it holds odd-length values (element headers are
    even), and goes out through the converter, which pads them — in ``syntax``, or re-encoded in
    its own. A truncated one fails with the element it ends in."""
    from .convert import check

    convert = (transfer_syntax, syntax)
    failed = ""
    with _view(dataset) as data:
        try:
            odd = check(data, *convert)
        except ConversionError as exc:
            # Raised outside: its traceback holds views into the mapping, which must close.
            failed = str(exc)
    if failed:
        raise ConversionError(f"the dataset has an odd length and does not parse: {failed}")
    if not odd:  # only an odd group length, which converting drops
        return Payload(dataset, convert)
    tags = ", ".join(f"({t >> 16:04X},{t & 0xFFFF:04X})" for t in odd[:_NAMED])
    if len(odd) > _NAMED:
        tags += f" and {len(odd) - _NAMED} more"
    repaired = f"odd-length value{'s' if len(odd) > 1 else ''} in {tags}"
    return Payload(dataset, convert, f"{repaired} padded to even length", repaired)


@contextmanager
def _view(dataset: Source) -> Iterator[memoryview]:
    if isinstance(dataset, bytes):
        yield memoryview(dataset)
        return
    path, offset, length = dataset
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
        view = memoryview(mapped)[offset : offset + length]
        try:
            yield view
        finally:
            view.release()


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
