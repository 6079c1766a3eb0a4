"""Where a storage SCP puts what it receives: Part-10 files like DCMTK ``storescp +B``.

Puts the file meta header (written by ``dataset.meta``) in front of each dataset (the received
bytes follow untouched). Owns the file names (modality prefix + SOP Instance UID, as storescp
names them), the layout (flat, per study, per calling AE), the temporary name a dataset is
written under and the rename that makes it visible, and durability (``fsync`` of the file's
folder). Receiving the bytes is the Rust core's job; deciding what to answer is ``server``'s.
"""

from __future__ import annotations

import contextlib
import enum
import functools
import itertools
import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..dataset.meta import file_meta
from ..uids import EXPLICIT_VR_BE, IMPLICIT_VR_LE

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


def study_instance_uid(head: bytes, transfer_syntax: str) -> str | None:
    """The Study Instance UID from the first bytes of a dataset (as sent: deflated ones are
    inflated here), or None when it is not there or cannot be read. Any value: it becomes a
    folder name only through :func:`path_component`."""
    # Here rather than at import: serve's --layout choices come from this module, read whenever
    # the CLI builds serve's parser (the top-level --help too).
    from ..dataset.header import BufferSource, Unreadable, inflated_head, read_top_uids

    try:
        found = read_top_uids(
            BufferSource(inflated_head(head, transfer_syntax)),
            0,
            {_STUDY_INSTANCE_UID: "Study Instance UID (0020,000D)"},
            implicit=transfer_syntax == IMPLICIT_VR_LE,
            little=transfer_syntax != EXPLICIT_VR_BE,
        )
    except Unreadable:  # a truncated or odd head only means "not found"
        return None
    return found.get(_STUDY_INSTANCE_UID) or None


def study_folder(head: bytes, transfer_syntax: str) -> str:
    """The folder name of a dataset's study (``--layout study``): its Study Instance UID through
    :func:`path_component`, or ``unknown-study``."""
    uid = study_instance_uid(head, transfer_syntax)
    return UNKNOWN_STUDY if uid is None else path_component(uid)


_UID = re.compile(r"(?:0|[1-9][0-9]*)(?:\.(?:0|[1-9][0-9]*))*")
MAX_UID = 64
# Names path_component makes for values it does not take as they are: never a UID (a letter),
# never an accepted AE title (those starting with this are mapped too).
MAPPED = "x-"
# Hex digits of the SHA-256 of the raw value in a mapped name: 80 bits, so nobody can pick a
# value whose name is that of another.
_HASH_DIGITS = 20
_READABLE = re.compile(r"[^0-9A-Za-z._-]")


def valid_uid(value: str) -> bool:
    """PS3.5 9.1: numeric components without leading zeros (but "0"), single dots, no dot at
    either end, at most 64 characters."""
    return len(value) <= MAX_UID and _UID.fullmatch(value) is not None


def _valid_ae_name(value: str) -> bool:
    # Printable ASCII; nothing a path gives meaning to ("/", and "\\" elsewhere); no dot first,
    # so not "." or "..", not hidden, and never the name of one of our temporary files.
    return (
        0 < len(value) <= 16
        and value.isascii()
        and value.isprintable()
        and "/" not in value
        and "\\" not in value
        and not value.startswith(".")
        and not value.lower().startswith(MAPPED)
    )


def path_component(value: str, *, ae_title: bool = False) -> str:
    """The one way a value from the wire becomes a file or folder name.

    A valid UID (:func:`valid_uid`) stays as it is; with ``ae_title``, so does a calling AE
    title that is a safe name (trimmed, as the standard compares titles). Anything else (``..``,
    ``/``, NUL, leading zeros, 65 characters...) becomes ``x-<readable part>-<hash>``: a hash of
    the raw value keeps two different values apart, and the ``x-`` never starts a kept name."""
    if valid_uid(value):
        return value
    if ae_title and _valid_ae_name(value.strip(" ")):
        return value.strip(" ")
    import hashlib  # only for a name that is not kept as it is: rare

    digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:_HASH_DIGITS]
    readable = _READABLE.sub("_", value[:32]).strip(".")
    return f"{MAPPED}{readable}-{digest}" if readable else f"{MAPPED}{digest}"


class UnsafeName(ValueError):
    """A path that would not lie inside the folder it is meant for."""


def inside(folder: Path | str, path: Path | str) -> Path:
    """``folder / path`` when it lies strictly inside ``folder``, else :class:`UnsafeName`: the
    last check before a name from the wire is written, whatever made the name.

    On the per-file path, so no full ``realpath`` (tens of microseconds): the names are compared
    after lexical normalization (``..``, absolute paths), and a symbolic link is refused where it
    could lead out, in a folder between ``folder`` and the file. The file itself may be a link:
    renaming or linking onto a name replaces the link, never writes through it."""
    joined = os.path.join(folder, path)
    base = os.path.abspath(folder)
    target = os.path.abspath(joined)  # normalized: no "..", no "."
    if not target.startswith(base.rstrip(os.sep) + os.sep):
        raise UnsafeName(f"{joined} is not inside {folder}")
    parent = os.path.dirname(target)
    while parent != base:
        if os.path.islink(parent):
            raise UnsafeName(f"{joined} goes through the symbolic link {parent}")
        parent = os.path.dirname(parent)
    return Path(joined)


@dataclass(frozen=True)
class Placement:
    """Where one dataset is written, then moved."""

    temporary: Path
    header: bytes
    reuse: bool = False
    """``temporary`` is a file to write over (``Storage.recycle`` gave it)."""


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
        named_by_handler: bool = False,
    ) -> None:
        self.directory = Path(directory)
        self.layout = layout
        self.unique_filenames = unique_filenames
        self.fsync = fsync
        # True: commit leaves the file at its temporary name; on_store links it under names of
        # its own (the router's queue entries, fsync'd there) and removes that name. A final
        # name made here would cost a link, an unlink and a folder fsync for a name never used.
        self.named_by_handler = named_by_handler
        self._counter = itertools.count()
        self._folders_lock = threading.Lock()
        self.recycle: Callable[[], Path | None] | None = None
        """``recycle()`` gives a spent file in ``directory`` for the next dataset to be written
        over, when it has one (the router's spool): its name is the temporary one. None: every
        file is new."""
        self.directory.mkdir(parents=True, exist_ok=True)

    @property
    def head_bytes(self) -> int:
        """How much of each dataset's start :meth:`commit` needs."""
        return STUDY_HEAD if self.layout is Layout.STUDY else 0

    def place(
        self, sop_class_uid: str, sop_instance_uid: str, transfer_syntax: str, calling_ae: str
    ) -> Placement:
        header = file_meta(sop_class_uid, sop_instance_uid, transfer_syntax, calling_ae)
        spent = None if self.recycle is None else self.recycle()
        if spent is not None:
            return Placement(spent, header, reuse=True)
        # A dot name in the output folder itself: invisible to most watchers, and the rename
        # into a subfolder stays on one file system. No name from the wire is a dot name.
        name = f".{next(self._counter)}-{os.getpid()}.part"
        return Placement(self.directory / name, header)

    def _folder(self, transfer_syntax: str, calling_ae: str, head: bytes) -> Path:
        if self.layout is Layout.CALLING_AE:
            return self.directory / path_component(calling_ae, ae_title=True)
        if self.layout is Layout.STUDY:
            return self.directory / study_folder(head, transfer_syntax)
        return self.directory

    def name(self, sop_class_uid: str, sop_instance_uid: str) -> str:
        """The file name of an instance, storescp's ``<modality>.<SOP Instance UID>``."""
        return f"{prefix(sop_class_uid)}.{path_component(sop_instance_uid)}"

    def commit(
        self,
        placement: Placement,
        sop_class_uid: str,
        sop_instance_uid: str,
        transfer_syntax: str,
        calling_ae: str,
        head: bytes,
    ) -> Path:
        """Move a complete file to its final name (durably with ``fsync``); OSError (or
        :class:`UnsafeName`, which no name from :func:`path_component` earns) leaves nothing
        behind. ``named_by_handler``: the file stays at its temporary name, returned."""
        if self.named_by_handler:
            return placement.temporary
        try:
            folder = self._folder(transfer_syntax, calling_ae, head)
            # Checked as a whole: a study or AE folder that is a link out is refused too.
            target = inside(
                self.directory,
                folder.relative_to(self.directory) / self.name(sop_class_uid, sop_instance_uid),
            )
            created = False
            if folder != self.directory:
                with self._folders_lock:
                    created = not folder.is_dir()
                    folder.mkdir(exist_ok=True)
            target = self._move(placement.temporary, target)
            if self.fsync:
                fsync_folder(folder)
                if created:
                    fsync_folder(self.directory)
            return target
        finally:
            self.discard(placement)

    def discard(self, placement: Placement) -> None:
        """Remove a placement's temporary file, if it is still there."""
        with contextlib.suppress(FileNotFoundError):
            placement.temporary.unlink()

    def remove(self, path: Path) -> None:
        """Take back a file :meth:`commit` made (its success could not be told to the sender)."""
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        if self.fsync and not self.named_by_handler:
            fsync_folder(path.parent)

    def _move(self, temporary: Path, target: Path) -> Path:
        if not self.unique_filenames:
            os.replace(temporary, target)
            return target
        # link() fails when the name exists: the first free one wins, even between threads.
        for n in itertools.count():
            candidate = target if n == 0 else inside(target.parent, f"{target.name}.{n}")
            try:
                os.link(temporary, candidate)
            except FileExistsError:
                continue
            return candidate
        raise AssertionError("unreachable")
