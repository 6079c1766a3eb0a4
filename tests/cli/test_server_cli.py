"""``python -m fastpush serve`` as a user runs it: files stored, the -v story, the layouts,
a full disk answered 0xA700, Ctrl-C stopping gracefully."""

from __future__ import annotations

import resource
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pydicom
import pytest

import fastpush
from fastpush import Outcome

from support.peers import dataset_bytes, free_port, stop_process, wait_for_port

pytestmark = pytest.mark.interop

Serve = Callable[..., tuple[int, subprocess.Popen[bytes]]]


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Serve]:
    started: list[subprocess.Popen[bytes]] = []

    def start(
        *args: str, preexec_fn: Callable[[], None] | None = None, cwd: Path | None = None
    ) -> tuple[int, subprocess.Popen[bytes]]:
        port = free_port()
        log = open(tmp_path / f"serve-{port}.log", "wb")  # noqa: SIM115 - the process owns it
        proc = subprocess.Popen(
            [sys.executable, "-m", "fastpush", "serve", str(port), *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=preexec_fn,
            cwd=cwd,
        )
        log.close()
        started.append(proc)
        wait_for_port(port, proc=proc)
        return port, proc

    yield start
    for proc in started:
        stop_process(proc)


def _log(tmp_path: Path, port: int) -> str:
    return (tmp_path / f"serve-{port}.log").read_text()


def _interrupt(proc: subprocess.Popen[bytes]) -> int:
    proc.send_signal(signal.SIGINT)
    return proc.wait(timeout=30)


def test_serve_stores_tells_the_story_and_stops_on_ctrl_c(
    serve: Serve, tmp_path: Path, study: list[Path]
) -> None:
    out = tmp_path / "out"
    port, proc = serve("-od", str(out), "-v", "-aet", "ARCHIVE")
    results = fastpush.push(study, "127.0.0.1", port, called_ae="ARCHIVE")
    assert [r.outcome for r in results] == [Outcome.STORED] * len(study)
    assert _interrupt(proc) == 0
    for result in results:
        assert result.path is not None
        (stored,) = out.glob(f"*.{result.sop_instance_uid}")
        assert stored.name.split(".")[0] in ("CT", "MR", "SC")
        assert dataset_bytes(stored) == dataset_bytes(result.path)
    log = _log(tmp_path, port)
    for line in (
        "I: Association Received",
        "I: Association Acknowledged (Max Send PDV: 16378)",
        "I: Received Store Request (MsgID 1,",
        "I: Association Release",
        f"Received {len(study)} files,",
    ):
        assert line in log, log


@pytest.mark.parametrize("layout", ["study", "calling-ae"])
def test_layouts(serve: Serve, tmp_path: Path, study: list[Path], layout: str) -> None:
    out = tmp_path / "out"
    port, proc = serve("-od", str(out), "--layout", layout, "--fsync", "-q")
    fastpush.push(study, "127.0.0.1", port, calling_ae="MODALITY1")
    assert _interrupt(proc) == 0
    folders = {p.parent.name for p in out.rglob("*") if p.is_file()}
    if layout == "calling-ae":
        assert folders == {"MODALITY1"}
    else:
        assert folders == {str(pydicom.dcmread(p).StudyInstanceUID) for p in study}
        assert len(folders) == 3


def _small_file_limit() -> None:
    # Files over 200 kB fail with EFBIG, as on a full disk (Python ignores SIGXFSZ).
    resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))


def test_full_disk_answers_out_of_resources_and_goes_on(serve: Serve, tmp_path: Path) -> None:
    from fastpush.synthetic import write_study

    small = write_study(tmp_path / "small", count=2, pixel_bytes=64 << 10)
    big = write_study(tmp_path / "big", count=1, pixel_bytes=1 << 20)
    out = tmp_path / "out"
    port, proc = serve("-od", str(out), preexec_fn=_small_file_limit)
    results = fastpush.push([small[0], big[0], small[1]], "127.0.0.1", port, retries=0)
    assert [r.outcome for r in results] == [Outcome.STORED, Outcome.FAILED, Outcome.STORED]
    assert results[1].status == 0xA700
    assert len({r.association for r in results}) == 1
    assert _interrupt(proc) == 0
    assert sorted(p.name.split(".", 1)[1] for p in out.iterdir()) == sorted(
        r.sop_instance_uid or "" for r in (results[0], results[2])
    )
    assert "E: Cannot store" in _log(tmp_path, port)


def test_ignore_stores_nothing(serve: Serve, tmp_path: Path, study: list[Path]) -> None:
    empty = tmp_path / "cwd"
    empty.mkdir()
    port, proc = serve("--ignore", "+xi", cwd=empty)
    results = fastpush.push(study, "127.0.0.1", port)
    assert all(r.outcome is Outcome.STORED for r in results)
    assert {r.sent_syntax for r in results} == {"1.2.840.10008.1.2"}
    assert _interrupt(proc) == 0
    assert not list(empty.iterdir())
    assert f"Received {len(study)} files" in _log(tmp_path, port)
