"""The decompression fallback in memory: what it does with datasets the interop test set has no
example of (no pixels, an encapsulated icon)."""

from __future__ import annotations

from io import BytesIO

import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.filereader import read_dataset
from pydicom.sequence import Sequence
from pydicom.uid import JPEGBaseline8Bit

from fastpush.dataset.decompress import decompress
from fastpush.errors import ConversionError
from fastpush.uids import IMPLICIT_VR_LE

from support.peers import pydicom_test_files


def _part10(ds: Dataset, syntax: str = JPEGBaseline8Bit) -> bytes:
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = syntax
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    out = BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def _identified() -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.SOPInstanceUID = "1.2.3.4"
    ds.PatientName = "DOE^JANE"
    return ds


def test_a_compressed_syntax_without_pixels_is_re_encoded_as_is() -> None:
    ds = _identified()
    got = decompress(_part10(ds), JPEGBaseline8Bit, IMPLICIT_VR_LE)
    assert got.warning == ""  # no pixels, nothing lossy sent
    assert read_dataset(BytesIO(got.data), True, True) == ds


def test_an_encapsulated_icon_is_refused_with_its_sequence_named() -> None:
    source = pydicom.dcmread(pydicom_test_files()[0].parent / "SC_rgb_jpeg_dcmtk.dcm")
    icon = Dataset()
    icon.Rows = icon.Columns = 1
    icon.PixelData = encapsulate([b"\xff\xd8\xff\xd9"])
    icon["PixelData"].VR = "OB"
    icon["PixelData"].is_undefined_length = True
    source.IconImageSequence = Sequence([icon])
    out = BytesIO()
    source.save_as(out)
    with pytest.raises(ConversionError, match=r"inside \(0088,0200\).*not sent"):
        decompress(out.getvalue(), JPEGBaseline8Bit, IMPLICIT_VR_LE)


def test_lossless_ycbcr_keeps_its_samples_as_ybr_full() -> None:
    from pydicom.uid import ExplicitVRLittleEndian, RLELossless

    ds = _identified()
    ds.Rows, ds.Columns, ds.SamplesPerPixel = 2, 3, 3
    ds.PhotometricInterpretation = "YBR_FULL"
    ds.PlanarConfiguration = 0
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    samples = bytes(range(100, 118))
    ds.PixelData = samples
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.compress(RLELossless, encoding_plugin="pydicom")
    got = decompress(_part10(ds, RLELossless), RLELossless, IMPLICIT_VR_LE)
    assert got.warning == ""
    sent = read_dataset(BytesIO(got.data), True, True)
    assert sent.PhotometricInterpretation == "YBR_FULL"
    assert sent.PixelData == samples  # not converted to RGB: lossless stays exact
