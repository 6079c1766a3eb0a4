"""P-DATA-TF framing: the Rust core and the pure-Python data path produce identical bytes, and
pynetdicom's decoder reads them back as the original command and dataset."""

from __future__ import annotations

import errno
import os
import struct
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pynetdicom.pdu import P_DATA_TF

from fastpush.errors import SourceError
from fastpush.transport import pure as pytransport

try:
    from fastpush import _core
except ImportError:  # pragma: no cover - CI builds the extension
    _core = None  # type: ignore[assignment]

needs_core = pytest.mark.skipif(
    _core is None, reason="fastpush._core is not built (run `pip install -e .` to build it)"
)

Frame = Callable[..., bytes]
FRAMERS: list[Any] = [
    pytest.param(pytransport.frame_message, id="python"),
    pytest.param(getattr(_core, "frame_message", None), id="rust", marks=needs_core),
]

MAX_PDUS = st.one_of(
    st.sampled_from([0, 8, 9, 10, 4096, 4097, 16384, 16385, 65536]),
    st.integers(min_value=8, max_value=70_000),
)


def payload(n: int, seed: int = 0) -> bytes:
    return bytes((i * 31 + seed) & 0xFF for i in range(n))


def split_pdus(data: bytes) -> Iterator[bytes]:
    """Cut a byte stream into PDUs by their length fields."""
    pos = 0
    while pos < len(data):
        (length,) = struct.unpack_from(">I", data, pos + 2)
        yield data[pos : pos + 6 + length]
        pos += 6 + length
    assert pos == len(data)


def decode(data: bytes, context_id: int, max_pdu: int) -> tuple[bytes, bytes | None]:
    """Decode with pynetdicom, checking every structural rule, and reassemble the message."""
    frag = pytransport.fragment_size(max_pdu)
    pdvs: list[tuple[int, bytes]] = []
    for raw in split_pdus(data):
        assert raw[0] == 0x04 and raw[1] == 0
        if max_pdu:
            assert len(raw) - 6 <= max_pdu
        pdu = P_DATA_TF()
        pdu.decode(raw)
        items = pdu.presentation_data_value_items
        assert len(items) == 1, "one PDV per PDU"
        item = items[0]
        assert item.presentation_context_id == context_id
        value = item.presentation_data_value
        assert value is not None
        pdvs.append((value[0], value[1:]))

    command = b"".join(p for mch, p in pdvs if mch & 1)
    n_cmd = sum(1 for mch, _ in pdvs if mch & 1)
    assert all(mch & 1 for mch, _ in pdvs[:n_cmd]), "command PDVs come first"
    assert not any(mch & 1 for mch, _ in pdvs[n_cmd:])
    for part in (pdvs[:n_cmd], pdvs[n_cmd:]):
        for i, (mch, p) in enumerate(part):
            last = i == len(part) - 1
            assert mch == (mch & 1) | (0x02 if last else 0), f"MCH {mch:#04x}"
            assert mch & 0xFC == 0
            if not last:
                assert len(p) == frag and len(p) % 2 == 0
            else:
                assert 0 <= len(p) <= frag
    dataset = b"".join(p for _, p in pdvs[n_cmd:]) if len(pdvs) > n_cmd else None
    return command, dataset


@needs_core
def test_constants() -> None:
    assert _core.UNLIMITED_FRAGMENT == pytransport.UNLIMITED_FRAGMENT == 1 << 20
    assert _core.BUILD_PROFILE in ("release", "debug")
    assert isinstance(_core.__version__, str) and _core.__version__.count(".") >= 2


@needs_core
@settings(max_examples=300, deadline=None)
@given(
    context_id=st.integers(1, 255),
    command_len=st.integers(0, 600),
    dataset_len=st.one_of(st.none(), st.integers(0, 40_000)),
    max_pdu=MAX_PDUS,
)
def test_rust_and_python_frame_identically(
    context_id: int, command_len: int, dataset_len: int | None, max_pdu: int
) -> None:
    command = payload(command_len, 1)
    dataset = None if dataset_len is None else payload(dataset_len, 2)
    expected = pytransport.frame_message(context_id, command, dataset, max_pdu)
    assert _core.frame_message(context_id, command, dataset, max_pdu) == expected


@pytest.mark.parametrize("frame", FRAMERS)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    context_id=st.integers(1, 255).filter(lambda c: c % 2 == 1),
    command_len=st.integers(0, 400),
    dataset_len=st.one_of(st.none(), st.integers(0, 20_000)),
    max_pdu=MAX_PDUS,
)
def test_pynetdicom_decodes_our_pdus(
    frame: Frame, context_id: int, command_len: int, dataset_len: int | None, max_pdu: int
) -> None:
    command = payload(command_len, 3)
    dataset = None if dataset_len is None else payload(dataset_len, 4)
    data = frame(context_id, command, dataset, max_pdu)
    assert decode(data, context_id, max_pdu) == (command, dataset)


@pytest.mark.parametrize("frame", FRAMERS)
def test_none_and_empty_dataset(frame: Frame) -> None:
    cmd = b"\x01\x02\x03\x04"
    head = struct.pack(">BxIIBB", 4, 10, 6, 1, 0x03) + cmd
    assert frame(1, cmd, None, 0) == head
    assert frame(1, cmd, b"", 0) == head + struct.pack(">BxIIBB", 4, 6, 2, 1, 0x02)


@pytest.mark.parametrize("frame", FRAMERS)
@pytest.mark.parametrize("max_pdu", [0, 4096, 4097, 16385])
def test_exact_multiples_and_odd_totals(frame: Frame, max_pdu: int) -> None:
    frag = pytransport.fragment_size(max_pdu)
    assert frag % 2 == 0 and frag <= (max_pdu - 6 if max_pdu else 1 << 20)
    for n in (frag, 3 * frag, 3 * frag + 1, frag - 1, 1):
        data = frame(7, payload(frag, 5), payload(n, 6), max_pdu)
        assert decode(data, 7, max_pdu) == (payload(frag, 5), payload(n, 6))


@pytest.mark.parametrize("frame", FRAMERS)
def test_unlimited_fragments_are_one_mib(frame: Frame) -> None:
    dataset = payload(2 * (1 << 20) + 3)
    pdus = list(split_pdus(frame(1, b"cmd!", dataset, 0)))
    assert [len(p) - 12 for p in pdus] == [4, 1 << 20, 1 << 20, 3]


@pytest.fixture(scope="module")
def dicom_like_file() -> Iterator[tuple[Path, bytes]]:
    """A file with a 'preamble' before the dataset, so regions start at unaligned offsets."""
    content = payload(3 * 4096 + 777, 9)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "file.dcm"
        path.write_bytes(content)
        yield path, content


@pytest.mark.parametrize("frame", FRAMERS)
@pytest.mark.parametrize(
    ("offset", "length"),
    [(0, 0), (0, 13_065), (132, 10_000), (4096, 5000), (5001, 8064), (13_065, 0)],
)
@pytest.mark.parametrize("max_pdu", [0, 4096, 1001])
def test_file_region_equals_bytes(
    frame: Frame, dicom_like_file: tuple[Path, bytes], offset: int, length: int, max_pdu: int
) -> None:
    path, content = dicom_like_file
    region = (str(path), offset, length)
    expected = frame(3, b"command", content[offset : offset + length], max_pdu)
    assert frame(3, b"command", region, max_pdu) == expected


@pytest.mark.parametrize("frame", FRAMERS)
def test_bad_arguments(frame: Frame, dicom_like_file: tuple[Path, bytes]) -> None:
    path, content = dicom_like_file
    for max_pdu in (-1, 1, 7, 1 << 32):
        with pytest.raises(ValueError):
            frame(1, b"c", None, max_pdu)
    for ctx in (0, 256, -1):
        with pytest.raises(ValueError):
            frame(ctx, b"c", None, 0)
    with pytest.raises(SourceError) as missing:
        frame(1, b"c", (str(path) + ".missing", 0, 1), 0)
    assert missing.value.errno == errno.ENOENT
    with pytest.raises(SourceError, match="past the end"):
        frame(1, b"c", (str(path), 1, len(content)), 0)
    with pytest.raises(ValueError):
        frame(1, b"c", (str(path), -1, 2), 0)
    with pytest.raises(TypeError):
        frame(1, b"c", [str(path), 0, 1], 0)
    if os.geteuid() != 0:  # root reads anything
        locked = path.with_suffix(".locked")
        locked.write_bytes(b"xx")
        locked.chmod(0)
        with pytest.raises(PermissionError):
            frame(1, b"c", (str(locked), 0, 2), 0)
