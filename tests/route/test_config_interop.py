"""``python -m fastpush route --config`` between real peers: DCMTK storescu sends three
studies (CT, MR, SC), two rules and the unmatched policy route them to three storescp +B
destinations; each gets exactly the files its rules say, byte-exact, and the journal names the
rule of every file."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from pydicom.uid import (
    CTImageStorage,
    ExplicitVRLittleEndian,
    MRImageStorage,
    SecondaryCaptureImageStorage,
)

from fastpush.synthetic import write_study

from support.peers import StoreSCPFactory, free_port
from support.routing import (
    arrived,
    assert_byte_exact,
    journal,
    send_all,
    start_route,
    uid_of,
    wait_drained,
)

pytestmark = pytest.mark.interop


def test_two_rules_three_destinations(tmp_path: Path, storescp: StoreSCPFactory) -> None:
    files = write_study(
        tmp_path / "src",
        count=30,
        pixel_bytes=4096,
        sop_classes=[CTImageStorage, MRImageStorage, SecondaryCaptureImageStorage],
        transfer_syntaxes=[ExplicitVRLittleEndian],
    )
    by_class: dict[str, list[Path]] = {}
    for n, path in enumerate(files):
        by_class.setdefault(["CT", "MR", "SC"][n % 3], []).append(path)
    pacs, research, archive = storescp("+B", "+uf"), storescp("+B", "+uf"), storescp("+B", "+uf")
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

[destinations.pacs]
host = "127.0.0.1"
port = {pacs.port}
called_ae = "STORESCP"

[destinations.research]
host = "127.0.0.1"
port = {research.port}
called_ae = "STORESCP"
associations = 1

[destinations.archive]
host = "127.0.0.1"
port = {archive.port}
called_ae = "STORESCP"

[[rules]]
name = "ct"
match = {{ Modality = "CT", calling_ae = "STORE*", address = "127.0.0.0/8", Rows = {{ gt = 1 }} }}
to = ["pacs", "research"]

[[rules]]
match = {{ sop_class = "MRImageStorage" }}
to = ["archive"]

[routing]
unmatched = "drop"
"""
    )
    route = start_route(port, "--config", str(config), "-q", log=tmp_path / "route.log")
    try:
        send_all(port, files, tmp_path / "storescu.log")
        wait_drained(spool, route)
        route.proc.send_signal(signal.SIGINT)
        assert route.proc.wait(timeout=30) == 0, route.text()
    finally:
        route.stop()
    ct, mr, sc = by_class["CT"], by_class["MR"], by_class["SC"]
    for scp, expected in ((pacs, ct), (research, ct), (archive, mr)):
        found = arrived(scp.outdir)
        assert set(found) == {uid_of(p) for p in expected}, route.text()
        assert all(len(copies) == 1 for copies in found.values())
        assert_byte_exact(expected, found)
    events = journal(spool)
    rules = {
        (e["sop_instance_uid"], e.get("destination")): e.get("rule")
        for e in events
        if e["step"] in ("received", "dropped")
    }
    for path in ct:
        assert rules[uid_of(path), "pacs"] == rules[uid_of(path), "research"] == "ct"
    for path in mr:
        assert rules[uid_of(path), "archive"] == "rules[1]"
    for path in sc:
        assert rules[uid_of(path), None] == "unmatched"
    assert "by rule: " in route.text()
