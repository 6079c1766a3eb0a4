"""pydicom's test files pushed by fastpush and by DCMTK's storescu in the same run, to storescp
accepting Implicit VR LE only (``+xi``) and accepting everything bit-preserving (``+B +xa``).

Every file storescu stores, fastpush stores; so is every file pydicom reads whose dataset has
both UIDs, but for the ones that cannot be sent intact (truncated, undecodable, self-contradicting)
— and those say why. No file is refused as not matching its SOP class (0xA900): the identity on
the wire is the dataset's own.
"""

from __future__ import annotations

import subprocess
import warnings
from pathlib import Path

import pydicom
import pytest

import fastpush
from fastpush import Outcome

from support.peers import STORESCU, StoreSCPFactory, pydicom_test_files

pytestmark = pytest.mark.interop

FILES = [p for p in pydicom_test_files() if p.suffix == ".dcm"]
# Why a file pydicom reads may still not be stored: each is a reason fastpush gives.
CANNOT_BE_SENT_INTACT = (
    "truncated",  # a value cut short: sending it would pass on a cut value
    "cannot decompress",  # no decoder for its pixel data (pydicom's own decoders fail too)
    "the dataset is Implicit VR: it cannot be sent",  # a compressed syntax over implicit VR
)


def _identified(path: Path) -> bool:
    """pydicom reads it and its dataset carries both UIDs."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path, force=True, stop_before_pixels=True)
    except Exception:
        return False
    return bool(ds.get("SOPClassUID")) and bool(ds.get("SOPInstanceUID"))


def _storescu_stores(path: Path, port: int, aet: str, outdir: Path) -> bool:
    """Whether storescu gets this one file stored (counted in storescp's folder: exact)."""
    before = len(list(outdir.iterdir()))
    subprocess.run(
        [STORESCU, "-aec", aet, "127.0.0.1", str(port), str(path)],
        capture_output=True,
        timeout=60,
        check=False,
    )
    return len(list(outdir.iterdir())) > before


@pytest.mark.parametrize("accept", [["+xi"], ["+B", "+xa"]], ids=["implicit-only", "all"])
def test_pydicom_files_against_storescu(storescp: StoreSCPFactory, accept: list[str]) -> None:
    theirs = storescp(*accept, "-pm", "+uf")
    dcmtk = {p for p in FILES if _storescu_stores(p, theirs.port, theirs.aet, theirs.outdir)}
    ours = storescp(*accept, "-pm", "+uf")
    results = fastpush.push(FILES, ours.host, ours.port, called_ae=ours.aet)
    assert len(results) == len(FILES)
    by_path = {Path(r.path): r for r in results if r.path}
    stored = {p for p, r in by_path.items() if r.ok}

    assert dcmtk <= stored, {p.name: by_path[p].reason for p in dcmtk - stored}
    assert len(dcmtk) < len(stored)
    assert not [r for r in results if r.status == 0xA900]
    for path in (p for p in FILES if _identified(p) and p not in stored):
        reason = by_path[path].reason
        assert any(why in reason for why in CANNOT_BE_SENT_INTACT), (path.name, reason)
    assert all(r.reason for r in results if not r.ok)
    assert len(ours.stored_files()) == len(stored)
    # Identity on the wire is the dataset's, notes say when the file meta disagreed.
    rtdose = by_path[next(p for p in FILES if p.name == "rtdose.dcm")]
    assert rtdose.outcome in (Outcome.STORED, Outcome.WARNING)
    assert any("differs from the dataset's" in note for note in rtdose.notes)
