"""The transfer syntax rewriter: Rust and Python byte-identical, pydicom reads back what it
wrote, malformed input gives ``ConversionError`` and nothing else."""

from __future__ import annotations

import zlib
from io import BytesIO
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.dataset import Dataset
from pydicom.filereader import read_dataset
from pydicom.sequence import Sequence

from fastpush import _core
from fastpush.dataset import convert as rewrite
from fastpush.dataset.item import Item
from fastpush.dataset.scan import read_file
from fastpush.errors import ConversionError
from fastpush.transport import pure as pytransport
from fastpush.uids import (
    DEFLATED_EXPLICIT_VR_LE,
    EXPLICIT_VR_BE,
    EXPLICIT_VR_LE,
    IMPLICIT_VR_LE,
)

from support.peers import encode_dataset, pydicom_test_files

SYNTAXES = [IMPLICIT_VR_LE, EXPLICIT_VR_LE, EXPLICIT_VR_BE, DEFLATED_EXPLICIT_VR_LE]


def _uncompressed_files() -> list[tuple[Path, Item]]:
    found = []
    for path in pydicom_test_files():
        item = read_file(path)
        if isinstance(item, Item) and item.transfer_syntax in SYNTAXES:
            found.append((path, item))
    return found


UNCOMPRESSED = _uncompressed_files()


def _both(data: bytes, src: str, dst: str) -> tuple[bytes | str, bytes | str]:
    """Each engine's output, or the error's class name."""
    out: list[bytes | str] = []
    for engine in (_core.convert_dataset, rewrite.convert_bytes):
        try:
            out.append(engine(data, src, dst))
        except ConversionError:
            out.append("ConversionError")
    return out[0], out[1]


@pytest.mark.parametrize(("path", "item"), UNCOMPRESSED, ids=[p.name for p, _ in UNCOMPRESSED])
def test_engines_identical_on_pydicom_files(path: Path, item: Item) -> None:
    data = path.read_bytes()[item.offset :]
    for dst in SYNTAXES:
        rust, python = _both(data, item.transfer_syntax, dst)
        assert rust == python, dst
        if isinstance(rust, bytes) and dst != item.transfer_syntax:
            # Back to the source syntax, then again: a fixed point after one round.
            back = _core.convert_dataset(rust, dst, item.transfer_syntax)
            again = _core.convert_dataset(back, item.transfer_syntax, dst)
            assert again == rust


def test_engines_identical_on_a_file_region(tmp_path: Path) -> None:
    path, item = next((p, i) for p, i in UNCOMPRESSED if i.transfer_syntax == EXPLICIT_VR_LE)
    region = (str(path), item.offset, item.length)
    command = b"\x00" * 40
    for max_pdu in (0, 4096, 16384):
        convert = (EXPLICIT_VR_LE, EXPLICIT_VR_BE)
        rust = _core.frame_message(1, command, region, max_pdu, convert)
        python = pytransport.frame_message(1, command, region, max_pdu, convert)
        assert rust == python
        converted = _core.convert_dataset(region, *convert)
        assert rust == _core.frame_message(1, command, converted, min(max_pdu or 1 << 30, 1 << 20))


# -- property: random datasets pydicom writes in each syntax, pydicom reads back equal ---------

_TEXT = st.text(alphabet="ABCDEFGHIJ ^0123456789", max_size=20).map(str.strip)
_LEAVES = {
    "PatientName": _TEXT,
    "PatientID": _TEXT,
    "Rows": st.integers(0, 0xFFFF),
    "ReferencedFrameNumber": st.lists(st.integers(-(2**31), 2**31 - 1), min_size=1, max_size=3),
    "SliceThickness": st.sampled_from(["1.5", "0", "-2.25"]),
    "SelectorFDValue": st.lists(st.floats(allow_nan=False), min_size=1, max_size=3),
    "SelectorSLValue": st.lists(st.integers(-(2**31), 2**31 - 1), min_size=1, max_size=3),
    "SelectorUVValue": st.lists(st.integers(0, 2**64 - 1), min_size=1, max_size=2),
    "RecommendedDisplayFrameRateInFloat": st.floats(width=32, allow_nan=False),
    "SelectorATValue": st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=2),
    "RedPaletteColorLookupTableData": st.binary(max_size=16).map(lambda b: b[: len(b) // 2 * 2]),
    "FloatPixelData": st.binary(max_size=16).map(lambda b: b[: len(b) // 4 * 4]),
}
_SEQUENCES = ["ReferencedImageSequence", "SourceImageSequence"]


def _dataset(depth: int) -> st.SearchStrategy[Dataset]:
    leaves = st.dictionaries(st.sampled_from(sorted(_LEAVES)), st.none(), max_size=6).flatmap(
        lambda keys: st.fixed_dictionaries({k: _LEAVES[k] for k in keys})
    )
    if depth == 0:
        return leaves.map(_build)
    nested = st.dictionaries(
        st.sampled_from(_SEQUENCES), st.lists(_dataset(depth - 1), max_size=2), max_size=2
    )
    return st.tuples(leaves, nested).map(lambda t: _build({**t[0], **t[1]}))


def _build(values: dict[str, object]) -> Dataset:
    ds = Dataset()
    for keyword, value in sorted(values.items()):
        setattr(ds, keyword, Sequence(value) if keyword in _SEQUENCES else value)  # type: ignore[arg-type]
    return ds


def _decode(data: bytes, syntax: str) -> Dataset:
    if syntax == DEFLATED_EXPLICIT_VR_LE:
        data = zlib.decompress(data, -zlib.MAX_WBITS)
    return read_dataset(BytesIO(data), syntax == IMPLICIT_VR_LE, syntax != EXPLICIT_VR_BE)


_WIDTHS = {"RedPaletteColorLookupTableData": 2, "FloatPixelData": 4}


def _values(ds: Dataset, swap: bool = False) -> dict[int, object]:
    """Element values by tag, sequences recursively (VRs aside: implicit reads have none).

    pydicom keeps OW/OF values as the bytes in the file, in the file's byte order; ``swap``
    reverses their units, as a change of byte order must.
    """
    out: dict[int, object] = {}
    for elem in ds:
        if elem.VR == "SQ":
            out[elem.tag] = [_values(item, swap) for item in elem.value]
        elif isinstance(elem.value, bytes):
            width = _WIDTHS.get(elem.keyword, 1) if swap else 1
            value = bytes(elem.value)
            out[elem.tag] = b"".join(
                value[i : i + width][::-1] for i in range(0, len(value), width)
            )
        else:
            out[elem.tag] = elem.value
    return out


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ds=_dataset(2), src=st.sampled_from(SYNTAXES), dst=st.sampled_from(SYNTAXES))
def test_random_datasets_round_trip(ds: Dataset, src: str, dst: str) -> None:
    data = encode_dataset(ds, src)
    converted = _core.convert_dataset(data, src, dst)
    assert converted == rewrite.convert_bytes(data, src, dst)
    swap = (src == EXPLICIT_VR_BE) != (dst == EXPLICIT_VR_BE)
    assert _values(_decode(converted, dst)) == _values(_decode(data, src), swap)


# -- fuzz: malformed input --------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(
    base=st.sampled_from([p for p, _ in UNCOMPRESSED if p.stat().st_size < 40_000]),
    cuts=st.lists(st.tuples(st.integers(0, 40_000), st.integers(0, 255)), max_size=4),
    truncate=st.integers(0, 40_000) | st.none(),
    dst=st.sampled_from(SYNTAXES),
)
def test_malformed_input_only_raises_conversion_error(
    base: Path, cuts: list[tuple[int, int]], truncate: int | None, dst: str
) -> None:
    item = read_file(base)
    assert isinstance(item, Item)
    data = bytearray(base.read_bytes()[item.offset :])
    for at, value in cuts:
        if data:
            data[at % len(data)] = value
    if truncate is not None:
        del data[truncate:]
    rust, python = _both(bytes(data), item.transfer_syntax, dst)
    assert rust == python


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=200), src=st.sampled_from(SYNTAXES))
def test_noise_only_raises_conversion_error(data: bytes, src: str) -> None:
    rust, python = _both(data, src, EXPLICIT_VR_LE if src != EXPLICIT_VR_LE else IMPLICIT_VR_LE)
    assert rust == python


def test_unknown_syntax_and_encapsulated_pixel_data() -> None:
    with pytest.raises(ConversionError, match="not an uncompressed"):
        _core.convert_dataset(b"", "1.2.840.10008.1.2.4.50", EXPLICIT_VR_LE)
    with pytest.raises(ConversionError, match="not an uncompressed"):
        rewrite.convert_bytes(b"", "1.2.840.10008.1.2.4.50", EXPLICIT_VR_LE)
    encapsulated = b"\xe0\x7f\x10\x00OB\x00\x00\xff\xff\xff\xff"
    for engine in (_core.convert_dataset, rewrite.convert_bytes):
        with pytest.raises(ConversionError, match="encapsulated"):
            engine(encapsulated, EXPLICIT_VR_LE, IMPLICIT_VR_LE)
