"""The fallback for a compressed file when the peer accepted only uncompressed syntaxes: decode
the pixel data through pydicom's pixel-data plugins (pylibjpeg and its openjpeg/libjpeg plugins,
python-gdcm, or pydicom's own RLE decoder), re-encode the dataset uncompressed.

Never sends a dataset without its pixels: when no codec decodes it, it is an error with a reason.
A lossy-compressed file can be decompressed, but the result says so (a warning), as the pixels
are only as good as the lossy ones.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass

from . import rewrite
from .errors import ConversionError
from .uids import DEFLATED_EXPLICIT_VR_LE, EXPLICIT_VR_BE, EXPLICIT_VR_LE, IMPLICIT_VR_LE, uid_name

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


@dataclass(frozen=True)
class Decompressed:
    """A dataset re-encoded uncompressed; ``warning`` is non-empty when the source was lossy."""

    data: bytes
    warning: str


def is_lossy(transfer_syntax: str) -> bool:
    return transfer_syntax not in LOSSLESS


def decompress(source: str | bytes, transfer_syntax: str, target: str) -> Decompressed:
    """Decode the Part-10 file (a path or its bytes) and encode its dataset in ``target``.

    Raises ``ConversionError`` with the reason when no installed codec can decode it.
    """
    from io import BytesIO

    import pydicom
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset

    if target not in rewrite.CONVERTIBLE:
        raise ConversionError(f"cannot decompress into {uid_name(target)}")
    name = uid_name(transfer_syntax)
    try:
        with warnings.catch_warnings():
            # pydicom warns about oddities it works around (excess padding, VR guessing); they
            # are logged by pydicom itself and must not fail the file.
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(BytesIO(source) if isinstance(source, bytes) else source)
            lossy = is_lossy(transfer_syntax) or ds.get("LossyImageCompression") == "01"
            # as_rgb=False keeps the photometric interpretation: the pixels as stored, decoded.
            ds.decompress(as_rgb=False, generate_instance_uid=False)
            buffer = DicomBytesIO()
            buffer.is_little_endian = True
            buffer.is_implicit_VR = target == IMPLICIT_VR_LE
            write_dataset(buffer, ds)
    except Exception as exc:  # pydicom raises many types for a missing or failing codec
        raise ConversionError(
            f"cannot decompress {name}: {exc} (install the codecs: pip install fastpush[codecs])"
        ) from exc
    data = buffer.getvalue()
    if target in (EXPLICIT_VR_BE, DEFLATED_EXPLICIT_VR_LE):
        data = rewrite.convert_bytes(data, EXPLICIT_VR_LE, target)
    warning = f"lossy-compressed ({name}) pixel data sent decompressed" if lossy else ""
    log.info("Decompressed %s into %s%s", name, uid_name(target), " (lossy)" if lossy else "")
    return Decompressed(data, warning)
