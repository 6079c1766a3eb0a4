"""The Rust walk of a head in memory (``_core.top_uids``, the router's path for every file) and
the Python walker give the same answers: the same UIDs, or the same reason they cannot."""

from __future__ import annotations

import random
import sys
import warnings
from pathlib import Path

import pydicom
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydicom.filereader import _read_file_meta_info, read_preamble

from fastpush import _core
from fastpush.dataset import header
from fastpush.dataset.header import BufferSource, Unreadable, read_top_uids

TEST_FILES = Path(pydicom.data.get_testdata_file("CT_small.dcm")).parent  # type: ignore[arg-type]
IDENTITY = {0x0008_0016: "SOP Class UID", 0x0008_0018: "SOP Instance UID"}
STUDY = {0x0020_000D: "Study Instance UID", 0x0020_000E: "Series Instance UID"}
ENCODINGS = {"1.2.840.10008.1.2": (True, True), "1.2.840.10008.1.2.2": (False, False)}


class Walked(BufferSource):
    """The same bytes, read by the Python walker (the fast path takes BufferSource only)."""

    __slots__ = ()


def answer(source: BufferSource, wanted: dict[int, str], implicit: bool, little: bool) -> object:
    strict = wanted is IDENTITY
    try:
        return read_top_uids(source, 0, wanted, implicit, little, strict)
    except Unreadable as exc:
        return f"Unreadable: {exc}"


def assert_same(data: bytes, implicit: bool, little: bool) -> None:
    for wanted in (IDENTITY, STUDY, IDENTITY | STUDY):
        fast = answer(BufferSource(data), wanted, implicit, little)
        assert fast == answer(Walked(data), wanted, implicit, little), (wanted, data[:64])


def datasets() -> list[tuple[str, bytes, bool, bool]]:
    found = []
    for path in sorted(TEST_FILES.iterdir()):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                with open(path, "rb") as fp:
                    read_preamble(fp, force=False)
                    meta = _read_file_meta_info(fp)
                    data = fp.read()
            except Exception:
                continue
        syntax = str(meta.get("TransferSyntaxUID", ""))
        implicit, little = ENCODINGS.get(syntax, (False, True))
        found.append((path.name, data, implicit, little))
    return found


@pytest.mark.parametrize(("name", "data", "implicit", "little"), datasets())
def test_pydicom_files_whole_and_cut_anywhere(
    name: str, data: bytes, implicit: bool, little: bool
) -> None:
    head = data[: 1 << 16]  # what the receive loop keeps
    cuts = random.Random(name).sample(range(len(head)), min(len(head), 40))
    for cut in [len(head), *cuts]:
        assert_same(head[:cut], implicit, little)


def _element(tag: int, vr: bytes, value: bytes) -> bytes:
    long = vr in (b"OB", b"SQ", b"UN", b"UT")
    return (
        (tag >> 16).to_bytes(2, "little")
        + (tag & 0xFFFF).to_bytes(2, "little")
        + vr
        + (b"\0\0" if long else b"")
        + len(value).to_bytes(4 if long else 2, "little")
        + value
    )


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from([0x0008_0005, 0x0008_0016, 0x0008_0018, 0x0010_0010, 0x0020_000D]),
            st.sampled_from([b"UI", b"CS", b"OB", b"SQ", b"UN", b"ZZ"]),
            st.binary(max_size=80) | st.just(b"1.2.840.10008.5.1.4.1.1.2\0"),
        ),
        max_size=6,
    ),
    st.binary(max_size=12),
)
def test_made_up_heads(elements: list[tuple[int, bytes, bytes]], tail: bytes) -> None:
    data = b"".join(_element(*e) for e in elements) + tail
    assert_same(data, False, True)
    assert_same(data, True, True)


def test_the_fast_walk_answers_the_plain_case() -> None:
    data = _element(0x0008_0016, b"UI", b"1.2\0") + _element(0x0008_0018, b"UI", b"1.3")
    assert _core.top_uids(data, 0, list(IDENTITY), False, True, True) == [
        (0x0008_0016, "1.2"),
        (0x0008_0018, "1.3"),
    ]


def test_without_the_rust_core_the_python_walker_answers_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = _element(0x0008_0016, b"UI", b"1.2\0") + _element(0x0008_0018, b"UI", b"1.3")
    monkeypatch.setitem(sys.modules, "fastpush._core", None)  # an install without it
    header._fast_walk.cache_clear()
    try:
        assert header._fast_walk() is None
        assert read_top_uids(BufferSource(data), 0, IDENTITY, False, True, True) == {
            0x0008_0016: "1.2",
            0x0008_0018: "1.3",
        }
    finally:
        header._fast_walk.cache_clear()
