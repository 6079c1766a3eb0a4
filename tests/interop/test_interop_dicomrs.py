"""dicom-rs (``cargo install dicom-storescp dicom-storescu``, see INTEROP.md) on both sides of
fastpush: ``dicom-storescu`` sending to StorageServer, fastpush sending to ``dicom-storescp``.

dicom-rs parses every file it sends or receives and writes it again (sequences and items come
out with undefined lengths), so its bytes are not the source's. What must hold: the server keeps
exactly the bytes dicom-storescu sent (the same DCMTK ``storescp +B`` keeps from the same
sender), and every dataset, whichever way it went, equals its source element by element.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pydicom
import pytest

import fastpush
from fastpush import Outcome
from fastpush.receive.negotiation import AcceptPolicy
from fastpush.receive.server import StorageServer

from support.peers import (
    StoreSCPFactory,
    dataset_bytes,
    free_port,
    pydicom_test_files,
    stop_process,
    wait_for_port,
)

pytestmark = pytest.mark.interop

CARGO_BIN = Path(os.environ.get("CARGO_HOME", Path.home() / ".cargo")) / "bin"
DICOM_STORESCU = CARGO_BIN / "dicom-storescu"
DICOM_STORESCP = CARGO_BIN / "dicom-storescp"

# One of each transfer syntax pydicom ships that dicom-rs reads and writes back unchanged (it
# stops at the first file it cannot parse, and rewrites MR_small_jpeg_ls_lossless's OW pixel
# data as OB), with distinct SOP Instance UIDs.
PYDICOM_FILES = (
    "CT_small.dcm",  # Explicit VR LE
    "rtplan.dcm",  # Implicit VR LE, sequences
    "MR_small_bigendian.dcm",
    "image_dfl.dcm",  # deflated
    "SC_rgb_small_odd.dcm",  # odd-length pixel data, padded
    "SC_rgb_rle.dcm",
    "JPEG-lossy.dcm",
    "JPEG2000.dcm",
)


def _require() -> None:
    for tool in (DICOM_STORESCU, DICOM_STORESCP):
        if not tool.exists():
            pytest.fail(f"{tool} is missing: run `source scripts/lib.sh; ensure_dicom_rs`")


def _pydicom_files() -> list[Path]:
    folder = pydicom_test_files()[0].parent
    return [folder / name for name in PYDICOM_FILES]


def _by_uid(paths: list[Path]) -> dict[str, Path]:
    return {pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID: p for p in paths}


def _stored(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def _dicom_storescu(port: int, aet: str, files: list[Path]) -> None:
    done = subprocess.run(
        [str(DICOM_STORESCU), f"{aet}@127.0.0.1:{port}", *map(str, files)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]


def _assert_same_datasets(sources: list[Path], stored: list[Path], *, syntax: bool = True) -> None:
    """Each source has one stored file holding an equal dataset (in the same syntax)."""
    by_uid = _by_uid(stored)
    assert len(by_uid) == len(stored) == len(sources)
    for source in sources:
        theirs = pydicom.dcmread(source)
        ours = pydicom.dcmread(by_uid[theirs.SOPInstanceUID])
        if syntax:
            assert ours.file_meta.TransferSyntaxUID == theirs.file_meta.TransferSyntaxUID, source
        assert ours == theirs, source


@pytest.fixture
def server(tmp_path: Path) -> Iterator[StorageServer]:
    _require()
    with StorageServer(
        "127.0.0.1", 0, directory=tmp_path / "in", accept=AcceptPolicy(promiscuous=True)
    ) as running:
        yield running


def test_dicom_storescu_study_same_bytes_as_storescp(
    server: StorageServer, storescp: StoreSCPFactory, study: list[Path]
) -> None:
    oracle = storescp("+B")
    _dicom_storescu(server.port, server.ae_title, study)
    _dicom_storescu(oracle.port, oracle.aet, study)
    assert server.storage is not None
    ours = _by_uid(_stored(server.storage.directory))
    theirs = _by_uid(oracle.stored_files())
    assert ours.keys() == theirs.keys() and len(ours) == len(study)
    for uid, path in ours.items():
        assert dataset_bytes(path) == dataset_bytes(theirs[uid]), uid
    _assert_same_datasets(study, list(ours.values()))


def _meta_disagrees(path: Path) -> bool:
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    return bool(ds.file_meta.MediaStorageSOPInstanceUID != ds.SOPInstanceUID)


def test_dicom_storescu_every_syntax(server: StorageServer) -> None:
    """The server accepts the syntax dicom-storescu proposes first: the file's own. A file whose
    meta names another SOP Instance UID than its dataset (dicom-storescu sends the meta's in the
    command) is refused by the dataset check, and nothing of it is kept."""
    files = _pydicom_files()
    mismatched = [f for f in files if _meta_disagrees(f)]
    assert mismatched, "the test set no longer has a file whose meta disagrees"
    _dicom_storescu(server.port, server.ae_title, files)
    assert server.storage is not None
    consistent = [f for f in files if f not in mismatched]
    _assert_same_datasets(consistent, _stored(server.storage.directory))
    assert server.stats.files == len(consistent)
    assert server.stats.failed == len(mismatched)


def test_dicom_storescu_every_syntax_without_dataset_check(tmp_path: Path) -> None:
    """``dataset_check=False`` (``--no-dataset-check``) stores what such senders send."""
    _require()
    files = _pydicom_files()
    with StorageServer(
        "127.0.0.1",
        0,
        directory=tmp_path / "in",
        accept=AcceptPolicy(promiscuous=True),
        dataset_check=False,
    ) as server:
        _dicom_storescu(server.port, server.ae_title, files)
    assert server.storage is not None
    _assert_same_datasets(files, _stored(server.storage.directory))
    assert server.stats.files == len(files)


@dataclass
class _DicomRsSCP:
    port: int
    outdir: Path
    proc: subprocess.Popen[bytes]


@pytest.fixture
def dicom_storescp(tmp_path: Path) -> Iterator[_DicomRsSCP]:
    _require()
    port, outdir = free_port(), tmp_path / "dicom-rs"
    outdir.mkdir()
    with open(tmp_path / "dicom-storescp.log", "wb") as log:
        proc = subprocess.Popen(
            [str(DICOM_STORESCP), "-p", str(port), "-o", str(outdir), "--promiscuous"],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        wait_for_port(port, proc=proc)
        yield _DicomRsSCP(port, outdir, proc)
    finally:
        stop_process(proc)


@pytest.mark.parametrize("engine", ["rust", "python"])
def test_fastpush_to_dicom_storescp(
    dicom_storescp: _DicomRsSCP, study: list[Path], engine: str
) -> None:
    """Every file goes in its own syntax; dicom-storescp writes a deflated one inflated."""
    files = study + _pydicom_files()
    results = fastpush.push(files, "127.0.0.1", dicom_storescp.port, engine=engine)
    assert [r.outcome for r in results] == [Outcome.STORED] * len(files), [
        r.reason for r in results
    ]
    sent = {r.path: r.transfer_syntax for r in results}
    assert sent == {str(f): pydicom.dcmread(f).file_meta.TransferSyntaxUID for f in files}
    _assert_same_datasets(files, _stored(dicom_storescp.outdir), syntax=False)
