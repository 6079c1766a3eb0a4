"""Smoke tests of the peer fixtures and of fastpush.synthetic — no fastpush wire code involved.

The senders here are the peers' own reference tools (DCMTK storescu/echoscu, pynetdicom's SCU),
so a failure points at the fixture or the generator, not at fastpush.
"""

from __future__ import annotations

import struct
import subprocess
from collections import Counter
from io import BytesIO
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.uid import (
    CTImageStorage,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    MRImageStorage,
    SecondaryCaptureImageStorage,
)

from fastpush.synthetic import write_large_file, write_study

from support.peers import (
    ECHOSCU,
    STORESCU,
    Orthanc,
    PynetdicomSCPFactory,
    StoreSCPFactory,
    dataset_bytes,
    dataset_offset,
)


def run(*cmd: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)


def storescu(port: int, aet: str, *files: Path, extra: tuple[str, ...] = ()) -> None:
    """DCMTK's reference sender (``extra=("-xi",)`` to keep Implicit VR files as they are)."""
    result = run(STORESCU, *extra, "-aec", aet, "127.0.0.1", str(port), *map(str, files))
    assert result.returncode == 0, result.stdout + result.stderr


# --------------------------------------------------------------------------------------------
# synthetic.py


def test_write_study_reads_back(tmp_path: Path) -> None:
    paths = write_study(tmp_path, count=12)
    assert len(paths) == 12
    assert all(p.parent == tmp_path and p.is_file() for p in paths)
    combos: Counter[tuple[str, str]] = Counter()
    studies: dict[str, set[str]] = {}
    for path in paths:
        ds = dcmread(path)
        meta = ds.file_meta
        assert meta.MediaStorageSOPClassUID == ds.SOPClassUID
        assert meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        assert meta.ImplementationClassUID
        assert ds.Rows * ds.Columns * 2 == len(ds.PixelData) == 64 * 1024
        assert ds.BitsAllocated == 16 and ds.SamplesPerPixel == 1
        assert len(ds.ProcedureCodeSequence) == 1
        assert ds.private_block(0x0009, "FASTPUSH SYNTHETIC")[0x01].value
        combos[(ds.SOPClassUID, meta.TransferSyntaxUID)] += 1
        studies.setdefault(ds.SOPClassUID, set()).add(ds.StudyInstanceUID)
    expected_classes = {CTImageStorage, MRImageStorage, SecondaryCaptureImageStorage}
    expected_syntaxes = {ExplicitVRLittleEndian, ImplicitVRLittleEndian}
    assert set(combos) == {(c, t) for c in expected_classes for t in expected_syntaxes}
    assert all(len(uids) == 1 for uids in studies.values())  # one study per class
    assert len({next(iter(u)) for u in studies.values()}) == 3
    assert len({dcmread(p, stop_before_pixels=True).SOPInstanceUID for p in paths}) == 12


def test_write_study_is_deterministic(tmp_path: Path) -> None:
    a = write_study(tmp_path / "a", count=6, pixel_bytes=4096, seed=7)
    b = write_study(tmp_path / "b", count=6, pixel_bytes=4096, seed=7)
    c = write_study(tmp_path / "c", count=6, pixel_bytes=4096, seed=8)
    assert [p.name for p in a] == [p.name for p in b]
    assert all(x.read_bytes() == y.read_bytes() for x, y in zip(a, b, strict=True))
    uids = {dcmread(p).SOPInstanceUID for p in a}
    assert uids.isdisjoint({dcmread(p).SOPInstanceUID for p in c})


@pytest.mark.parametrize("pixel_bytes", [2, 1000, 4096, 10_000, 100_001, 1 << 20])
def test_write_study_pixel_sizes(tmp_path: Path, pixel_bytes: int) -> None:
    (path,) = write_study(tmp_path, count=1, pixel_bytes=pixel_bytes)
    ds = dcmread(path)
    length = len(ds.PixelData)
    assert length == ds.Rows * ds.Columns * 2
    assert length % 2 == 0
    assert 0.95 * pixel_bytes <= length <= pixel_bytes


def test_write_study_custom_classes_and_syntaxes(tmp_path: Path) -> None:
    paths = write_study(
        tmp_path,
        count=4,
        pixel_bytes=512,
        sop_classes=[MRImageStorage],
        transfer_syntaxes=[ImplicitVRLittleEndian],
    )
    for path in paths:
        ds = dcmread(path)
        assert ds.SOPClassUID == MRImageStorage
        assert ds.file_meta.TransferSyntaxUID == ImplicitVRLittleEndian
    with pytest.raises(ValueError, match="transfer syntax"):
        write_study(tmp_path / "bad", count=1, transfer_syntaxes=["1.2.840.10008.1.2.4.50"])


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
def test_write_large_file(tmp_path: Path, syntax: str) -> None:
    size = 3_000_000
    path = write_large_file(tmp_path / "large.dcm", size, transfer_syntax=syntax)
    assert 0.99 * size <= path.stat().st_size <= size
    head = dcmread(path, stop_before_pixels=True)
    assert head.file_meta.TransferSyntaxUID == syntax
    frames = int(head.NumberOfFrames)
    expected = head.Rows * head.Columns * frames * 2
    full = dcmread(path)
    assert len(full.PixelData) == expected
    # The pixel element is the last one, with a defined length, and ends the file.
    data = dataset_bytes(path)
    assert data.endswith(full.PixelData)
    if syntax == ExplicitVRLittleEndian:
        element = struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OW", 0, expected)
    else:
        element = struct.pack("<HHI", 0x7FE0, 0x0010, expected)
    assert data[:-expected].endswith(element)
    # Deterministic.
    again = write_large_file(tmp_path / "again" / "large.dcm", size, transfer_syntax=syntax)
    assert dataset_bytes(again) == data


def test_dataset_offset_matches_pydicom(tmp_path: Path) -> None:
    for path in write_study(tmp_path, count=2, pixel_bytes=64):
        raw = path.read_bytes()
        offset = dataset_offset(raw)
        ds = dcmread(path)
        assert offset == 132 + 12 + ds.file_meta.FileMetaInformationGroupLength
        assert raw[offset : offset + 4] == b"\x08\x00\x05\x00"  # (0008,0005) first


# --------------------------------------------------------------------------------------------
# DCMTK storescp


@pytest.mark.interop
def test_storescp_answers_echo(storescp: StoreSCPFactory) -> None:
    scp = storescp()
    assert scp.aet == "STORESCP"
    result = run(ECHOSCU, "-aec", scp.aet, "127.0.0.1", str(scp.port))
    assert result.returncode == 0, result.stdout + result.stderr + scp.log()


@pytest.mark.interop
def test_storescp_bit_preserving(storescp: StoreSCPFactory, study: list[Path]) -> None:
    scp = storescp("+B")
    explicit = [p for p in study if dcmread(p).file_meta.TransferSyntaxUID.is_implicit_VR is False]
    implicit = [p for p in study if p not in explicit]
    # storescu converts Implicit VR files to the Explicit syntax storescp prefers unless it is
    # told to propose Implicit VR only.
    storescu(scp.port, scp.aet, *explicit)
    storescu(scp.port, scp.aet, *implicit, extra=("-xi",))
    stored = scp.stored_files()
    assert len(stored) == len(study), scp.log()
    by_uid = {dcmread(p, stop_before_pixels=True).SOPInstanceUID: p for p in stored}
    for source in study:
        uid = dcmread(source, stop_before_pixels=True).SOPInstanceUID
        assert dataset_bytes(by_uid[uid]) == dataset_bytes(source), source.name


@pytest.mark.interop
def test_storescp_accepts_large_file(storescp: StoreSCPFactory, tmp_path: Path) -> None:
    source = write_large_file(tmp_path / "large.dcm", 3_000_000)
    scp = storescp("+B", "-pdu", "4096")
    storescu(scp.port, scp.aet, source)
    (stored,) = scp.stored_files()
    assert dataset_bytes(stored) == dataset_bytes(source)


@pytest.mark.interop
def test_storescp_ignore_stores_nothing(storescp: StoreSCPFactory, study: list[Path]) -> None:
    scp = storescp("--ignore", env={"TCP_NODELAY": "1"})
    storescu(scp.port, scp.aet, *study[:3])
    assert scp.stored_files() == []


# --------------------------------------------------------------------------------------------
# Orthanc


@pytest.mark.interop
def test_orthanc_system_and_store(orthanc: Orthanc, study: list[Path]) -> None:
    assert orthanc.aet == "ORTHANC"
    assert orthanc.system()["DicomAet"] == "ORTHANC"
    assert orthanc.instances() == []
    storescu(orthanc.dicom_port, orthanc.aet, *study[:4])
    ids = orthanc.instances()
    assert len(ids) == 4
    assert orthanc.statistics()["CountInstances"] == 4
    sources = {dcmread(p).SOPInstanceUID: dcmread(p) for p in study[:4]}
    for instance_id in ids:
        stored = dcmread(BytesIO(orthanc.instance_file(instance_id)))
        source = sources[stored.SOPInstanceUID]
        assert stored.PixelData == source.PixelData
        assert stored.PatientID == source.PatientID
        assert stored.StudyInstanceUID == source.StudyInstanceUID


@pytest.mark.interop
def test_orthanc_clear(orthanc: Orthanc, study: list[Path]) -> None:
    storescu(orthanc.dicom_port, orthanc.aet, *study[:2])
    assert len(orthanc.instances()) == 2
    orthanc.clear()
    assert orthanc.instances() == []
    assert orthanc.statistics()["CountInstances"] == 0


# --------------------------------------------------------------------------------------------
# pynetdicom


def _pynetdicom_send(port: int, aet: str, paths: list[Path]) -> list[int]:
    from pynetdicom import AE

    ae = AE(ae_title="FASTPUSHTEST")
    for path in paths:
        ts = dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID
        ae.add_requested_context(dcmread(path, stop_before_pixels=True).SOPClassUID, ts)
    assoc = ae.associate("127.0.0.1", port, ae_title=aet)
    assert assoc.is_established
    try:
        statuses = []
        for path in paths:
            status = assoc.send_c_store(dcmread(path))
            statuses.append(int(status.Status))
        return statuses
    finally:
        assoc.release()


@pytest.mark.interop
def test_pynetdicom_scp_stores_and_answers_status(
    pynetdicom_scp: PynetdicomSCPFactory, study: list[Path]
) -> None:
    scp = pynetdicom_scp(statuses=lambda n: 0xA700 if n == 1 else 0x0000)
    files = study[:3]
    statuses = _pynetdicom_send(scp.port, scp.aet, files)
    assert statuses == [0x0000, 0xA700, 0x0000]
    assert [r.status for r in scp.received] == statuses
    uids = [dcmread(p, stop_before_pixels=True).SOPInstanceUID for p in files]
    assert scp.received_uids == uids
    for record, path in zip(scp.received, files, strict=True):
        assert record.raw == dataset_bytes(path)  # pynetdicom's SCU sent it unchanged
        assert record.dataset().SOPInstanceUID == record.sop_instance_uid


@pytest.mark.interop
def test_pynetdicom_scp_restricts_sop_classes(
    pynetdicom_scp: PynetdicomSCPFactory, study: list[Path]
) -> None:
    scp = pynetdicom_scp(sop_classes=[CTImageStorage], require_called_aet="ONLYME")
    assert scp.aet == "ONLYME"
    from pynetdicom import AE

    ae = AE(ae_title="FASTPUSHTEST")
    ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
    ae.add_requested_context(MRImageStorage, ExplicitVRLittleEndian)
    wrong = ae.associate("127.0.0.1", scp.port, ae_title="SOMEONE")
    assert wrong.is_rejected
    assoc = ae.associate("127.0.0.1", scp.port, ae_title="ONLYME")
    assert assoc.is_established
    try:
        accepted = {cx.abstract_syntax for cx in assoc.accepted_contexts}
        assert accepted == {CTImageStorage}
    finally:
        assoc.release()
