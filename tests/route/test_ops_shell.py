"""``python -m fastpush route status|hold|release|retry|remove --spool DIR``: through the
running router's HTTP port while it runs, on the spool under its lock while it is stopped;
``--http`` beyond the loopback without a token is refused at start (exit 2)."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from pydicom.uid import ExplicitVRLittleEndian

from fastpush.synthetic import write_study

from support.ops import get_json
from support.peers import (
    PynetdicomSCPFactory,
    StoreSCPFactory,
    free_port,
    run_cli,
    wait_for_port,
)
from support.routing import RouteProcess, arrived, journal, send_all, start_route

pytestmark = pytest.mark.interop


def _control(*args: str) -> subprocess.CompletedProcess[str]:
    return run_cli("route", *args)


def _json(*args: str) -> Any:
    done = _control(*args, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _stop(route: RouteProcess) -> None:
    """Ctrl-C: the graceful stop (files in flight finish, the others stay spooled)."""
    route.proc.send_signal(signal.SIGINT)
    assert route.proc.wait(timeout=30) == 0, route.text()


def test_control_from_the_shell_running_and_stopped(
    storescp: StoreSCPFactory, pynetdicom_scp: PynetdicomSCPFactory, tmp_path: Path
) -> None:
    files = write_study(
        tmp_path / "src", count=12, pixel_bytes=2048, transfer_syntaxes=[ExplicitVRLittleEndian]
    )
    scp = storescp("+B", "+uf")
    picky = pynetdicom_scp(statuses=lambda n: 0xC000 if n < 4 else 0)
    spool = tmp_path / "spool"
    port, http = free_port(), free_port()
    options = [
        *("--to", "127.0.0.1", str(scp.port), "-aec", "STORESCP"),
        *("--to", "127.0.0.1", str(picky.port), "-aec", picky.aet),
        *("--spool", str(spool), "--http", str(http), "-q"),
        *("--retries", "0", "--max-backoff", "0.3"),
    ]
    pacs, other = "STORESCP@127.0.0.1_" + str(scp.port), picky.aet + "@127.0.0.1_" + str(picky.port)
    route = start_route(port, *options, log=tmp_path / "route.log")
    wait_for_port(http, proc=route.proc)
    try:
        # Running: through its HTTP port.
        held = _control("hold", "--spool", str(spool), "--destination", pacs)
        assert held.returncode == 0, held.stderr
        assert held.stdout.strip() == f"{pacs}: held"
        send_all(port, files, tmp_path / "storescu.log")
        status = _json("status", "--spool", str(spool))
        by_name = {d["name"]: d for d in status["destinations"]}
        assert (by_name[pacs]["state"], by_name[pacs]["queued"]) == ("held", 12)
        assert status["received"]["files"] == 12
        http_status = get_json(f"http://127.0.0.1:{http}/api/status")
        assert {d["name"]: d["queued"] for d in http_status["destinations"]}[pacs] == 12
        queued = sorted(p.name for p in (spool / "queue" / pacs).iterdir())
        removed = _json(
            "remove", "--spool", str(spool), "--destination", pacs, "--entry", queued[0]
        )
        assert removed["removed_from"] == "queue"
    finally:
        _stop(route)

    # Stopped: on the spool itself, under its lock.
    assert not (spool / "http.json").exists()
    status = _json("status", "--spool", str(spool))
    assert status["router"]["running"] is False
    by_name = {d["name"]: d for d in status["destinations"]}
    assert (by_name[pacs]["held"], by_name[pacs]["queued"]) == (True, 11)
    assert status["failed"]["total"] == 4
    assert _json("retry", "--spool", str(spool), "--destination", other)["requeued"] == 4
    assert _json("release", "--spool", str(spool))  # every destination
    text = _control("status", "--spool", str(spool))
    assert text.returncode == 0 and "Failed files: 0" in text.stdout, text.stdout

    route = start_route(port, *options, log=tmp_path / "route.log")
    wait_for_port(http, proc=route.proc)
    try:
        url = f"http://127.0.0.1:{http}/api/status"
        status = get_json(url)
        assert not any(d["held"] for d in status["destinations"])
        _wait_sent(url)
    finally:
        _stop(route)
    assert len(arrived(scp.outdir)) == 11
    assert len(set(picky.received_uids)) == 12
    events = journal(spool)
    operations = [(e["step"], e["destination"]) for e in events if e.get("by")]
    assert operations == [
        ("held", pacs),
        ("removed", pacs),
        *[("requeued", other)] * 4,
        ("released", pacs),
    ]
    by = [e["by"] for e in events if e.get("by")]
    assert by[0].startswith("127.0.0.1:") and "pid" in by[0]  # through HTTP, from the shell
    assert not by[2].startswith("127.0.0.1")  # on the spool: the user, host and pid


def _wait_sent(url: str, timeout: float = 60) -> None:
    """Wait for the router in another process to have sent everything, following
    /api/status as an operator would (it has no other way to tell)."""
    deadline = time.monotonic() + timeout
    while any(d["queued"] for d in get_json(url)["destinations"]):
        assert time.monotonic() < deadline, "the router did not send its queue"
        time.sleep(0.1)


def test_http_beyond_loopback_needs_a_token(tmp_path: Path) -> None:
    done = run_cli(
        "route",
        str(free_port()),
        *("--to", "127.0.0.1", "104", "--spool", str(tmp_path / "spool")),
        *("--http", f"0.0.0.0:{free_port()}"),
    )
    assert done.returncode == 2
    assert "needs --http-token-file" in done.stderr


def test_control_says_when_the_router_runs_without_http(
    storescp: StoreSCPFactory, tmp_path: Path
) -> None:
    scp = storescp("--ignore")
    spool = tmp_path / "spool"
    port = free_port()
    route = start_route(
        port,
        "--to",
        "127.0.0.1",
        str(scp.port),
        "--spool",
        str(spool),
        "-q",
        log=tmp_path / "route.log",
    )
    try:
        done = _control("hold", "--spool", str(spool))
        assert done.returncode == 2
        assert "without an HTTP endpoint" in done.stderr
    finally:
        _stop(route)
