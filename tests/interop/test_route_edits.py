"""``storescu`` → ``python -m fastpush route --config`` with two rules and three destinations:
a plain copy and an edited one into DCMTK storescp +B, a de-identified one into Orthanc (read
back over REST). pydicom's test files, in every transfer syntax they come in: the plain copies
arrive byte-exact, the edited ones equal the sources but for the edits, the de-identified ones
carry none of the identifying values, the pixel data byte-identical everywhere; what cannot be
de-identified lands in failed/<destination>/ with the reason and reaches the other two."""

from __future__ import annotations

import copy
import json
import signal
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset

from fastpush.dataset.edits import EditPlan, MapUids

from support.peers import Orthanc, StoreSCPFactory, free_port, pydicom_test_files
from support.routing import (
    acknowledged,
    arrived,
    assert_byte_exact,
    journal,
    start_route,
    storescu,
    uid_of,
    wait_drained,
)

# pydicom warns about the odd values in its own test files.
pytestmark = [pytest.mark.interop, pytest.mark.filterwarnings("ignore::UserWarning")]

KEY = b"the router's interop key, 32 B.."
EDITS = "set InstitutionName, remove PatientBirthDate, mapuids"
IDENTIFYING = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "InstitutionName",
    "ReferringPhysicianName",
    "AccessionNumber",
    "StudyID",
    "OperatorsName",
    "StationName",
)


def _sources() -> list[Path]:
    """pydicom's whole test files with pixel data, one per SOP Instance UID (a PACS keeps one
    instance per UID)."""
    chosen: dict[str, Path] = {}
    for path in pydicom_test_files():
        try:
            ds = pydicom.dcmread(path)
        except Exception:
            continue
        if "PixelData" in ds and "SOPInstanceUID" in ds and "TransferSyntaxUID" in ds.file_meta:
            chosen.setdefault(str(ds.SOPInstanceUID), path)
    return list(chosen.values())


def _expected(original: Dataset, plan: EditPlan) -> Dataset:
    """``original`` with the edited destination's edits made by pydicom."""
    ds = copy.deepcopy(original)
    ds.InstitutionName = "SITE A"
    if "PatientBirthDate" in ds:
        del ds.PatientBirthDate

    def remap(dataset: Dataset, elem: pydicom.DataElement) -> None:
        if elem.VR != "UI" or not elem.value:
            return
        values = elem.value if isinstance(elem.value, pydicom.multival.MultiValue) else [elem.value]
        mapped = [
            v if str(v).startswith("1.2.840.10008.") else plan.compiled.map_uid(str(v))
            for v in values
        ]
        elem.value = mapped if len(mapped) > 1 else mapped[0]

    ds.walk(remap)
    return ds


def _same_but_edits(source: Path, copy_: Path, plan: EditPlan) -> None:
    original, edited = pydicom.dcmread(source), pydicom.dcmread(copy_)
    assert edited.file_meta.TransferSyntaxUID == original.file_meta.TransferSyntaxUID
    assert edited.file_meta.MediaStorageSOPInstanceUID == edited.SOPInstanceUID
    expected = _expected(original, plan)
    wanted = {e.tag for e in expected if e.tag.element != 0 and not e.tag.is_private}
    assert {e.tag for e in edited if e.tag.element != 0 and not e.tag.is_private} == wanted
    for tag in wanted:
        assert edited[tag].value == expected[tag].value, f"{copy_}: {tag} of {source}"


def test_storescu_route_config_plain_edited_deidentified(
    tmp_path: Path, storescp: StoreSCPFactory, orthanc: Orthanc
) -> None:
    plain, edited = storescp("+B", "+xa", "+uf"), storescp("+B", "+xa", "+uf")
    # storescu re-encodes some of pydicom's odd files: what it sends straight to storescp +B
    # is the reference each routed copy is compared with.
    direct = storescp("+B", "+xa", "+uf")
    options = ("-R",)  # each file in its own syntax where storescu can
    storescu(direct.port, _sources(), tmp_path / "direct.log", "STORESCP", *options).wait(300)
    key = tmp_path / "site.key"
    key.write_bytes(KEY)
    port = free_port()
    spool = tmp_path / "spool"
    config = tmp_path / "router.toml"
    config.write_text(
        f"""\
[receive]
port = {port}
host = "127.0.0.1"
ae_title = "ROUTER"
spool = "{spool}"

[forward]
retries = 1
max_backoff = 0.5

[destinations.plain]
host = "127.0.0.1"
port = {plain.port}
called_ae = "STORESCP"

[destinations.edited]
host = "127.0.0.1"
port = {edited.port}
called_ae = "STORESCP"
edits = [{{ set = "InstitutionName", value = "SITE A" }}, {{ remove = "PatientBirthDate" }},
         {{ map_uids = true, key_file = "{key}" }}]

[destinations.deid]
host = "127.0.0.1"
port = {orthanc.dicom_port}
called_ae = "{orthanc.aet}"
deidentify = {{ profile = "basic", key_file = "{key}" }}

[[rules]]
name = "ct"
match = {{ Modality = "CT" }}
to = ["plain", "deid"]

[[rules]]
name = "others"
match = {{}}
to = ["plain", "edited", "deid"]
"""
    )
    route = start_route(port, "--config", str(config), "-q", log=tmp_path / "route.log")
    try:
        scu = storescu(port, _sources(), tmp_path / "storescu.log", "ROUTER", *options)
        scu.wait(timeout=300)
        wait_drained(spool, route)
        route.proc.send_signal(signal.SIGINT)
        assert route.proc.wait(timeout=30) == 0, route.text()
    finally:
        route.stop()
    # What storescu could send is what the router got: it picks an uncompressed context for
    # a compressed file and, without JPEG/JPEG 2000 codecs, fails to convert it; the
    # uncompressed ones (explicit little and big endian) go through.
    reference = {uid: copies[0] for uid, copies in arrived(direct.outdir).items()}
    sent = [reference[uid_of(p)] for p in acknowledged(tmp_path / "storescu.log")]
    syntaxes = {str(pydicom.dcmread(p).file_meta.TransferSyntaxUID) for p in sent}
    assert len(sent) >= 8 and len(syntaxes) >= 2, syntaxes
    ct = [p for p in sent if pydicom.dcmread(p, stop_before_pixels=True).get("Modality") == "CT"]
    others = [p for p in sent if p not in ct]
    assert ct and others

    found = arrived(plain.outdir)
    assert len(found) == len(sent) and all(len(c) == 1 for c in found.values())
    assert_byte_exact(sent, found)

    plan = EditPlan((MapUids(),), key_file=str(key))
    found = arrived(edited.outdir)
    assert len(found) == len(others)
    for source in others:
        uid = plan.compiled.map_uid(str(pydicom.dcmread(source).SOPInstanceUID))
        (copy_,) = found[uid]
        _same_but_edits(source, copy_, plan)

    failed = [
        json.loads(line)
        for line in (spool / "failed" / "deid" / "failed.jsonl").read_text().splitlines()
    ]
    refused = {f["sop_instance_uid"] for f in failed}
    assert all("burned-in" in f["reason"] and f["failure"] == "source" for f in failed)
    assert refused and {uid_of(Path(f["path"])) for f in failed} == refused
    assert refused <= {str(pydicom.dcmread(p).SOPInstanceUID) for p in sent}
    _deidentified(orthanc, sent, len(sent) - len(refused))

    events = journal(spool)
    forwarded = [e for e in events if e["step"] == "forwarded"]
    assert {e["destination"]: e.get("edits", "") for e in forwarded} == {
        "plain": "",
        "edited": EDITS,
        "deid": "deidentify basic",
    }
    rules = {e["rule"] for e in events if e["step"] == "received"}
    assert rules == {"ct", "others"}
    assert f"edited: {len(others)} forwarded, 0 failed, 0 waiting (edits: {EDITS})" in route.text()


def _deidentified(orthanc: Orthanc, sources: list[Path], count: int) -> None:
    """Orthanc holds ``count`` instances, none with an identifying value or UID of the
    sources, each with a source's pixel data."""
    values: set[str] = set()
    uids: set[str] = set()
    pixels: dict[str, set[bytes]] = {}
    for path in sources:
        ds = pydicom.dcmread(path)
        values.update(str(ds.get(k)) for k in IDENTIFYING if ds.get(k))
        uids.update(str(ds.get(k)) for k in ("SOPInstanceUID", "StudyInstanceUID"))
        pixels.setdefault(str(ds.file_meta.TransferSyntaxUID), set()).add(ds.PixelData)
    instances = orthanc.instances()
    assert len(instances) == count
    for instance in instances:
        ds = pydicom.dcmread(pydicom.filebase.DicomBytesIO(orthanc.instance_file(instance)))
        assert ds.PatientIdentityRemoved == "YES"
        for keyword in IDENTIFYING:
            if ds.get(keyword):
                assert str(ds.get(keyword)) not in values, keyword
        assert str(ds.SOPInstanceUID) not in uids and str(ds.StudyInstanceUID) not in uids
        assert not any(e.tag.is_private for e in ds)
        assert ds.PixelData in pixels[str(ds.file_meta.TransferSyntaxUID)]
