"""Stopping a push: Ctrl-C finishes what is in flight and releases; SIGKILL then --resume
sends only what is missing. The CLI runs as a user runs it, in its own process."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from support.peers import StoreSCPFactory

pytestmark = pytest.mark.interop


def _start_cli(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "fastpush", "store", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for_lines(report: Path, count: int, proc: subprocess.Popen[str]) -> None:
    # The report is flushed per result, so it is the progress signal a user would watch too.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if report.exists() and len(report.read_text().splitlines()) >= count:
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    raise TimeoutError(f"the report never reached {count} lines")


def _lines(report: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in report.read_text().splitlines()]


@pytest.mark.parametrize("engine", ["rust", "python"])
def test_first_ctrl_c_finishes_in_flight_and_releases(
    storescp: StoreSCPFactory, study: list[Path], tmp_path: Path, engine: str
) -> None:
    # storescp waits a second after each store: the push is slow enough to interrupt.
    scp = storescp("--sleep-after", "1", "+B", "-v")
    report = tmp_path / "report.jsonl"
    proc = _start_cli(
        scp.host,
        str(scp.port),
        *map(str, study[:6]),
        "-aec",
        scp.aet,
        "--engine",
        engine,
        "--report",
        str(report),
    )
    _wait_for_lines(report, 1, proc)
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "Interrupted: finishing the files in flight" in err
    assert "Traceback" not in err
    lines = _lines(report)
    assert sorted(line["path"] for line in lines) == sorted(map(str, study[:6]))
    stored = [line for line in lines if line["outcome"] == "stored"]
    not_sent = [line for line in lines if line["outcome"] == "skipped"]
    assert len(stored) + len(not_sent) == 6 and 2 <= len(stored) < 6
    assert all(str(line["reason"]).startswith("not sent: push cancelled") for line in not_sent)
    assert len(scp.stored_files()) == len(stored)
    assert "Association Release" in scp.log()


def test_second_ctrl_c_aborts_at_once(
    storescp: StoreSCPFactory, study: list[Path], tmp_path: Path
) -> None:
    scp = storescp("--sleep-after", "3", "-v")
    report = tmp_path / "report.jsonl"
    proc = _start_cli(
        scp.host, str(scp.port), *map(str, study[:4]), "-aec", scp.aet, "--report", str(report)
    )
    _wait_for_lines(report, 1, proc)  # the second file is now waiting for its response
    proc.send_signal(signal.SIGINT)
    time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "Aborting the associations now" in err
    lines = _lines(report)
    assert len(lines) == 4
    # The second file's response was not waited for: it is reported not sent.
    assert [line["outcome"] for line in lines] == ["stored", "skipped", "skipped", "skipped"]
    assert "Association Release" not in scp.log()


def test_resume_after_kill_sends_only_what_is_missing(
    storescp: StoreSCPFactory, study: list[Path], tmp_path: Path
) -> None:
    slow = storescp("--sleep-after", "1")
    report = tmp_path / "report.jsonl"
    proc = _start_cli(
        slow.host, str(slow.port), str(study[0].parent), "-aec", slow.aet, "--report", str(report)
    )
    _wait_for_lines(report, 2, proc)
    proc.kill()
    proc.communicate()
    first = _lines(report)
    done = {line["path"] for line in first if line["outcome"] == "stored"}
    assert 2 <= len(done) < len(study)

    fresh = storescp("+B")
    resumed = subprocess.run(
        [
            sys.executable,
            "-m",
            "fastpush",
            "store",
            fresh.host,
            str(fresh.port),
            str(study[0].parent),
            "-aec",
            fresh.aet,
            "--resume",
            str(report),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert f"already stored (resumed): {len(done)}" in resumed.stdout
    assert len(fresh.stored_files()) == len(study) - len(done)
    final = {}
    for line in _lines(report):
        final[line["path"]] = line["outcome"]
    assert final == {str(p): "stored" for p in study}
