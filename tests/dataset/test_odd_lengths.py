"""Odd-length values (non-conformant, written by some applications): the converter pads them to
even length in every conversion, and a dataset converted to its own syntax is re-encoded that
way — Rust and Python byte-identical. A dataset of odd length goes out repaired, as a warning
naming the element; ``--strict`` fails it instead; a truncated one fails with the element it
ends in."""

from __future__ import annotations

import struct
import zlib
from io import BytesIO
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydicom.dataset import FileMetaDataset
from pydicom.filereader import read_dataset
from pydicom.filewriter import write_file_meta_info

import fastpush
from fastpush import Outcome, _core
from fastpush.dataset import convert as rewrite
from fastpush.dataset.item import Item
from fastpush.dataset.payload import prepare
from fastpush.dataset.scan import read_file
from fastpush.errors import ConversionError
from fastpush.uids import DEFLATED_EXPLICIT_VR_LE, EXPLICIT_VR_BE, EXPLICIT_VR_LE, IMPLICIT_VR_LE

from support.peers import StoreSCPFactory, dataset_bytes, pydicom_test_files, run_cli

WALKABLE = [IMPLICIT_VR_LE, EXPLICIT_VR_LE, EXPLICIT_VR_BE]
SYNTAXES = [*WALKABLE, DEFLATED_EXPLICIT_VR_LE]
SEQUENCE = 0x00081140  # Referenced Image Sequence
# Byte-wide VRs, tags in dictionary order, whose implicit VR is the same.
LEAVES = [
    (0x00080018, "UI"),
    (0x00080060, "CS"),
    (0x00081150, "UI"),
    (0x00081155, "UI"),
    (0x00100010, "PN"),
    (0x00100020, "LO"),
    (0x00180050, "DS"),
    (0x00420011, "OB"),
]
LONG = {"OB", "SQ", "UN"}


def _element(tag: int, vr: str, value: bytes, syntax: str, length: int | None = None) -> bytes:
    """One element header and value; ``length`` overrides the value's (undefined: 0xFFFFFFFF)."""
    length = len(value) if length is None else length
    order = ">" if syntax == EXPLICIT_VR_BE else "<"
    head = struct.pack(order + "HH", tag >> 16, tag & 0xFFFF)
    if syntax == IMPLICIT_VR_LE:
        return head + struct.pack("<I", length) + value
    if vr in LONG:
        return head + vr.encode() + struct.pack(order + "HI", 0, length) + value
    return head + vr.encode() + struct.pack(order + "H", length) + value


def _encode(
    leaves: list[tuple[int, str, bytes]],
    items: list[list[tuple[int, str, bytes]]],
    syntax: str,
    defined: bool,
) -> bytes:
    """Leaves before (0008,1140) at the top level, the sequence's items, then the rest."""
    order = ">" if syntax == EXPLICIT_VR_BE else "<"
    undefined = 0xFFFFFFFF

    def delimiter(tag: int) -> bytes:
        return struct.pack(order + "HHI", 0xFFFE, tag, 0)

    body = b""
    for item in items:
        inner = b"".join(_element(t, vr, v, syntax) for t, vr, v in item)
        length = len(inner) if defined else undefined
        body += struct.pack(order + "HHI", 0xFFFE, 0xE000, length) + inner
        body += b"" if defined else delimiter(0xE00D)
    sequence = _element(SEQUENCE, "SQ", body, syntax, None if defined else undefined)
    sequence += b"" if defined else delimiter(0xE0DD)
    before = [e for e in leaves if e[0] < SEQUENCE]
    after = [e for e in leaves if e[0] > SEQUENCE]
    return b"".join(
        [
            *(_element(t, vr, v, syntax) for t, vr, v in before),
            sequence,
            *(_element(t, vr, v, syntax) for t, vr, v in after),
        ]
    )


def _deflate(data: bytes) -> bytes:
    z = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    return z.compress(data) + z.flush()


def _leaves(tags: list[tuple[int, str]]) -> st.SearchStrategy[list[tuple[int, str, bytes]]]:
    value = st.binary(max_size=9).map(lambda b: b.replace(b"\\", b"x"))
    return (
        st.lists(st.sampled_from(tags), unique=True)
        .flatmap(
            lambda picked: st.tuples(
                *(st.tuples(st.just(t), st.just(vr), value) for t, vr in sorted(picked))
            )
        )
        .map(list)
    )


@settings(max_examples=150, deadline=None)
@given(
    top=_leaves(LEAVES),
    items=st.lists(_leaves(LEAVES[2:4]), max_size=2),
    src=st.sampled_from(SYNTAXES),
    dst=st.sampled_from(SYNTAXES),
    defined=st.booleans(),
)
def test_odd_values_padded_identically_by_both_engines(
    top: list[tuple[int, str, bytes]],
    items: list[list[tuple[int, str, bytes]]],
    src: str,
    dst: str,
    defined: bool,
) -> None:
    plain = EXPLICIT_VR_LE if src == DEFLATED_EXPLICIT_VR_LE else src
    data = _encode(top, items, plain, defined)
    if src == DEFLATED_EXPLICIT_VR_LE:
        data = _deflate(data)
    rust = _core.convert_dataset(data, src, dst)
    assert rust == rewrite.convert_bytes(data, src, dst)
    assert len(rust) % 2 == 0
    # Every odd value is named, in the order of the walk.
    walked = [(t, v) for t, _, v in top if t < SEQUENCE]
    walked += [(t, v) for item in items for t, _, v in item]
    walked += [(t, v) for t, _, v in top if t > SEQUENCE]
    assert rewrite.check(data, src, dst) == tuple(t for t, v in walked if len(v) % 2)
    # Read back: each value is the source's, padded by its VR.
    out = zlib.decompress(rust, -zlib.MAX_WBITS) if dst == DEFLATED_EXPLICIT_VR_LE else rust
    ds = read_dataset(BytesIO(out), dst == IMPLICIT_VR_LE, dst != EXPLICIT_VR_BE)
    vrs = dict(LEAVES)

    def padded(tag: int, value: bytes) -> bytes:
        pad = b"\0" if vrs[tag] in ("UI", "OB") else b" "
        return value + pad * (len(value) % 2)

    for tag, _, value in top:
        assert (ds.get_item(tag).value or b"") == padded(tag, value)  # pydicom: '' when empty
    got_items = ds[SEQUENCE].value if items else []
    for got, item in zip(got_items, items, strict=True):
        for tag, _, value in item:
            assert (got.get_item(tag).value or b"") == padded(tag, value)


# -- a file of odd length -------------------------------------------------------------------

SC = "1.2.840.10008.5.1.4.1.1.7"
UID = "1.2.826.0.1.3680043.8.498.1"


def _odd_file(tmp_path: Path, syntax: str) -> Path:
    """A Secondary Capture with three odd-length values, unpadded (so its length is odd)."""
    top = [
        (0x00080016, "UI", SC.encode() + b"\0" * (len(SC) % 2)),
        (0x00080018, "UI", UID.encode() + b"\0" * (len(UID) % 2)),
        (0x00100010, "PN", b"DOE^JON"),
        (0x00100020, "LO", b"ODD"),
    ]
    items = [[(0x00081150, "UI", b"1.2.840.10008.5.1.4.1.1.7\0"), (0x00081155, "UI", b"1.2.3")]]
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SC
    meta.MediaStorageSOPInstanceUID = UID
    meta.TransferSyntaxUID = syntax
    out = BytesIO()
    out.write(b"\0" * 128 + b"DICM")
    write_file_meta_info(out, meta, enforce_standard=True)  # type: ignore[arg-type]
    out.write(_encode(top, items, syntax, defined=True))
    path = tmp_path / f"odd-{syntax}.dcm"
    path.write_bytes(out.getvalue())
    return path


REPAIRED = "odd-length values in (0008,1155), (0010,0010), (0010,0020)"


@pytest.mark.parametrize("syntax", WALKABLE)
def test_prepare_repairs_an_odd_dataset_in_any_syntax(tmp_path: Path, syntax: str) -> None:
    item = read_file(_odd_file(tmp_path, syntax))
    assert isinstance(item, Item) and item.length % 2
    for target in SYNTAXES:
        payload = prepare(item, target)
        assert payload.convert == (syntax, target)
        assert payload.repaired == REPAIRED
        assert payload.warning == REPAIRED + " padded to even length"
        with pytest.raises(
            ConversionError, match=r"\(0008,1155\), \(0010,0010\), \(0010,0020\): not sent"
        ):
            prepare(item, target, strict=True)


def test_prepare_names_the_element_a_truncated_dataset_ends_in() -> None:
    path = pydicom_test_files()[0].parent / "rtplan_truncated.dcm"
    item = read_file(path)
    assert isinstance(item, Item) and item.length % 2
    # Its last element, (300A,012C), says 50 bytes and has 29: truncated, not an odd value.
    with pytest.raises(ConversionError, match=r"truncated in the value of \(300A,012C\)"):
        prepare(item, item.transfer_syntax)


@pytest.mark.interop
@pytest.mark.parametrize("engine", ["rust", "python"])
@pytest.mark.parametrize("accept", ["+xa", "+xi"])
def test_an_odd_dataset_is_stored_repaired_with_a_warning(
    storescp: StoreSCPFactory, tmp_path: Path, engine: str, accept: str
) -> None:
    scp = storescp(accept, "+B", "-pm", "+uf")
    source = _odd_file(tmp_path, EXPLICIT_VR_LE)
    (result,) = fastpush.push([source], scp.host, scp.port, called_ae=scp.aet, engine=engine)
    assert result.outcome is Outcome.WARNING, result
    assert result.reason == REPAIRED + " padded to even length"
    sent = IMPLICIT_VR_LE if accept == "+xi" else EXPLICIT_VR_LE
    assert result.sent_syntax == sent
    (stored,) = scp.stored_files()
    assert dataset_bytes(stored) == _core.convert_dataset(
        dataset_bytes(source), EXPLICIT_VR_LE, sent
    )


@pytest.mark.interop
@pytest.mark.parametrize("accept", ["+xa", "+xi"])
def test_truncated_files_fail_with_their_reason(storescp: StoreSCPFactory, accept: str) -> None:
    scp = storescp(accept, "-pm", "+uf")
    folder = pydicom_test_files()[0].parent
    files = [folder / "rtplan_truncated.dcm"] + (
        [folder / "MR_truncated.dcm"] if accept == "+xi" else []
    )
    results = fastpush.push(files, scp.host, scp.port, called_ae=scp.aet)
    assert [r.outcome for r in results] == [Outcome.FAILED] * len(files)
    assert "truncated in the value of (300A,012C)" in results[0].reason
    if accept == "+xi":
        assert "truncated in the value of (7FE0,0010)" in results[1].reason
    assert not scp.stored_files()


@pytest.mark.interop
def test_strict_fails_an_odd_dataset_naming_the_element(
    storescp: StoreSCPFactory, tmp_path: Path
) -> None:
    scp = storescp("+xa", "-pm", "+uf")
    source = _odd_file(tmp_path, EXPLICIT_VR_LE)
    run = run_cli("store", scp.host, str(scp.port), str(source), "-aec", scp.aet, "--strict")
    assert run.returncode == 1
    assert REPAIRED + ": not sent (--strict)" in run.stdout + run.stderr
    assert not scp.stored_files()
