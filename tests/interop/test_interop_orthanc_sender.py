"""Orthanc as the sender: files uploaded over REST, sent to StorageServer declared as a
modality (``POST /modalities/NAME/store``, synchronous). Orthanc rewrites the file meta, not the
dataset: what arrives must be each source's dataset."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest

from fastpush.receive.negotiation import AcceptPolicy
from fastpush.receive.server import StorageServer

from support.peers import Orthanc, dataset_bytes, pydicom_test_files

pytestmark = pytest.mark.interop

_TRAILING_PADDING = 0xFFFCFFFC
# One of each syntax Orthanc keeps as uploaded, distinct SOP Instance UIDs.
PYDICOM_FILES = (
    "CT_small.dcm",
    "rtplan.dcm",  # Implicit VR LE, sequences
    "MR_small_bigendian.dcm",
    "image_dfl.dcm",
    "SC_rgb_rle.dcm",
    "JPEG-lossy.dcm",
    "JPEG2000.dcm",
)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[StorageServer]:
    with StorageServer(
        "127.0.0.1",
        0,
        ae_title="FASTPUSH",
        directory=tmp_path / "in",
        accept=AcceptPolicy(promiscuous=True),
    ) as running:
        yield running


def _upload(orthanc: Orthanc, files: list[Path]) -> list[str]:
    return [
        json.loads(orthanc.request("POST", "/instances", body=f.read_bytes()))["ID"] for f in files
    ]


def _store(orthanc: Orthanc, server: StorageServer, ids: list[str]) -> dict[str, Any]:
    modality = {"AET": server.ae_title, "Host": server.host, "Port": server.port}
    orthanc.request("PUT", "/modalities/fastpush", body=json.dumps(modality).encode())
    job = {"Resources": ids, "Synchronous": True}
    answer: dict[str, Any] = json.loads(
        orthanc.request("POST", "/modalities/fastpush/store", body=json.dumps(job).encode())
    )
    return answer


def test_orthanc_sends_to_the_server(
    orthanc: Orthanc, server: StorageServer, study: list[Path]
) -> None:
    folder = pydicom_test_files()[0].parent
    files = study + [folder / name for name in PYDICOM_FILES]
    answer = _store(orthanc, server, _upload(orthanc, files))
    assert (answer["InstancesCount"], answer["FailedInstancesCount"]) == (len(files), 0)
    assert server.storage is not None
    stored = sorted(p for p in server.storage.directory.rglob("*") if p.is_file())
    by_uid = {pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID: p for p in stored}
    assert len(by_uid) == len(stored) == len(files)
    for source in files:
        theirs = pydicom.dcmread(source)
        path = by_uid[theirs.SOPInstanceUID]
        ours = pydicom.dcmread(path)
        assert ours.file_meta.TransferSyntaxUID == theirs.file_meta.TransferSyntaxUID, source
        assert ours.file_meta.SourceApplicationEntityTitle == orthanc.aet
        # DCMTK, inside Orthanc, drops Dataset Trailing Padding (CT_small.dcm has some).
        theirs.pop(_TRAILING_PADDING, None)
        assert ours == theirs, source
    # Uncompressed datasets without padding go out as Orthanc received them, byte for byte.
    for source in study:
        assert dataset_bytes(by_uid[pydicom.dcmread(source).SOPInstanceUID]) == dataset_bytes(
            source
        )
