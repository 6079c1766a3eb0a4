"""Every compressed file of pydicom's test set pushed to DCMTK storescp accepting Implicit VR LE
only (``+xi``), so each is decompressed on the way: the stored file, read back with pydicom,
decodes frame by frame to the pixels the source decodes to (the same decoder, the same colour
conversion: pydicom's defaults), its pixel-describing elements agree with its pixels, and every
other element is the source's. A file that is not stored fails with a reason, and only when
pydicom itself cannot decode it."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_data_element
from pydicom.pixels import iter_pixels
from pydicom.pixels.utils import get_expected_length
from pydicom.uid import UID

import fastpush
from fastpush import Outcome
from fastpush.dataset.decompress import CODECS_HINT, is_lossy

from support.peers import StoreSCPFactory, pydicom_test_files

pytestmark = [
    pytest.mark.interop,
    # pydicom warns about the odd values of some test files as it reads them.
    pytest.mark.filterwarnings("ignore::UserWarning"),
]


def _compressed() -> list[Path]:
    """The compressed files with an identity (the others are never sent: tested elsewhere)."""
    found = []
    for path in pydicom_test_files():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                ds = pydicom.dcmread(path, stop_before_pixels=True)
            except Exception:  # not readable: other tests' business
                continue
        syntax = getattr(ds, "file_meta", Dataset()).get("TransferSyntaxUID")
        identified = "SOPClassUID" in ds and "SOPInstanceUID" in ds
        if syntax is not None and UID(syntax).is_compressed and identified:
            found.append(path)
    return found


COMPRESSED = _compressed()

# What decoding may change (PS3.5 8.2, pydicom's decompress()), and what only describes
# encapsulated fragments.
PIXEL_DESCRIPTION = frozenset(
    {
        0x00280002,  # Samples per Pixel
        0x00280004,  # Photometric Interpretation
        0x00280006,  # Planar Configuration
        0x00280008,  # Number of Frames
        0x00280100,  # Bits Allocated
        0x00280101,  # Bits Stored
        0x00280102,  # High Bit
        0x00280103,  # Pixel Representation
        0x7FE00001,  # Extended Offset Table
        0x7FE00002,  # Extended Offset Table Lengths
        0x7FE00003,  # Encapsulated Pixel Data Value Total Length
        0x7FE00010,  # Pixel Data
        0xFFFCFFFC,  # Data Set Trailing Padding: storescp drops it when it writes the file
    }
)


def _implicit(elem: object) -> bytes:
    """An element as Implicit VR LE bytes: how both sides compare whatever VR each guessed."""
    fp = DicomBytesIO()
    fp.is_little_endian = True
    fp.is_implicit_VR = True
    write_data_element(fp, elem)  # type: ignore[arg-type]
    return fp.getvalue()


def _assert_same(stored: Dataset, source: Dataset, where: str = "") -> None:
    def tags(ds: Dataset) -> set[int]:
        return {e.tag for e in ds if e.tag.element != 0 and e.tag not in PIXEL_DESCRIPTION}

    assert tags(stored) == tags(source), where
    for tag in sorted(tags(source)):
        a, b = stored[tag], source[tag]
        here = f"{where}{a.tag}"
        if b.VR == "SQ" and a.VR == "SQ":
            assert len(a.value) == len(b.value), here
            for i, (x, y) in enumerate(zip(a.value, b.value, strict=True)):
                _assert_same(x, y, f"{here}[{i}]")
        else:
            assert _implicit(a) == _implicit(b), here


def _source_decodes(path: Path) -> bool:
    try:
        pydicom.dcmread(path).pixel_array  # noqa: B018
    except Exception:
        return False
    return True


@pytest.mark.parametrize("path", COMPRESSED, ids=[p.name for p in COMPRESSED])
def test_decompressed_file_is_its_source(path: Path, storescp: StoreSCPFactory) -> None:
    scp = storescp("+xi", "-pm", "+uf")
    (result,) = fastpush.push([path], scp.host, scp.port, called_ae=scp.aet)
    stored_files = scp.stored_files()
    source = pydicom.dcmread(path)
    has_pixels = "PixelData" in source
    if result.outcome is Outcome.SKIPPED:
        # A compressed syntax in the meta over an Implicit VR dataset: no PACS could read it.
        assert "the dataset is Implicit VR: it cannot be sent" in result.reason, result
        return
    if not result.ok:
        assert result.outcome is Outcome.FAILED and result.reason, result
        assert not stored_files
        # Only what pydicom itself cannot decode may fail.
        assert has_pixels and not _source_decodes(path), result.reason
        return
    (stored_path,) = stored_files
    stored = pydicom.dcmread(stored_path)
    syntax = source.file_meta.TransferSyntaxUID
    lossy = has_pixels and (is_lossy(syntax) or source.get("LossyImageCompression") == "01")
    assert result.outcome is (Outcome.WARNING if lossy else Outcome.STORED), result
    assert ("lossy" in result.reason) == lossy
    _assert_same(stored, source)
    if not has_pixels:
        return
    # The description agrees with the pixels: pydicom sizes them from it, to the byte.
    assert stored.PhotometricInterpretation != "YBR_FULL_422"
    expected = get_expected_length(stored)
    assert len(stored.PixelData) == expected + expected % 2
    frames = 0
    for got, want in zip(iter_pixels(stored), iter_pixels(source), strict=True):
        assert got.dtype == want.dtype, frames
        assert np.array_equal(got, want), f"frame {frames}"
        frames += 1
    assert frames == int(source.get("NumberOfFrames") or 1)


def test_the_colour_files_of_the_issue_are_rgb_once_decoded(storescp: StoreSCPFactory) -> None:
    scp = storescp("+xi", "-pm", "+uf")
    folder = pydicom_test_files()[0].parent
    names = ["examples_ybr_color.dcm", "SC_rgb_dcmtk_+eb+cy+np.dcm", "SC_rgb_dcmtk_+eb+cy+s2.dcm"]
    results = fastpush.push([folder / n for n in names], scp.host, scp.port, called_ae=scp.aet)
    assert [r.outcome for r in results] == [Outcome.WARNING] * 3, results
    stored = [pydicom.dcmread(p) for p in scp.stored_files()]
    assert [s.PhotometricInterpretation for s in stored] == ["RGB"] * 3
    assert [s.SamplesPerPixel for s in stored] == [3] * 3


# A process without the codecs: the imports pydicom probes for them fail, as they would in a
# plain ``pip install fastpush``.
_WITHOUT_CODECS = """
import sys
for name in ("numpy", "pylibjpeg", "openjpeg", "libjpeg", "rle", "gdcm", "PIL", "jpeg_ls"):
    sys.modules[name] = None
from fastpush.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def test_without_codecs_a_compressed_file_fails_saying_how_to_add_them(
    storescp: StoreSCPFactory, tmp_path: Path
) -> None:
    scp = storescp("+xi", "-pm", "+uf")
    folder = pydicom_test_files()[0].parent
    report = tmp_path / "report.jsonl"
    files = [folder / "SC_rgb_jpeg_gdcm.dcm", folder / "MR_small_RLE.dcm"]
    args = ["store", scp.host, str(scp.port), *map(str, files), "-aec", scp.aet, "-q"]
    run = subprocess.run(
        [sys.executable, "-c", _WITHOUT_CODECS, *args, "--report", str(report)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 1, run.stderr
    results = [json.loads(line) for line in report.read_text().splitlines()]
    assert [r["outcome"] for r in results] == ["failed"] * 2
    assert all(CODECS_HINT in r["reason"] for r in results), results
    assert CODECS_HINT in run.stdout + run.stderr  # in the run's summary, not only the report
    assert not scp.stored_files()
