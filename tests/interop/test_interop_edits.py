"""``store --set/--remove/--map-uids`` and ``store --deidentify`` into DCMTK storescp +B, read
back with pydicom: edited copies equal the sources but for the edits, de-identified ones carry
none of the identifying values, pixel data byte-identical (pydicom's test files, every
transfer syntax storescp accepts)."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest

from fastpush.dataset.edits import Deidentify, EditPlan, MapUids

from support.peers import StoreSCPFactory, pydicom_test_files, run_cli

# pydicom warns about the odd values in its own test files.
pytestmark = [pytest.mark.interop, pytest.mark.filterwarnings("ignore::UserWarning")]


def _sources(tmp_path: Path) -> list[Path]:
    """pydicom's test files that are whole, with pixel data, each under its own name."""
    chosen = []
    for path in pydicom_test_files():
        try:
            ds = pydicom.dcmread(path)
        except Exception:
            continue
        if "PixelData" in ds and "SOPInstanceUID" in ds and "TransferSyntaxUID" in ds.file_meta:
            chosen.append(path)
    assert len(chosen) > 20
    return chosen


@pytest.fixture
def key_file(tmp_path: Path) -> str:
    path = tmp_path / "site.key"
    path.write_bytes(b"the interop test key, 32 bytes!")
    return str(path)


def _stored(scp_dir: Path) -> list[pydicom.Dataset]:
    return [pydicom.dcmread(p) for p in sorted(scp_dir.iterdir()) if p.is_file()]


def _by_uid(files: list[Path]) -> dict[str, list[pydicom.Dataset]]:
    found: dict[str, list[pydicom.Dataset]] = {}
    for path in files:
        ds = pydicom.dcmread(path)
        found.setdefault(str(ds.SOPInstanceUID), []).append(ds)
    return found


def test_store_set_remove_map_uids(
    storescp: StoreSCPFactory, tmp_path: Path, key_file: str
) -> None:
    scp = storescp("+B", "+xa", "+uf")
    sources = _sources(tmp_path)
    done = run_cli(
        "store",
        scp.host,
        str(scp.port),
        "-aec",
        scp.aet,
        "-q",
        "--set",
        "InstitutionName=SITE A",
        "--remove",
        "PatientBirthDate",
        "--map-uids",
        key_file,
        *map(str, sources),
        timeout=300,
    )
    originals = _by_uid(sources)
    plan = EditPlan((MapUids(),), key_file=key_file)
    stored = _stored(scp.outdir)
    assert done.returncode in (0, 1), done.stderr
    assert len(stored) >= len(sources) - 5, done.stdout + done.stderr
    for ds in stored:
        sources_of = [
            o
            for uid, os_ in originals.items()
            for o in os_
            if plan.compiled.map_uid(uid) == ds.SOPInstanceUID
        ]
        assert sources_of, ds.SOPInstanceUID
        assert ds.InstitutionName == "SITE A"
        assert "PatientBirthDate" not in ds
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        assert any(_equal_but_edits(o, ds, plan) for o in sources_of)


def _equal_but_edits(original: pydicom.Dataset, edited: pydicom.Dataset, plan: EditPlan) -> bool:
    edited_tags = {0x00080080, 0x00100030}
    for elem in original:
        # Group lengths are dropped when a dataset is re-encoded (they are retired).
        if elem.tag in edited_tags or elem.tag.element == 0 or elem.tag.is_private:
            continue
        if elem.tag not in edited:
            return False
        new = edited[elem.tag]
        if elem.tag == 0x7FE00010:
            # Raw bytes: byte order as sent (the file's own syntax, or a fallback one).
            same = original.file_meta.TransferSyntaxUID == edited.file_meta.TransferSyntaxUID
            if same and new.value != elem.value:
                return False
            continue
        if elem.VR == "UI" and elem.value and not str(elem.value).startswith("1.2.840.10008."):
            if new.value != plan.compiled.map_uid(str(elem.value)) and not isinstance(
                elem.value, pydicom.multival.MultiValue
            ):
                return False
            continue
        if elem.VR not in ("SQ", "UI", "OB", "OW", "UN") and new.value != elem.value:
            return False
    return True


IDENTIFYING = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "InstitutionName",
    "ReferringPhysicianName",
    "AccessionNumber",
    "StudyID",
    "OperatorsName",
)


def test_store_deidentify(storescp: StoreSCPFactory, tmp_path: Path, key_file: str) -> None:
    scp = storescp("+B", "+xa", "+uf")
    sources = _sources(tmp_path)
    done = run_cli(
        "store",
        scp.host,
        str(scp.port),
        "-aec",
        scp.aet,
        "-q",
        "--deidentify",
        "--deidentify-key",
        key_file,
        *map(str, sources),
        timeout=300,
    )
    assert done.returncode in (0, 1), done.stderr
    stored = _stored(scp.outdir)
    assert stored, done.stdout + done.stderr
    values: dict[str, set[str]] = {k: set() for k in IDENTIFYING}
    uids: set[str] = set()
    for path in sources:
        ds = pydicom.dcmread(path)
        for keyword in IDENTIFYING:
            if ds.get(keyword):
                values[keyword].add(str(ds.get(keyword)))
        uids.update(
            str(ds.get(k)) for k in ("SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")
        )
    pixels = {pydicom.dcmread(p).PixelData for p in sources}
    plan = EditPlan(deidentify=Deidentify(), key_file=key_file)
    for ds in stored:
        assert ds.PatientIdentityRemoved == "YES"
        for keyword in IDENTIFYING:
            if ds.get(keyword):
                assert str(ds.get(keyword)) not in values[keyword], keyword
        assert str(ds.SOPInstanceUID) not in uids and str(ds.StudyInstanceUID) not in uids
        assert not any(e.tag.is_private for e in ds)
        assert ds.PatientID == plan.compiled.pseudonym("") or len(ds.PatientID) == 16
        if ds.file_meta.TransferSyntaxUID not in ("1.2.840.10008.1.2", "1.2.840.10008.1.2.2"):
            assert ds.PixelData in pixels
