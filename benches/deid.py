"""Tag edits and de-identification (issue 18), all numbers from one run.

1. De-identifying 1,000 x 0.5 MB files (Explicit VR LE CT/MR), file to file: fastpush's Rust
   editor (the Basic Profile compiled to its rules; read the dataset in place, edit, write
   Part-10 with the new Media Storage SOP Instance UID), ``dicom-anonymizer`` (PyPI,
   KitwareMedical: ``anonymize_dicom_file``) and pydicom read -> edit (names, IDs, dates, UIDs,
   private elements) -> write; output on tmpfs. Target: >= 10x the files/s of each.
2. Forwarding with edits: ``fastpush.push`` of the same files into ``storescp --ignore`` (Nagle
   off) with a 10-element edit and a UID map, and without edits; ``--repeat`` alternating pairs,
   median ratio. Target: >= 0.85x. Also the sender's CPU s/GB of each.

    python benches/deid.py [--data DIR] [--files 1000] [--repeat 3] [--out FILE]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from e2e import _require_release_build, _study, _warm_page_cache
from receive import TMPFS
from sinks import start_sink

FILE_SIZE = 512 * 1024


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def fastpush_deid(paths: list[Path], out: Path, key_file: str) -> float:
    from fastpush.dataset.edits import Deidentify, EditPlan, write_edited
    from fastpush.dataset.scan import read_file

    plan = EditPlan(deidentify=Deidentify(), key_file=key_file)
    started = time.perf_counter()
    for path in paths:
        item = read_file(path)
        assert not hasattr(item, "reason"), item
        write_edited(item, plan, out / path.name)  # type: ignore[arg-type]
    return time.perf_counter() - started


def anonymizer_deid(paths: list[Path], out: Path) -> float:
    from dicomanonymizer.simpledicomanonymizer import anonymize_dicom_file

    started = time.perf_counter()
    for path in paths:
        anonymize_dicom_file(str(path), str(out / path.name))
    return time.perf_counter() - started


def pydicom_light(paths: list[Path], out: Path) -> float:
    """The earlier baseline: a dozen attributes, not the profile (a lighter job than ours)."""
    import pydicom
    from pydicom.uid import generate_uid

    started = time.perf_counter()
    uids: dict[str, str] = {}
    for path in paths:
        ds = pydicom.dcmread(path)
        ds.PatientName = "ANON"
        ds.PatientID = "ANON"
        for keyword in ("PatientBirthDate", "InstitutionName", "ReferringPhysicianName"):
            if keyword in ds:
                del ds[keyword]
        for keyword in ("StudyDate", "SeriesDate", "AccessionNumber"):
            if keyword in ds:
                ds[keyword].value = ""
        for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
            old = str(ds[keyword].value)
            ds[keyword].value = uids.setdefault(old, generate_uid())
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.remove_private_tags()
        ds.PatientIdentityRemoved = "YES"
        ds.save_as(out / path.name)
    return time.perf_counter() - started


# The D action's dummies, as the Rust editor writes them (rust/convert/edit.rs `dummy`).
_DUMMY = {"AS": "000Y", "DA": "19000101", "DT": "19000101000000", "TM": "000000", "DS": "0"}
_DUMMY |= {"IS": "0", "UR": "http://anonymized.invalid", "UI": "2.25.0"}
_DUMMY |= dict.fromkeys(("AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UT"), "ANONYMIZED")


def _dummy(vr: str, value: object) -> object:
    if vr in _DUMMY:
        return _DUMMY[vr]
    if isinstance(value, bytes):
        return bytes(len(value))
    return 0


def pydicom_profile(paths: list[Path], out: Path, key: bytes) -> float:
    """pydicom doing our job: the same Basic Profile rules (the table compiled by
    ``fastpush.dataset.deid``, applied by tag at every depth), private elements removed, UIDs and
    the pseudonym keyed with HMAC-SHA256, the profile's attributes added, the meta updated."""
    import hashlib
    import hmac

    import pydicom
    from pydicom.dataset import Dataset

    from fastpush.dataset.deid import profile_rules
    from fastpush.dataset.edits import Deidentify

    compiled = profile_rules(Deidentify())
    top = {sel: (kind, value) for sel, scope, kind, value, _ in compiled if scope == []}
    table = {sel: kind for sel, scope, kind, _, _ in compiled if scope is None}
    masked = [
        (sel[1], sel[2], kind)
        for sel, _, kind, _, _ in compiled
        if isinstance(sel, tuple) and sel[0] == "masked"
    ]
    uids: dict[str, str] = {}

    def map_uid(uid: str) -> str:
        if uid.startswith("1.2.840.10008.") or not uid:
            return uid
        if uid not in uids:
            digest = hmac.new(key, uid.encode(), hashlib.sha256).digest()
            uids[uid] = f"2.25.{int.from_bytes(digest[:16], 'big')}"
        return uids[uid]

    def clean(ds: Dataset, pseudonym: str) -> None:
        for elem in list(ds):
            tag = int(elem.tag)
            if elem.tag.is_private:
                del ds[elem.tag]
                continue
            kind = table.get(tag) or next((k for m, v, k in masked if tag & m == v), None)
            if kind == "remove":
                del ds[elem.tag]
            elif kind == "empty":
                elem.value = [] if elem.VR == "SQ" else ""
            elif kind == "pseudonym":
                elem.value = pseudonym
            elif elem.VR == "SQ":
                for item in elem.value:
                    clean(item, pseudonym)
            elif kind == "dummy":
                elem.value = _dummy(elem.VR, elem.value)
            elif kind == "map_uid" and elem.VM > 1:
                elem.value = [map_uid(str(uid)) for uid in elem.value]
            elif kind == "map_uid":
                elem.value = map_uid(str(elem.value))

    started = time.perf_counter()
    for path in paths:
        ds = pydicom.dcmread(path)
        patient_id = str(ds.get("PatientID", "")).strip()
        pseudonym = (
            hmac.new(key, b"patient\0" + patient_id.encode(), hashlib.sha256)
            .hexdigest()[:16]
            .upper()
        )
        clean(ds, pseudonym)
        ds.PatientIdentityRemoved = top[0x00120062][1]
        ds.DeidentificationMethod = top[0x00120063][1]
        codes = []
        for item in top[0x00120064][1]:
            code = Dataset()
            for tag, vr, text in item:
                code.add_new(tag, vr, text)
            codes.append(code)
        ds.DeidentificationMethodCodeSequence = codes
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.save_as(out / path.name)
    return time.perf_counter() - started


TEN_EDITS = (
    ("InstitutionName", "SITE A"),
    ("InstitutionAddress", "NOWHERE"),
    ("ReferringPhysicianName", "DR^NOBODY"),
    ("StationName", "STATION"),
    ("StudyDescription", "RESEARCH"),
    ("SeriesDescription", "RESEARCH"),
    ("OperatorsName", "OPERATOR"),
    ("PatientComments", "NONE"),
    ("AccessionNumber", "A1"),
    ("StudyID", "S1"),
)


def forward(paths: list[Path], sink_dir: Path, edits: object) -> tuple[float, float]:
    import fastpush

    sink = start_sink("storescp-nodelay", sink_dir)
    try:
        cpu = _cpu()
        started = time.perf_counter()
        options = {} if edits is None else {"edits": edits}
        results = fastpush.push(paths, "127.0.0.1", sink.port, called_ae=sink.aet, **options)
        seconds = time.perf_counter() - started
        bad = [r.reason for r in results if r.outcome.name not in ("STORED", "WARNING")]
        assert not bad, bad[:3]
        return seconds, _cpu() - cpu
    finally:
        sink.stop()


def _deidentify(paths: list[Path], work: Path, key: Path, repeat: int, gb: float) -> list[str]:
    """Each de-identifier ``repeat`` times, the order reversed every other round (the first to
    write into memory the VM has not touched yet pays for it); medians, and the ratios of each
    round."""
    runs = {
        "fastpush (Rust editor)": lambda out: fastpush_deid(paths, out, str(key)),
        "dicom-anonymizer": lambda out: anonymizer_deid(paths, out),
        "pydicom, the same profile": lambda out: pydicom_profile(paths, out, key.read_bytes()),
        "pydicom, a dozen attributes": lambda out: pydicom_light(paths, out),
    }
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    cpu: dict[str, list[float]] = {name: [] for name in runs}
    for i in range(repeat):
        for name in list(runs) if i % 2 == 0 else reversed(runs):
            out = work / "deidentified"
            out.mkdir()
            before = _cpu()
            seconds[name].append(runs[name](out))
            cpu[name].append((_cpu() - before) / gb)
            shutil.rmtree(out)
            print(f"{name}: {len(paths) / seconds[name][-1]:.1f} files/s", file=sys.stderr)
    ours = seconds["fastpush (Rust editor)"]
    lines = [
        "| de-identify, file to file | files/s | CPU s/GB | fastpush is | rounds |",
        "|---|---:|---:|---:|---|",
    ]
    for name, times in seconds.items():
        ratios = [t / o for t, o in zip(times, ours, strict=True)]
        lines.append(
            f"| {name} | {len(paths) / statistics.median(times):.1f} "
            f"| {statistics.median(cpu[name]):.2f} | {statistics.median(ratios):.1f}x "
            f"| {', '.join(f'{r:.1f}x' for r in ratios)} |"
        )
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "fastpush-bench")
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    version = _require_release_build()
    data = _study(args.data, args.files, FILE_SIZE)
    paths = sorted(data.path.iterdir())
    _warm_page_cache(data)
    gb = sum(p.stat().st_size for p in paths) / 1e9
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    lines = [f"fastpush {version}; {len(paths)} files, {gb * 1000:.0f} MB; load {load}", ""]
    # Output on tmpfs: the disk would otherwise set all three de-identifiers' pace.
    with tempfile.TemporaryDirectory(dir=TMPFS) as tmp:
        work = Path(tmp)
        key = work / "deid.key"
        key.write_bytes(b"a benchmark key of 32 bytes....!")
        lines += _deidentify(paths, work, key, args.repeat, gb)
        from fastpush.dataset.edits import EditPlan, MapUids, Set

        plan = EditPlan((*(Set(k, v) for k, v in TEN_EDITS), MapUids()), key_file=str(key))
        ratios, cpu = [], {"plain": [], "edited": []}
        for i in range(args.repeat):
            # Each pair in the other order from the last: neither is always the first.
            if i % 2:
                edited = forward(paths, work / f"sink-edited-{i}", plan)
                plain = forward(paths, work / f"sink-plain-{i}", None)
            else:
                plain = forward(paths, work / f"sink-plain-{i}", None)
                edited = forward(paths, work / f"sink-edited-{i}", plan)
            ratios.append(plain[0] / edited[0])
            cpu["plain"].append(plain[1] / gb)
            cpu["edited"].append(edited[1] / gb)
            print(
                f"pair {i}: plain {len(paths) / plain[0]:.0f} files/s, "
                f"edited {len(paths) / edited[0]:.0f} files/s",
                file=sys.stderr,
            )
        lines += [
            "",
            f"Forwarding into storescp --ignore with 10 edits + UID map: "
            f"{statistics.median(ratios):.2f}x the files/s unedited (median of {args.repeat} "
            f"alternating pairs: {', '.join(f'{r:.2f}' for r in ratios)}); sender CPU "
            f"{statistics.median(cpu['edited']):.2f} s/GB edited, "
            f"{statistics.median(cpu['plain']):.2f} s/GB unedited.",
        ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
