"""pydicom's own test files (real-world files nobody here wrote, in every common syntax) pushed
to DCMTK storescp accepting Implicit VR LE only (``+xi``: conversion and decompression) and
accepting everything (``+xa``: verbatim). Each file is stored, with the stored dataset equal to
the source element by element (pixel values equal after lossless decompression), or it gets a
failed/skipped result with a reason."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset

import fastpush
from fastpush import Outcome, Proposal
from fastpush.dataset.convert import CONVERTIBLE
from fastpush.dataset.decompress import is_lossy
from fastpush.dataset.item import Item
from fastpush.dataset.scan import read_file
from fastpush.uids import DEFLATED_EXPLICIT_VR_LE, EXPLICIT_VR_BE, EXPLICIT_VR_LE, IMPLICIT_VR_LE

from support.peers import StoreSCPFactory, dataset_bytes, pydicom_test_files, run_cli

pytestmark = pytest.mark.interop


FILES = pydicom_test_files()


def _read(path: Path) -> Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # odd values in some test files
        return pydicom.dcmread(path, force=True)  # some have no file meta


def _swap(value: bytes, vr: str, big: bool) -> bytes:
    width = {"OW": 2, "US": 2, "SS": 2, "OF": 4, "OL": 4, "OD": 8}.get(vr, 1) if big else 1
    return b"".join(value[i : i + width][::-1] for i in range(0, len(value), width))


# What decoding changes by definition (PS3.5 8.2: e.g. YBR_RCT is RGB once decoded).
PIXEL_DESCRIPTION = {0x00280004, 0x00280006}


def _assert_same(
    stored: Dataset, source: Dataset, big: bool, skip: frozenset[int] = frozenset(), where: str = ""
) -> None:
    """Element by element, group lengths, pixel data and ``skip`` aside; raw bytes compared in
    little endian (``big``: the source's are big endian)."""
    ignored = {0x7FE00010, *skip}
    tags = {e.tag for e in source if e.tag.element != 0 and e.tag not in ignored}
    assert {e.tag for e in stored if e.tag.element != 0 and e.tag not in ignored} == tags, where
    for tag in sorted(tags):
        a, b = stored[tag], source[tag]
        here = f"{where}{tag}"
        if b.VR == "SQ":
            assert len(a.value) == len(b.value), here
            for i, (x, y) in enumerate(zip(a.value, b.value, strict=True)):
                _assert_same(x, y, big, skip, f"{here}[{i}]")
        elif a.VR != b.VR:
            # Implicit VR on one side and a private or ambiguous tag: each reader guessed its own
            # VR (UN, or pydicom's private dictionary), so only presence can be compared.
            assert tag.is_private or "UN" in (a.VR, b.VR) or " or " in b.VR, here
        elif isinstance(b.value, bytes):
            assert bytes(a.value) == _swap(b.value, b.VR, big), here
        else:
            assert a.value == b.value, here


def _check_stored(stored_path: Path, source_path: Path, item: Item, sent: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # odd values in some test files, read on access
        _compare(stored_path, source_path, item, sent)


def _compare(stored_path: Path, source_path: Path, item: Item, sent: str) -> None:
    stored, source = _read(stored_path), _read(source_path)
    if sent == item.transfer_syntax and sent not in CONVERTIBLE:
        return  # compressed, sent verbatim: the caller compared the bytes
    decoded = item.transfer_syntax not in CONVERTIBLE
    skip = frozenset(PIXEL_DESCRIPTION if decoded else ())
    _assert_same(stored, source, item.transfer_syntax == EXPLICIT_VR_BE, skip)
    if "PixelData" not in source:
        return
    if item.transfer_syntax in CONVERTIBLE or not is_lossy(item.transfer_syntax):
        # The stored pixels decode to the source's, however they were encoded on the way.
        try:
            source_pixels = source.pixel_array
        except ValueError:  # a source pydicom cannot decode (e.g. a malformed IS value)
            assert item.transfer_syntax in CONVERTIBLE
            big = item.transfer_syntax == EXPLICIT_VR_BE
            vr = source["PixelData"].VR
            assert bytes(stored.PixelData) == _swap(source.PixelData, vr, big)
            return
        assert np.array_equal(stored.pixel_array, source_pixels), source_path.name
    else:
        assert len(stored.PixelData) >= stored.Rows * stored.Columns  # pixels, decoded


def _push_each(scp_args: tuple[str, ...], storescp: StoreSCPFactory, engine: str) -> None:
    # "+uf": unique names, so test files that share a SOP Instance UID do not overwrite each
    # other; one push per file tells which stored file came from which source.
    scp = storescp(*scp_args, "+B", "+uf")
    seen: set[Path] = set()
    outcomes: dict[str, int] = {}
    for path in FILES:
        (result,) = fastpush.push([path], scp.host, scp.port, called_ae=scp.aet, engine=engine)
        new = set(scp.stored_files()) - seen
        seen |= new
        outcomes[result.outcome.value] = outcomes.get(result.outcome.value, 0) + 1
        item = read_file(path)
        if not result.ok:
            assert result.reason, path.name
            assert not new, f"{path.name}: {result.outcome} but stored"
            continue
        assert isinstance(item, Item)
        assert len(new) == 1, (path.name, result, sorted(new))
        (stored,) = new
        assert result.sent_syntax is not None
        if result.sent_syntax == item.transfer_syntax:
            source = path.read_bytes()[item.offset :]  # no file meta: the whole file
            padding = b"\0" * (len(source) % 2)  # an odd deflated stream goes out padded
            assert dataset_bytes(stored) == source + padding, path.name  # verbatim
        if result.outcome is Outcome.WARNING:
            assert "lossy" in result.reason
            assert is_lossy(item.transfer_syntax)
        _check_stored(stored, path, item, result.sent_syntax)
    assert outcomes.get("stored", 0) >= 40, outcomes


@pytest.mark.timeout(300)
@pytest.mark.parametrize("engine", ["rust", "python"])
def test_pydicom_files_to_implicit_only_scp(storescp: StoreSCPFactory, engine: str) -> None:
    _push_each(("+xi",), storescp, engine)


@pytest.mark.timeout(300)
def test_pydicom_files_to_accept_all_scp(storescp: StoreSCPFactory) -> None:
    _push_each(("+xa",), storescp, "rust")


def test_converted_bytes_are_what_was_received(storescp: StoreSCPFactory, tmp_path: Path) -> None:
    # storescp +B keeps what arrived: an Explicit VR file received as Implicit VR LE must be
    # exactly our converter's output, from both engines.
    from fastpush import _core

    scp = storescp("+xi", "+B", "+uf")
    path = next(p for p in FILES if p.name == "CT_small.dcm")
    item = read_file(path)
    assert isinstance(item, Item)
    expected = _core.convert_dataset(dataset_bytes(path), item.transfer_syntax, IMPLICIT_VR_LE)
    for engine in ("rust", "python"):
        (r,) = fastpush.push([path], scp.host, scp.port, called_ae=scp.aet, engine=engine)
        assert r.outcome is Outcome.STORED and r.sent_syntax == IMPLICIT_VR_LE, r.reason
    stored = scp.stored_files()
    assert len(stored) == 2
    assert all(dataset_bytes(f) == expected for f in stored)


def test_no_conversion_fails_with_reason(storescp: StoreSCPFactory) -> None:
    scp = storescp("+xi")
    path = next(p for p in FILES if p.name == "CT_small.dcm")
    (r,) = fastpush.push(
        [path], scp.host, scp.port, called_ae=scp.aet, proposal=Proposal(conversion=False)
    )
    assert r.outcome is Outcome.FAILED
    assert "no accepted presentation context" in r.reason
    assert r.sent_syntax is None


@pytest.mark.parametrize(
    ("alias", "scp_option", "syntax"),
    [("big", "+xb", EXPLICIT_VR_BE), ("deflated", "+xd", DEFLATED_EXPLICIT_VR_LE)],
)
def test_cli_prefer_and_report(
    storescp: StoreSCPFactory, tmp_path: Path, alias: str, scp_option: str, syntax: str
) -> None:
    import json

    scp = storescp(scp_option, "+B", "+uf")
    path = next(p for p in FILES if p.name == "CT_small.dcm")
    report = tmp_path / "r.jsonl"
    args = ("store", scp.host, str(scp.port), str(path), "-aec", scp.aet, "--report", str(report))
    proc = run_cli(*args, "--prefer", alias)
    assert proc.returncode == 0, proc.stderr
    (line,) = [json.loads(x) for x in report.read_text().splitlines()]
    assert line["transfer_syntax"] == EXPLICIT_VR_LE
    assert line["sent_syntax"] == syntax
    (stored,) = scp.stored_files()
    _check_stored(stored, path, Item(str(path), "", "", EXPLICIT_VR_LE, 0, 0), syntax)
    bad = run_cli(*args, "--prefer", "jpeg")
    assert bad.returncode == 2
    assert "not an uncompressed transfer syntax" in bad.stderr
