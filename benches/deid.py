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
import resource
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


def pydicom_deid(paths: list[Path], out: Path) -> float:
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
    lines = [f"fastpush {version}; {len(paths)} files, {gb * 1000:.0f} MB", ""]
    # Output on tmpfs: the disk would otherwise set all three de-identifiers' pace.
    with tempfile.TemporaryDirectory(dir=TMPFS) as tmp:
        work = Path(tmp)
        key = work / "deid.key"
        key.write_bytes(b"a benchmark key of 32 bytes....!")
        timings = {}
        for name, run in (
            ("fastpush (Rust editor)", lambda out: fastpush_deid(paths, out, str(key))),
            ("dicom-anonymizer", lambda out: anonymizer_deid(paths, out)),
            ("pydicom read-edit-write", lambda out: pydicom_deid(paths, out)),
        ):
            out = work / name.split()[0]
            out.mkdir()
            timings[name] = run(out)
            print(f"{name}: {len(paths) / timings[name]:.1f} files/s", file=sys.stderr)
        ours = timings["fastpush (Rust editor)"]
        lines += ["| de-identify, file to file | files/s | fastpush is |", "|---|---:|---:|"]
        for name, seconds in timings.items():
            lines.append(f"| {name} | {len(paths) / seconds:.1f} | {seconds / ours:.1f}x |")
        from fastpush.dataset.edits import EditPlan, MapUids, Set

        plan = EditPlan((*(Set(k, v) for k, v in TEN_EDITS), MapUids()), key_file=str(key))
        ratios, cpu = [], {"plain": [], "edited": []}
        for i in range(args.repeat):
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
