"""``--resume`` never resends a stored file nor loses a result: a report cut by a kill, a run
from another folder, a missing report, and files that are not reports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from support.peers import StoreSCPFactory, run_cli


def _lines(report: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in report.read_text().splitlines()]


def test_a_report_cut_mid_line_is_recovered(
    storescp: StoreSCPFactory, study_dir: Path, tmp_path: Path
) -> None:
    scp = storescp()
    files = sorted(study_dir.iterdir())
    report = tmp_path / "report.jsonl"
    first = run_cli("store", scp.host, str(scp.port), str(files[0]), "--report", str(report))
    assert first.returncode == 0
    with report.open("a") as f:  # the run that was killed while writing its second line
        f.write(json.dumps({"path": str(files[1]), "outcome": "stored"})[:25])
    runs = [  # the resume, and the run after it, which still reads the report whole
        run_cli("store", scp.host, str(scp.port), str(study_dir), "--resume", str(report))
        for _ in range(2)
    ]
    assert [run.returncode for run in runs] == [0, 0], runs[0].stderr + runs[1].stderr
    assert "dropping a partial last line" in runs[0].stderr
    assert "Sent 0 objects" in runs[1].stdout and "partial" not in runs[1].stderr
    lines = _lines(report)
    assert sorted(str(line["path"]) for line in lines) == sorted(str(f) for f in files)
    assert len(scp.stored_files()) == len(files)  # nothing sent twice


def test_resume_from_another_folder(
    storescp: StoreSCPFactory, study_dir: Path, tmp_path: Path
) -> None:
    scp = storescp()
    report = tmp_path / "report.jsonl"
    first = run_cli(
        "store", scp.host, str(scp.port), "study", "--report", str(report), cwd=study_dir.parent
    )
    assert first.returncode == 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    again = run_cli(
        "store", scp.host, str(scp.port), str(study_dir), "--resume", str(report), cwd=elsewhere
    )
    assert again.returncode == 0
    assert f"already stored (resumed): {len(list(study_dir.iterdir()))}" in again.stdout
    assert "Sent 0 objects" in again.stdout


def test_a_missing_resume_file_starts_fresh(
    storescp: StoreSCPFactory, study_dir: Path, tmp_path: Path
) -> None:
    scp = storescp()
    report = tmp_path / "new.jsonl"
    done = run_cli("store", scp.host, str(scp.port), str(study_dir), "--resume", str(report))
    assert done.returncode == 0
    assert "does not exist yet: starting a fresh report" in done.stderr
    assert len(_lines(report)) == len(list(study_dir.iterdir()))


@pytest.mark.parametrize(
    ("content", "line"),
    [
        (b'{"path": ["a"], "outcome": "stored"}\n', 1),
        (b'{"path": "/a", "outcome": "stored"}\nnot json at all\n{"path": "/b"}\n', 2),
        (b'{"path": "/a", "outcome": "maybe"}\n', 1),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\n", 1),
        (b"[1, 2, 3]\n", 1),
    ],
)
def test_a_file_that_is_not_a_report_is_refused_untouched(
    study_dir: Path, tmp_path: Path, content: bytes, line: int
) -> None:
    report = tmp_path / "odd.jsonl"
    report.write_bytes(content)
    done = run_cli("store", "127.0.0.1", "104", str(study_dir), "--resume", str(report))
    assert done.returncode == 2
    assert f"{report} line {line}: not a fastpush report line" in done.stderr
    assert "Traceback" not in done.stderr
    assert report.read_bytes() == content
