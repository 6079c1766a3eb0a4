"""Where a storage SCP puts what it receives: Part-10 files like DCMTK ``storescp +B``.

Owns the file meta header written in front of each dataset (the received bytes follow
untouched), the file names (modality prefix + SOP Instance UID, as storescp names them), the
layout (flat, per study, per calling AE), the temporary name a dataset is written under and the
rename that makes it visible, and durability (``fsync`` of the file's folder). Receiving the
bytes is the Rust core's job; deciding what to answer is ``server``'s.
"""

from __future__ import annotations

import contextlib
import enum
import functools
import itertools
import os
import re
import struct
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path

from .dataset_head import BufferSource, Unreadable, read_top_uids
from .uids import (
    DEFLATED_EXPLICIT_VR_LE,
    EXPLICIT_VR_BE,
    IMPLEMENTATION_CLASS_UID,
    IMPLEMENTATION_VERSION_NAME,
    IMPLICIT_VR_LE,
)

# Bytes of the start of a dataset kept to find the Study Instance UID (layout per study): it sits
# in group 0020, after the patient and study modules, well within this in practice.
STUDY_HEAD = 64 << 10
UNKNOWN_STUDY = "unknown-study"

_STUDY_INSTANCE_UID = 0x0020000D

# File name prefixes by SOP class keyword, after DCMTK's dcmSOPClassUIDToModality: the first
# keyword start that matches wins; SR documents and presentation states are matched after.
_PREFIXES = (
    ("MRSpectroscopy", "MS"),
    ("CT", "CT"),
    ("EnhancedCT", "CT"),
    ("LegacyConvertedEnhancedCT", "CT"),
    ("MR", "MR"),
    ("EnhancedMR", "MR"),
    ("LegacyConvertedEnhancedMR", "MR"),
    ("Ultrasound", "US"),
    ("EnhancedUS", "US"),
    ("SecondaryCapture", "SC"),
    ("MultiFrame", "SC"),
    ("ComputedRadiography", "CR"),
    ("DigitalMammography", "MG"),
    ("BreastTomosynthesis", "MG"),
    ("DigitalIntraOral", "IO"),
    ("DigitalXRay", "DX"),
    ("NuclearMedicine", "NM"),
    ("PositronEmission", "PT"),
    ("EnhancedPET", "PT"),
    ("LegacyConvertedEnhancedPET", "PT"),
    ("XRayAngiographic", "XA"),
    ("EnhancedXA", "XA"),
    ("XRayRadiofluoroscopic", "RF"),
    ("EnhancedXRF", "RF"),
    ("RTImage", "RI"),
    ("RTDose", "RD"),
    ("RTStructureSet", "RS"),
    ("RTPlan", "RP"),
    ("RTIonPlan", "RP"),
    ("KeyObjectSelection", "KO"),
    ("EncapsulatedPDF", "DOC"),
    ("Segmentation", "SEG"),
    ("VL", "VL"),
    ("Ophthalmic", "OP"),
)


class Layout(enum.Enum):
    """How files are arranged under the output folder."""

    FLAT = "flat"
    STUDY = "study"
    CALLING_AE = "calling-ae"


# Bounded: the SOP class comes from the sender, who can make up as many as it likes.
@functools.lru_cache(maxsize=1024)
def prefix(sop_class_uid: str) -> str:
    """storescp's file name prefix for a SOP class: ``CT``, ``MR``... else ``UNKNOWN``."""
    # The dictionary, not pydicom's UID(): that one warns about a malformed UID, once per call.
    from pydicom._uid_dict import UID_dictionary

    entry = UID_dictionary.get(sop_class_uid)
    keyword = entry[4] if entry is not None else ""
    for fragment, abbreviation in _PREFIXES:
        if keyword.startswith(fragment):
            return abbreviation
    if keyword.endswith("SRStorage"):
        return "SR"
    if "PresentationState" in keyword:
        return "PR"
    return "UNKNOWN"


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
    sop_class_uid: str, sop_instance_uid: str, transfer_syntax: str, source_ae: str
) -> bytes:
    """The 128-byte preamble, ``DICM`` and the file meta group (Explicit VR Little Endian)."""
    elements = b"".join(
        (
            _element(0x00020001, b"OB", b"\0\1"),
            _element(0x00020002, b"UI", _ui(sop_class_uid)),
            _element(0x00020003, b"UI", _ui(sop_instance_uid)),
            _element(0x00020010, b"UI", _ui(transfer_syntax)),
            _element(0x00020012, b"UI", _ui(IMPLEMENTATION_CLASS_UID)),
            _element(0x00020013, b"SH", _text(IMPLEMENTATION_VERSION_NAME)),
            _element(0x00020016, b"AE", _text(source_ae)),
        )
    )
    group_length = _element(0x00020000, b"UL", struct.pack("<I", len(elements)))
    return b"\0" * 128 + b"DICM" + group_length + elements


def study_instance_uid(head: bytes, transfer_syntax: str) -> str | None:
    """The Study Instance UID from the first bytes of a dataset, or None when it is not there."""
    if transfer_syntax == DEFLATED_EXPLICIT_VR_LE:
        head = zlib.decompressobj(-zlib.MAX_WBITS).decompress(head, STUDY_HEAD)
    try:
        found = read_top_uids(
            BufferSource(head),
            0,
            {_STUDY_INSTANCE_UID: "Study Instance UID (0020,000D)"},
            implicit=transfer_syntax == IMPLICIT_VR_LE,
            little=transfer_syntax != EXPLICIT_VR_BE,
        )
    except Unreadable:  # a truncated or odd head only means "not found"
        return None
    uid = found.get(_STUDY_INSTANCE_UID, "")
    return uid if re.fullmatch(r"[0-9.]{1,64}", uid) else None


def _safe(name: str) -> str:
    """A path component from an AE title or UID: nothing that could leave the folder."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "_", name.strip()).strip(".")
    return cleaned or "_"


@dataclass(frozen=True)
class Placement:
    """Where one dataset is written, then moved."""

    temporary: Path
    header: bytes


def fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Storage:
    """Files under ``directory``. Thread-safe: associations store concurrently."""

    def __init__(
        self,
        directory: Path,
        *,
        layout: Layout = Layout.FLAT,
        unique_filenames: bool = False,
        fsync: bool = False,
    ) -> None:
        self.directory = Path(directory)
        self.layout = layout
        self.unique_filenames = unique_filenames
        self.fsync = fsync
        self._counter = itertools.count()
        self._folders_lock = threading.Lock()
        self.directory.mkdir(parents=True, exist_ok=True)

    @property
    def head_bytes(self) -> int:
        """How much of each dataset's start :meth:`commit` needs."""
        return STUDY_HEAD if self.layout is Layout.STUDY else 0

    def place(
        self, sop_class_uid: str, sop_instance_uid: str, transfer_syntax: str, calling_ae: str
    ) -> Placement:
        # A dot name in the output folder itself: invisible to most watchers, and the rename
        # into a subfolder stays on one file system.
        name = f".{next(self._counter)}-{os.getpid()}.part"
        header = file_meta(sop_class_uid, sop_instance_uid, transfer_syntax, calling_ae)
        return Placement(self.directory / name, header)

    def _folder(self, transfer_syntax: str, calling_ae: str, head: bytes) -> Path:
        if self.layout is Layout.CALLING_AE:
            return self.directory / _safe(calling_ae)
        if self.layout is Layout.STUDY:
            uid = study_instance_uid(head, transfer_syntax)
            return self.directory / (uid if uid is not None else UNKNOWN_STUDY)
        return self.directory

    def commit(
        self,
        placement: Placement,
        sop_class_uid: str,
        sop_instance_uid: str,
        transfer_syntax: str,
        calling_ae: str,
        head: bytes,
    ) -> Path:
        """Move a complete file to its final name (durably with ``fsync``); OSError leaves
        nothing behind."""
        try:
            folder = self._folder(transfer_syntax, calling_ae, head)
            created = False
            if folder != self.directory:
                with self._folders_lock:
                    created = not folder.is_dir()
                    folder.mkdir(exist_ok=True)
            name = f"{prefix(sop_class_uid)}.{_safe(sop_instance_uid)}"
            target = self._move(placement.temporary, folder / name)
            if self.fsync:
                fsync_folder(folder)
                if created:
                    fsync_folder(self.directory)
            return target
        finally:
            with contextlib.suppress(FileNotFoundError):
                placement.temporary.unlink()

    def _move(self, temporary: Path, target: Path) -> Path:
        if not self.unique_filenames:
            os.replace(temporary, target)
            return target
        # link() fails when the name exists: the first free one wins, even between threads.
        for n in itertools.count():
            candidate = target if n == 0 else target.with_name(f"{target.name}.{n}")
            try:
                os.link(temporary, candidate)
            except FileExistsError:
                continue
            return candidate
        raise AssertionError("unreachable")
