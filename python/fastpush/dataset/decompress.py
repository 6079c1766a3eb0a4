"""The fallback for a compressed file when the peer accepted only uncompressed syntaxes: decode
the pixel data through pydicom's pixel-data plugins (pylibjpeg and its openjpeg/libjpeg plugins,
or pydicom's own RLE decoder), re-encode the dataset uncompressed.

What goes out must describe its own pixels: pydicom's ``decompress()`` updates the Image Pixel
elements it documents (Photometric Interpretation, Planar Configuration, Number of Frames, the
Pixel Data VR and length); this module adds what it leaves to the caller — YCbCr that was kept
is full-sampled ``YBR_FULL`` once decoded (never ``YBR_FULL_422``), encapsulation-only elements
go — and checks the decoded length against the description before anything is sent.

Colour: a lossy source is converted from YCbCr to RGB (as pydicom and DCMTK's ``dcmdjpeg`` do
by default: its samples are approximate anyway, and RGB is what every viewer expects); a
lossless one keeps its samples exactly as decoded, in ``YBR_FULL`` if that is what they are.

Never sends a dataset without its pixels: when no codec decodes it, it is an error with a reason.
A lossy-compressed file can be decompressed, but the result says so (a warning), as the pixels
are only as good as the lossy ones.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import ConversionError
from ..uids import DEFLATED_EXPLICIT_VR_LE, EXPLICIT_VR_BE, EXPLICIT_VR_LE, IMPLICIT_VR_LE, uid_name
from . import convert as rewrite

if TYPE_CHECKING:
    from pydicom import Dataset

log = logging.getLogger(__name__)

LOSSLESS = frozenset(
    {
        "1.2.840.10008.1.2.4.57",  # JPEG Lossless
        "1.2.840.10008.1.2.4.70",  # JPEG Lossless SV1
        "1.2.840.10008.1.2.4.80",  # JPEG-LS Lossless
        "1.2.840.10008.1.2.4.90",  # JPEG 2000 Lossless
        "1.2.840.10008.1.2.4.92",  # JPEG 2000 Multi-component Lossless
        "1.2.840.10008.1.2.4.110",  # JPEG XL Lossless
        "1.2.840.10008.1.2.4.201",  # HTJ2K Lossless
        "1.2.840.10008.1.2.4.202",  # HTJ2K Lossless RPCL
        "1.2.840.10008.1.2.5",  # RLE Lossless
    }
)

# No colon: the run's summary groups failures by the reason's text up to the first one, and the
# hint must show there.
CODECS_HINT = "install the codecs with pip install 'fastpush[codecs]'"

_PIXEL_DATA = 0x7FE00010
# Extended Offset Table, its Lengths, Encapsulated Pixel Data Value Total Length: they describe
# the fragments of encapsulated pixel data and mean nothing once it is native.
_ENCAPSULATION_ONLY = (0x7FE00001, 0x7FE00002, 0x7FE00003)


@dataclass(frozen=True)
class Decompressed:
    """A dataset re-encoded uncompressed; ``warning`` is non-empty when the source was lossy."""

    data: bytes
    warning: str


def is_lossy(transfer_syntax: str) -> bool:
    return transfer_syntax not in LOSSLESS


def decompress(source: str | bytes, transfer_syntax: str, target: str) -> Decompressed:
    """Decode the Part-10 file (a path or its bytes) and encode its dataset in ``target``.

    Raises ``ConversionError`` with the reason when no installed codec can decode it, or when
    the decoded pixels do not match the image description.
    """
    from io import BytesIO

    import pydicom

    if target not in rewrite.CONVERTIBLE:
        raise ConversionError(f"cannot decompress into {uid_name(target)}")
    name = uid_name(transfer_syntax)
    with warnings.catch_warnings():
        # pydicom warns about oddities it works around (excess padding, VR guessing, a JFIF
        # marker under an RGB description); they are logged by pydicom itself and must not
        # fail the file.
        warnings.simplefilter("ignore")
        try:
            ds = pydicom.dcmread(BytesIO(source) if isinstance(source, bytes) else source)
            _refuse_nested_encapsulated(ds)
        except ConversionError:
            raise
        except Exception as exc:  # pydicom raises many types for a file it cannot parse
            raise ConversionError(f"cannot read the {name} dataset: {exc}") from exc
        has_pixels = _PIXEL_DATA in ds
        lossy = has_pixels and (
            is_lossy(transfer_syntax) or ds.get("LossyImageCompression") == "01"
        )
        if has_pixels:
            _decode(ds, transfer_syntax, lossy)
        try:
            data = _encode(ds, target)
        except ConversionError:
            raise
        except Exception as exc:  # a value pydicom cannot write back
            raise ConversionError(f"cannot re-encode the {name} dataset: {exc}") from exc
    warning = f"lossy-compressed ({name}) pixel data sent decompressed" if lossy else ""
    log.info("Decompressed %s into %s%s", name, uid_name(target), " (lossy)" if lossy else "")
    return Decompressed(data, warning)


def _decode(ds: Dataset, transfer_syntax: str, lossy: bool) -> None:
    """Decode the pixel data in place and make every pixel-describing element agree with it."""
    from pydicom.pixels.utils import decompress as pydicom_decompress
    from pydicom.pixels.utils import get_expected_length

    name = uid_name(transfer_syntax)
    missing = _missing_codec(transfer_syntax)
    if missing:
        raise ConversionError(f"cannot decompress {name}{missing}")
    try:
        pydicom_decompress(ds, as_rgb=lossy, generate_instance_uid=False)
    except Exception as exc:  # a codec failing on this stream: its message is the reason
        raise ConversionError(f"cannot decompress {name}: {exc}") from exc
    if ds.get("PhotometricInterpretation") == "YBR_FULL_422":
        # The decoders return YCbCr full-sampled (PS3.3 C.7.6.3.1.2): one Cb and Cr per pixel.
        ds.PhotometricInterpretation = "YBR_FULL"
    for tag in _ENCAPSULATION_ONLY:
        if tag in ds:
            del ds[tag]
    try:
        expected = get_expected_length(ds)
    except Exception as exc:  # an image description pydicom cannot size
        raise ConversionError(f"cannot decompress {name}: {exc}") from exc
    got = len(ds.PixelData)
    if got != expected + expected % 2:
        raise ConversionError(
            f"cannot decompress {name}: {got} bytes of pixels decoded where the image "
            f"description needs {expected}: not sent"
        )


def _missing_codec(transfer_syntax: str) -> str:
    """Why no installed codec decodes ``transfer_syntax`` (the end of a sentence that starts with
    "cannot decompress NAME"); empty when one does."""
    import pydicom
    from pydicom.pixels.decoders.base import get_decoder

    try:
        decoder = get_decoder(transfer_syntax)
    except NotImplementedError:
        # The codecs extra would not help: say so rather than send the user installing it.
        return f": pydicom {pydicom.__version__} has no decoder for it"
    if not pydicom.config.have_numpy:
        # Every decoder returns its frames as arrays, RLE's included.
        return f" ({CODECS_HINT}): numpy is not installed"
    if decoder.is_available:
        return ""
    return f" ({CODECS_HINT}): no installed plugin decodes it"


def _refuse_nested_encapsulated(ds: Dataset) -> None:
    """An icon (or any nested image) in encapsulated form cannot go out in a native syntax."""
    for elem in ds.iterall():
        if elem.VR != "SQ":
            continue
        for item in elem.value:
            if _PIXEL_DATA in item and item[_PIXEL_DATA].is_undefined_length:
                raise ConversionError(
                    f"encapsulated pixel data inside {elem.tag} (an icon image?) cannot be "
                    "sent decompressed: not sent"
                )


def _encode(ds: Dataset, target: str) -> bytes:
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset

    buffer = DicomBytesIO()
    buffer.is_little_endian = True
    buffer.is_implicit_VR = target == IMPLICIT_VR_LE
    write_dataset(buffer, ds)
    data = buffer.getvalue()
    if target in (EXPLICIT_VR_BE, DEFLATED_EXPLICIT_VR_LE):
        data = rewrite.convert_bytes(data, EXPLICIT_VR_LE, target)
    return data
