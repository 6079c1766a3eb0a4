"""Failing fast and clearly, as a user meets it on the command line: dead and hung peers cost
one association's attempts, not each file's; a peer that serves one association at a time does
not hold files; bad options stop before anything is sent; files that are not files get results.
"""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path

import pytest

from fastpush.synthetic import write_study

from support.peers import StoreSCPFactory, free_port, run_cli

CT = "1.2.840.10008.5.1.4.1.1.2"


@pytest.fixture(scope="module")
def many(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("many")
    write_study(folder, count=1000, sop_classes=[CT], pixel_bytes=256)
    return folder


class HungPeer:
    """Accepts TCP connections and never says a word; counts them."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connections: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections.append(conn)

    def close(self) -> None:
        self.listener.close()
        for conn in self.connections:
            conn.close()


def test_a_hung_peer_costs_one_acse_timeout_not_one_per_file(many: Path) -> None:
    peer = HungPeer()
    try:
        # 1,000 files times a 2 s ACSE timeout would be over half an hour: the run's bound proves
        # the timeout was waited once, and so does the count of connections.
        done = run_cli("store", "127.0.0.1", str(peer.port), str(many), "--acse-timeout", "2")
    finally:
        peer.close()
    assert done.returncode == 2, done.stderr
    assert len(peer.connections) == 1
    assert "failed: 1000" in done.stdout
    assert "failed with association failed: timed out: 1000" in done.stdout


def test_a_closed_port_is_retried_per_association_then_every_file_fails(many: Path) -> None:
    port = free_port()
    done = run_cli("store", "127.0.0.1", str(port), str(many), "--retries", "2", "-q")
    assert done.returncode == 2
    assert "failed: 1000" in done.stdout
    # One summary line for all of them, saying why.
    failures = [line for line in done.stdout.splitlines() if "failed with" in line]
    assert len(failures) == 1 and "Connection refused" in failures[0], failures
    assert "retry 1/2" in done.stderr and "retry 2/2" in done.stderr


def test_a_name_that_does_not_resolve_gives_up_at_once(study_dir: Path) -> None:
    done = run_cli("store", "no-such-host.invalid", "104", str(study_dir), "-q")
    assert done.returncode == 2
    assert "retry" not in done.stderr
    assert "failed with association failed" in done.stdout
    assert "Name or service not known: 12" in done.stdout


def test_more_associations_than_the_peer_serves(storescp: StoreSCPFactory, many: Path) -> None:
    # storescp without --fork serves one association at a time: the second waits unanswered.
    scp = storescp()
    done = run_cli(
        "store",
        "127.0.0.1",
        str(scp.port),
        str(many),
        "--associations",
        "2",
        "--acse-timeout",
        "300",
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "stored: 1000" in done.stdout
    assert len(scp.stored_files()) == 1000


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["105659"], "port"),
        (["0"], "port"),
        (["-1"], "port"),
        (["104", "--max-pdu", "-1"], "--max-pdu"),
        (["104", "--max-send-pdu", "5"], "--max-send-pdu"),
        (["104", "--acse-timeout", "0"], "--acse-timeout"),
        (["104", "--dimse-timeout", "-3"], "--dimse-timeout"),
        (["104", "--connect-timeout", "nan"], "--connect-timeout"),
        (["104", "--associations", "0"], "--associations"),
        (["104", "--retries", "-1"], "--retries"),
        (["104", "--report", "a.jsonl", "--resume", "b.jsonl"], "not allowed with"),
        (["104", "-q", "-v"], "not allowed with"),
        (["104", "-v", "-d"], "not allowed with"),
    ],
)
def test_bad_options_stop_before_anything_is_sent(
    study_dir: Path, args: list[str], message: str
) -> None:
    port, *rest = args
    done = run_cli("store", "127.0.0.1", port, str(study_dir), *rest)
    assert done.returncode == 2
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("fastpush store: error:") and message in last, done.stderr
    assert "Traceback" not in done.stderr


def test_unwritable_report(study_dir: Path, tmp_path: Path) -> None:
    report = tmp_path / "no" / "such" / "report.jsonl"
    done = run_cli("store", "127.0.0.1", str(free_port()), str(study_dir), "--report", str(report))
    assert done.returncode == 2
    assert f"cannot write the report {report}: No such file or directory" in done.stderr


def test_no_files_is_not_success(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    write_study(tmp_path / "nested" / "inner", count=1)
    for folder in ("empty", "nested"):
        done = run_cli("store", "127.0.0.1", str(free_port()), str(tmp_path / folder))
        assert done.returncode == 1
        assert "no DICOM files found (folders are not descended without -r)" in done.stderr


def test_fifos_and_dangling_links_get_results(storescp: StoreSCPFactory, tmp_path: Path) -> None:
    folder = tmp_path / "mixed"
    write_study(folder, count=2)
    os.mkfifo(folder / "pipe")
    (folder / "dangling").symlink_to(tmp_path / "missing")
    fifo = tmp_path / "named.fifo"
    os.mkfifo(fifo)
    scp = storescp()
    done = run_cli("store", "127.0.0.1", str(scp.port), str(folder), str(fifo), timeout=30)
    assert done.returncode == 1
    assert "stored: 2" in done.stdout and "skipped: 3" in done.stdout
    assert done.stderr.count("not a regular file (a FIFO)") == 2
    assert "dangling" in done.stderr


@pytest.mark.parametrize("engine", ["rust", "python"])
def test_truncated_files_fail_before_sending_never_retried(
    storescp: StoreSCPFactory, tmp_path: Path, engine: str
) -> None:
    files = write_study(tmp_path / "study", count=3, sop_classes=[CT])
    data = files[1].read_bytes()
    files[1].write_bytes(data[:-1000])  # cut inside the pixel data, even length
    data = files[2].read_bytes()
    files[2].write_bytes(data[: len(data) - (64 << 10) - 4])  # cut inside the last header
    scp = storescp()
    done = run_cli("store", "127.0.0.1", str(scp.port), str(tmp_path / "study"), "--engine", engine)
    assert done.returncode == 1
    assert "stored: 1" in done.stdout and "failed: 2" in done.stdout
    assert "truncated in the value of (7FE0,0010) (at dataset offset" in done.stderr
    assert "the dataset does not parse: dataset is truncated (at dataset offset" in done.stderr
    assert "Retrying" not in done.stderr
    assert len(scp.stored_files()) == 1
