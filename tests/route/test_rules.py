"""Routing rules (route/rules.py): every matcher kind on a received file's header, in each
uncompressed transfer syntax, first and every match, the unmatched policy, CIDR, numeric VRs,
presence and absence; the header is read from the server's head or from the spool file."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    CTImageStorage,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    MRImageStorage,
    generate_uid,
)

from fastpush.receive.received import Received
from fastpush.route.rules import Match, Plain, Rule, Rules

from support.peers import dataset_offset

SYNTAXES = [
    ImplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    DeflatedExplicitVRLittleEndian,
]


def _write(folder: Path, syntax: str, **values: object) -> Path:
    ds = Dataset()
    ds.SOPClassUID = values.pop("SOPClassUID", CTImageStorage)
    ds.SOPInstanceUID = generate_uid()
    ds.Modality = "CT"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.InstitutionName = "SITE A"
    ds.PatientName = "Doe^Jane"
    ds.InstanceNumber = "12"
    ds.SliceThickness = "2.5"
    ds.Rows = 512
    ds.Columns = 256
    ds.BitsAllocated = 8
    ds.PixelData = b"\0" * 1024
    for key, value in values.items():
        if value is None:
            delattr(ds, key)
        else:
            setattr(ds, key, value)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = syntax
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    path = folder / f"{ds.SOPInstanceUID}.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path


def _received(path: Path, *, head: bool = True, **over: str) -> Received:
    data = path.read_bytes()
    offset = dataset_offset(data)
    from pydicom import dcmread

    meta = dcmread(path, stop_before_pixels=True)
    return Received(
        path=path,
        data=None,
        sop_class_uid=str(meta.SOPClassUID),
        sop_instance_uid=str(meta.SOPInstanceUID),
        transfer_syntax=str(meta.file_meta.TransferSyntaxUID),
        calling_ae=over.get("calling_ae", "SCANNER1"),
        called_ae=over.get("called_ae", "ROUTER"),
        size=len(data) - offset,
        association_id=1,
        message_id=1,
        address=over.get("address", "10.1.2.3"),
        head=data[offset : offset + 64] if head else b"",
    )


def _matches(received: Received, **match: Plain) -> bool:
    rules = Rules([Rule(match=match, to=["a"])])
    return bool(rules.decide(received).destinations)


@pytest.fixture(params=SYNTAXES, ids=["implicit", "explicit", "big", "deflated"])
def ct(request: pytest.FixtureRequest, tmp_path: Path) -> Received:
    # A 64-byte head: the walk goes on in the spool file (one read beyond it).
    return _received(_write(tmp_path, request.param), head=request.param != ExplicitVRBigEndian)


def test_exact_glob_regex_on_elements(ct: Received) -> None:
    assert _matches(ct, Modality="CT")
    assert not _matches(ct, Modality="MR")
    assert _matches(ct, Modality=["MR", "CT"])
    assert _matches(ct, InstitutionName="SITE*")
    assert not _matches(ct, InstitutionName="site*")  # case-sensitive
    assert _matches(ct, PatientName={"regex": "^Doe\\^"})
    assert not _matches(ct, PatientName={"regex": "^Roe"})
    # A multi-valued element: the whole value or any one of its values.
    assert _matches(ct, ImageType="AXIAL")
    assert _matches(ct, ImageType="ORIGINAL\\PRIMARY\\AXIAL")
    assert _matches(ct, **{"(0008,0060)": "CT"})
    assert _matches(ct, **{"00080060": "C?"})


def test_numeric_vrs(ct: Received) -> None:
    assert _matches(ct, Rows=512)  # US, binary
    assert _matches(ct, Rows={"ge": 512, "lt": 1024})
    assert not _matches(ct, Rows={"gt": 512})
    assert _matches(ct, Columns={"lt": 300})
    assert _matches(ct, InstanceNumber={"gt": 10})  # IS, text
    assert _matches(ct, SliceThickness={"le": 2.5, "gt": 2})  # DS
    assert not _matches(ct, SliceThickness={"eq": 3})
    assert _matches(ct, Rows="512")  # text of a binary value


def test_presence_and_absence(ct: Received) -> None:
    assert _matches(ct, PatientName=True)
    assert _matches(ct, PatientID=False)
    assert not _matches(ct, PatientID=True)
    assert not _matches(ct, PatientName={"present": False})
    assert not _matches(ct, PatientID="X")  # a value condition on an absent element fails


def test_connection_keys(ct: Received) -> None:
    assert _matches(ct, calling_ae="SCANNER*")
    assert not _matches(ct, calling_ae="OTHER")
    assert _matches(ct, called_ae="ROUTER")
    assert _matches(ct, sop_class=CTImageStorage)
    assert _matches(ct, sop_class="CTImageStorage")  # by keyword
    assert not _matches(ct, sop_class=MRImageStorage)


@pytest.mark.parametrize(
    ("cidr", "address", "expected"),
    [
        ("10.0.0.0/8", "10.1.2.3", True),
        ("10.1.2.3", "10.1.2.3", True),
        ("192.168.0.0/16", "10.1.2.3", False),
        (["192.168.0.0/16", "10.1.0.0/16"], "10.1.2.3", True),
        ("10.0.0.0/8", "::ffff:10.1.2.3", True),
        ("fd00::/8", "fd12::1", True),
        ("10.0.0.0/8", "", False),
    ],
)
def test_cidr(tmp_path: Path, cidr: Plain, address: str, expected: bool) -> None:
    received = _received(_write(tmp_path, ExplicitVRLittleEndian), address=address)
    assert _matches(received, address=cidr) is expected


def test_first_match_every_match_and_drop(tmp_path: Path) -> None:
    ct = _received(_write(tmp_path, ExplicitVRLittleEndian))
    rules = [
        Rule(match={"Modality": "CT"}, to=["pacs"], name="ct"),
        Rule(match={"calling_ae": "SCANNER*"}, to=["research", "pacs"]),
        Rule(match={}, to=["archive"]),
    ]
    first = Rules(rules).decide(ct)
    assert first.destinations == {"pacs": "ct"} and first.rule == "ct"
    every = Rules(rules, first_match=False).decide(ct)
    assert every.destinations == {"pacs": "ct", "research": "rules[1]", "archive": "rules[2]"}
    # A matching drop rule vetoes the others in every-match mode.
    vetoed = Rules(
        [*rules, Rule(match={"Rows": {"gt": 100}}, drop=True, name="big")], first_match=False
    )
    assert vetoed.decide(ct).destinations == {} and vetoed.decide(ct).rule == "big"


def test_unmatched_policy(tmp_path: Path) -> None:
    mr = _received(_write(tmp_path, ExplicitVRLittleEndian, Modality="MR"))
    only_ct = [Rule(match={"Modality": "CT"}, to=["pacs"])]
    dropped = Rules(only_ct).decide(mr)
    assert dropped.destinations == {} and dropped.rule == "unmatched"
    default = Rules(only_ct, unmatched="archive").decide(mr)
    assert default.destinations == {"archive": "unmatched"}


def test_unreadable_header_matches_no_element_rule(tmp_path: Path) -> None:
    path = _write(tmp_path, ExplicitVRLittleEndian)
    received = _received(path, head=False)
    data = bytearray(path.read_bytes())
    start = dataset_offset(bytes(data))
    data[start + 6 : start + 8] = b"\xff\xff"  # the first element now runs past the end
    path.write_bytes(bytes(data))
    rules = Rules(
        [Rule(match={"Rows": 512}, to=["a"]), Rule(match={"calling_ae": "SCANNER1"}, to=["b"])]
    )
    assert rules.decide(received).destinations == {"b": "rules[1]"}


def test_never_reads_the_pixel_data(tmp_path: Path) -> None:
    # A file whose pixel data is not there at all: matching stops past the largest tag named.
    path = _write(tmp_path, ExplicitVRLittleEndian, PixelData=b"\0" * (1 << 20))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - (1 << 20) + 16])
    received = _received(path, head=False)
    assert _matches(received, Rows=512, Modality="CT")


@pytest.mark.parametrize(
    ("match", "message"),
    [
        ({"Modality": {"gt": 3}}, "whose VR is CS"),
        ({"NoSuchKeyword": "x"}, "neither a DICOM keyword"),
        ({"PatientName": {"regex": "("}}, "does not compile"),
        ({"address": "10.0.0.300/8"}, "cidr"),
        ({"Modality": {"like": "x"}}, "unknown condition"),
        ({"calling_ae": True}, "text conditions"),
    ],
)
def test_invalid_rules(match: dict[str, Plain], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Rule(match=match, to=["a"])


def test_rule_needs_to_or_drop() -> None:
    with pytest.raises(ValueError, match="destinations"):
        Rule(match={})
    with pytest.raises(ValueError, match="not both"):
        Rule(match={}, to=["a"], drop=True)
    assert Match.of("CT*").glob == ("CT*",)


def _early(path: Path, cut: int) -> Received:
    """``path`` as seen while it arrives: its first ``cut`` dataset bytes as the head, no
    file behind them."""
    from dataclasses import replace

    received = _received(path)
    data = path.read_bytes()
    offset = dataset_offset(data)
    return replace(received, path=None, head=data[offset : offset + cut])


@pytest.mark.parametrize("syntax", SYNTAXES[:3], ids=["implicit", "explicit", "big"])
def test_decide_early_is_decide_once_the_head_reaches_past_the_elements_named(
    tmp_path: Path, syntax: str
) -> None:
    rules = Rules(
        [
            Rule(match={"Modality": "CT", "InstitutionName": "SITE*"}, to=["a"]),
            Rule(match={"Rows": Match(ge=1024)}, to=["b"]),
        ],
        unmatched="c",
    )
    for rows, institution, expected in (
        (512, "SITE A", {"a"}),
        (2048, "X", {"b"}),
        (9, "X", {"c"}),
    ):
        path = _write(tmp_path, syntax, Rows=rows, InstitutionName=institution)
        whole = rules.decide(_received(path))
        assert set(whole.destinations) == expected
        size = len(path.read_bytes()) - dataset_offset(path.read_bytes())
        decided = [rules.decide_early(_early(path, cut)) for cut in range(size + 1)]
        # Undecided while the head stops before (or at) the last element named; once it
        # reaches past it, the decision is the whole file's, however far the head goes on.
        known = [d for d in decided if d is not None]
        assert known and all(d == whole for d in known)
        first = next(n for n, d in enumerate(decided) if d is not None)
        assert all(d is not None for d in decided[first:])
        assert decided[0] is None


def test_decide_early_waits_for_a_deflated_file_and_needs_no_head_without_element_rules(
    tmp_path: Path,
) -> None:
    path = _write(tmp_path, DeflatedExplicitVRLittleEndian)
    assert (
        Rules([Rule(match={"Modality": "CT"}, to=["a"])]).decide_early(_early(path, 10_000)) is None
    )
    by_connection = Rules([Rule(match={"calling_ae": "SCANNER*"}, to=["a"])], unmatched="b")
    assert by_connection.decide_early(_early(path, 0)) == by_connection.decide(_received(path))
