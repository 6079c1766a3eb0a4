"""Synthetic DICOM files for the demo, the tests and the benchmarks.

Everything here is deterministic for a given seed: the UIDs are derived from the seed with
:func:`pydicom.uid.generate_uid` and the pixel bytes come from :class:`random.Random`. Only pydicom
is needed (no numpy). Two entry points:

* :func:`write_study` — a small multi-class, multi-syntax study of Part-10 files;
* :func:`write_large_file` — one very large file (e.g. 1 GB) written with bounded memory, the pixel
  data streamed to disk in chunks after the rest of the dataset.
"""

from __future__ import annotations

import logging
import math
import random
import struct
from collections.abc import Sequence
from pathlib import Path

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    UID,
    CTImageStorage,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    MRImageStorage,
    MultiFrameGrayscaleWordSecondaryCaptureImageStorage,
    SecondaryCaptureImageStorage,
    generate_uid,
)

__all__ = [
    "DEFAULT_SOP_CLASSES",
    "DEFAULT_TRANSFER_SYNTAXES",
    "IMPLEMENTATION_CLASS_UID",
    "IMPLEMENTATION_VERSION_NAME",
    "write_large_file",
    "write_study",
]

logger = logging.getLogger(__name__)

DEFAULT_SOP_CLASSES: tuple[str, ...] = (
    CTImageStorage,
    MRImageStorage,
    SecondaryCaptureImageStorage,
)
DEFAULT_TRANSFER_SYNTAXES: tuple[str, ...] = (ExplicitVRLittleEndian, ImplicitVRLittleEndian)

IMPLEMENTATION_CLASS_UID: str = generate_uid(entropy_srcs=["fastpush", "synthetic"])
"""ImplementationClassUID written in the file meta of every synthetic file (stable)."""
IMPLEMENTATION_VERSION_NAME = "FASTPUSH_SYNTH"

_WRITABLE_SYNTAXES = frozenset(
    {
        ImplicitVRLittleEndian,
        ExplicitVRLittleEndian,
        ExplicitVRBigEndian,
        DeflatedExplicitVRLittleEndian,
    }
)
_STREAMABLE_SYNTAXES = frozenset({ImplicitVRLittleEndian, ExplicitVRLittleEndian})

_MODALITY = {
    CTImageStorage: "CT",
    MRImageStorage: "MR",
    SecondaryCaptureImageStorage: "OT",
    MultiFrameGrayscaleWordSecondaryCaptureImageStorage: "OT",
}
_PRIVATE_GROUP = 0x0009
_PRIVATE_CREATOR = "FASTPUSH SYNTHETIC"
_CHUNK = 8 * 1024 * 1024
_MAX_PIXEL_LENGTH = 0xFFFF_FFFE  # 0xFFFFFFFF is the undefined length
_FRAME_SIDE = 512  # columns, and at most rows, of one frame in write_large_file


def _uid(*parts: object) -> UID:
    return generate_uid(entropy_srcs=[str(p) for p in parts])


def _check_syntax(transfer_syntax: str, allowed: frozenset[UID]) -> UID:
    ts = UID(transfer_syntax)
    if ts not in allowed:
        names = ", ".join(sorted(u.name for u in allowed))
        raise ValueError(f"unsupported transfer syntax {ts} ({ts.name}); use one of: {names}")
    return ts


def _matrix(pixels: int) -> tuple[int, int]:
    """Return ``(rows, columns)`` with ``rows * columns`` equal to, or just under, ``pixels``.

    An exact near-square factorisation is preferred; otherwise a square-ish matrix that
    undershoots by less than one row.
    """
    pixels = max(1, pixels)
    side = math.isqrt(pixels)
    for columns in range(side, max(1, side // 4) - 1, -1):
        if pixels % columns == 0 and pixels // columns <= 0xFFFF:
            return pixels // columns, columns
    columns = min(max(1, side), 0xFFFF)
    rows = min(max(1, pixels // columns), 0xFFFF)
    return rows, columns


def _file_meta(sop_class: str, sop_instance: str, transfer_syntax: UID) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(sop_class)
    meta.MediaStorageSOPInstanceUID = UID(sop_instance)
    meta.TransferSyntaxUID = transfer_syntax
    meta.ImplementationClassUID = UID(IMPLEMENTATION_CLASS_UID)
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME
    return meta


def _base_dataset(
    *,
    sop_class: str,
    sop_instance: str,
    study_uid: str,
    series_uid: str,
    frame_of_reference: str,
    patient_id: str,
    series_number: int,
    instance_number: int,
    rows: int,
    columns: int,
    tag: str,
) -> Dataset:
    """An image dataset without Pixel Data: patient/study/series/image attributes, a sequence
    with one item and a private block."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SOPClassUID = UID(sop_class)
    ds.SOPInstanceUID = UID(sop_instance)
    ds.StudyDate = "20240102"
    ds.SeriesDate = "20240102"
    ds.ContentDate = "20240102"
    ds.StudyTime = "101500"
    ds.ContentTime = f"1015{instance_number % 60:02d}"
    ds.AccessionNumber = f"ACC{patient_id[-6:]}"
    ds.Modality = _MODALITY.get(UID(sop_class), "OT")
    ds.ConversionType = "WSD"
    ds.Manufacturer = "fastpush"
    ds.ReferringPhysicianName = "Synthetic^Referrer"
    ds.StudyDescription = f"fastpush synthetic study ({tag})"
    ds.SeriesDescription = f"{ds.Modality} series"

    code = Dataset()
    code.CodeValue = "FP-0001"
    code.CodingSchemeDesignator = "99FASTPUSH"
    code.CodeMeaning = "Synthetic test procedure"
    ds.ProcedureCodeSequence = [code]

    ds.PatientName = "Synthetic^Patient"
    ds.PatientID = patient_id
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "O"
    ds.StudyInstanceUID = UID(study_uid)
    ds.SeriesInstanceUID = UID(series_uid)
    ds.StudyID = "1"
    ds.SeriesNumber = series_number
    ds.InstanceNumber = instance_number
    ds.FrameOfReferenceUID = UID(frame_of_reference)
    ds.PositionReferenceIndicator = ""
    ds.ImagePositionPatient = [0.0, 0.0, float(instance_number)]
    ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    ds.SliceThickness = 1.0
    ds.PixelSpacing = [0.5, 0.5]

    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = rows
    ds.Columns = columns
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    if UID(sop_class) == CTImageStorage:
        ds.RescaleIntercept = -1024
        ds.RescaleSlope = 1
        ds.KVP = 120

    block = ds.private_block(_PRIVATE_GROUP, _PRIVATE_CREATOR, create=True)
    block.add_new(0x01, "LO", f"synthetic {tag}")
    block.add_new(0x02, "UL", instance_number)
    return ds


def write_study(
    folder: Path,
    *,
    count: int = 12,
    pixel_bytes: int = 64 * 1024,
    sop_classes: Sequence[str] = DEFAULT_SOP_CLASSES,
    transfer_syntaxes: Sequence[str] = DEFAULT_TRANSFER_SYNTAXES,
    seed: int = 0,
) -> list[Path]:
    """Write ``count`` valid Part-10 files into ``folder`` and return their paths, in order.

    File ``i`` has SOP class ``sop_classes[i % len(sop_classes)]`` and transfer syntax
    ``transfer_syntaxes[i % len(transfer_syntaxes)]``. Each SOP class gets its own study and
    series (one patient). Pixel data is 16-bit MONOCHROME2 of ``rows * columns * 2`` bytes, the
    largest such length not above ``pixel_bytes`` for a near-square matrix (exactly
    ``pixel_bytes`` when it factorises nicely, e.g. any power of two). Uncompressed transfer
    syntaxes only (Implicit/Explicit VR LE, Explicit VR BE, Deflated Explicit VR LE).

    The same arguments always produce byte-identical files.
    """
    if count < 0:
        raise ValueError("count must be >= 0")
    if pixel_bytes < 2:
        raise ValueError("pixel_bytes must be >= 2")
    if not sop_classes or not transfer_syntaxes:
        raise ValueError("sop_classes and transfer_syntaxes must not be empty")
    syntaxes = [_check_syntax(ts, _WRITABLE_SYNTAXES) for ts in transfer_syntaxes]

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rows, columns = _matrix(pixel_bytes // 2)
    patient_id = f"FP{seed % 10**8:08d}"
    rng = random.Random(seed)

    paths: list[Path] = []
    for index in range(count):
        sop_class = sop_classes[index % len(sop_classes)]
        class_index = index % len(sop_classes)
        syntax = syntaxes[index % len(syntaxes)]
        sop_instance = _uid("fastpush", seed, "instance", index)
        ds = _base_dataset(
            sop_class=sop_class,
            sop_instance=sop_instance,
            study_uid=_uid("fastpush", seed, "study", class_index, sop_class),
            series_uid=_uid("fastpush", seed, "series", class_index, sop_class),
            frame_of_reference=_uid("fastpush", seed, "for", class_index),
            patient_id=patient_id,
            series_number=class_index + 1,
            instance_number=index // len(sop_classes) + 1,
            rows=rows,
            columns=columns,
            tag=f"seed {seed}",
        )
        ds.PixelData = rng.randbytes(rows * columns * 2)
        ds["PixelData"].VR = "OW"
        ds.file_meta = _file_meta(sop_class, sop_instance, syntax)

        modality = _MODALITY.get(UID(sop_class), "OT")
        path = folder / f"{index:04d}_{modality}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    logger.debug("wrote %d synthetic files to %s", len(paths), folder)
    return paths


def write_large_file(
    path: Path,
    size_bytes: int,
    *,
    transfer_syntax: str = ExplicitVRLittleEndian,
) -> Path:
    """Write one Part-10 file of about ``size_bytes`` with bounded memory.

    The dataset (a Multi-frame Grayscale Word Secondary Capture image, 16-bit) is written by
    pydicom without Pixel Data; the (7FE0,0010) OW element header is then appended and the pixel
    bytes streamed in 8 MiB chunks of a repeated random block. Frames have 512 columns and at most
    512 rows (a file under 1 KiB of pixels gets one tiny frame); Rows, Columns and NumberOfFrames
    always match the pixel length, which stays within a frame's row of the size asked.
    The file is never larger than ``size_bytes`` unless that is below the ~1.5 KB the
    non-pixel part needs. Explicit or Implicit VR Little Endian. Returns ``path``.
    """
    ts = _check_syntax(transfer_syntax, _STREAMABLE_SYNTAXES)
    explicit = ts == ExplicitVRLittleEndian
    path = Path(path)
    sop_class = MultiFrameGrayscaleWordSecondaryCaptureImageStorage
    sop_instance = _uid("fastpush", "large", path.name, size_bytes, ts)

    def header(rows: int, columns: int, frames: int) -> Dataset:
        ds = _base_dataset(
            sop_class=sop_class,
            sop_instance=sop_instance,
            study_uid=_uid("fastpush", "large", "study", size_bytes),
            series_uid=_uid("fastpush", "large", "series", size_bytes),
            frame_of_reference=_uid("fastpush", "large", "for", size_bytes),
            patient_id="FPLARGE0",
            series_number=1,
            instance_number=1,
            rows=rows,
            columns=columns,
            tag=f"large {size_bytes}",
        )
        ds.NumberOfFrames = frames
        ds.FrameIncrementPointer = 0x00181063  # Frame Time
        ds.FrameTime = 33.3
        ds.file_meta = _file_meta(sop_class, sop_instance, ts)
        return ds

    element_header = 12 if explicit else 8
    path.parent.mkdir(parents=True, exist_ok=True)
    # Measure the header with placeholder values; only the width of the NumberOfFrames string
    # depends on the choice, so a small slack keeps the file at or under size_bytes.
    header(1, 1, 1).save_as(path, enforce_file_format=True)
    slack = 16
    budget = max(2, size_bytes - path.stat().st_size - element_header - slack)
    budget = min(budget, _MAX_PIXEL_LENGTH)
    row_bytes = _FRAME_SIDE * 2
    if budget >= row_bytes:
        # 512 columns; as few frames of at most 512 rows as hold the budget, rows filled evenly.
        columns = _FRAME_SIDE
        frames = -(-budget // (_FRAME_SIDE * row_bytes))
        rows = budget // (frames * row_bytes)
    else:
        rows, columns = _matrix(budget // 2)
        frames = 1
    header(rows, columns, frames).save_as(path, enforce_file_format=True)
    length = rows * columns * 2 * frames

    block = random.Random(size_bytes).randbytes(_CHUNK)
    with path.open("ab") as f:
        if explicit:
            f.write(struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OW", 0, length))
        else:
            f.write(struct.pack("<HHI", 0x7FE0, 0x0010, length))
        view = memoryview(block)
        remaining = length
        while remaining:
            n = min(remaining, _CHUNK)
            f.write(view[:n])
            remaining -= n
    logger.debug("wrote %s: %d frames of %dx%d, %d bytes", path, frames, rows, columns, length)
    return path
