"""The router's HTTP endpoint against what actually happened in routed runs: /metrics and
/api/status counted against the journal, hold/release/retry/remove through HTTP (journaled
with the client's address), the token rule, health, readiness and the disk guard."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydicom.uid import ExplicitVRLittleEndian

from fastpush import Destination, Router, StoreClient
from fastpush.route.http import OpsServer
from fastpush.route.ops import RouterOps
from fastpush.send.retry import RetryPolicy
from fastpush.synthetic import write_study

from support.ops import call, get_json, metrics, post, steps
from support.peers import PynetdicomSCPFactory, StoreSCPFactory
from support.routing import arrived, journal, send_all

pytestmark = pytest.mark.interop

FAST_RETRY = RetryPolicy(retries=1, backoff=0.05, max_backoff=0.3)
REFUSED = 0xC000  # a failure status: refused for good


@pytest.fixture
def files(tmp_path: Path) -> list[Path]:
    return write_study(
        tmp_path / "src", count=30, pixel_bytes=2048, transfer_syntaxes=[ExplicitVRLittleEndian]
    )


class Running:
    """A router with its ops endpoint, stopped at the test's end."""

    def __init__(self) -> None:
        self.started: list[tuple[Router, OpsServer]] = []

    def __call__(
        self,
        spool: Path,
        *destinations: Destination,
        token: str | None = None,
        http_host: str | None = None,
        start: bool = True,
        **options: Any,
    ) -> tuple[Router, OpsServer]:
        router = Router(
            0, list(destinations), spool=spool, host="127.0.0.1", retry=FAST_RETRY, **options
        )
        server = OpsServer(RouterOps(router), 0, host=http_host, token=token).start()
        self.started.append((router, server))
        if start:
            router.start()
        return router, server

    def stop(self) -> None:
        for router, server in self.started:
            server.stop()
            router.stop(abort=True)


@pytest.fixture
def running() -> Iterator[Running]:
    r = Running()
    yield r
    r.stop()


def _push(port: int, files: list[Path], calling_ae: str) -> None:
    with StoreClient("127.0.0.1", port, called_ae="ROUTER", calling_ae=calling_ae) as client:
        for path in files:
            assert client.store(str(path)).ok


def test_metrics_and_status_equal_the_journal(
    storescp: StoreSCPFactory,
    pynetdicom_scp: PynetdicomSCPFactory,
    running: Running,
    files: list[Path],
    tmp_path: Path,
) -> None:
    scp = storescp("+B", "+uf")
    # Every third file refused for good, the others stored.
    picky = pynetdicom_scp(statuses=lambda n: REFUSED if n % 3 == 0 else 0)
    spool = tmp_path / "spool"
    router, http = running(
        spool,
        Destination("127.0.0.1", scp.port, "STORESCP", name="archive"),
        Destination("127.0.0.1", picky.port, picky.aet, name="picky"),
    )
    send_all(router.port, files[:20], tmp_path / "storescu.log")  # calling AE STORESCU
    _push(router.port, files[20:], "MODALITY")
    assert router.wait_idle(60)
    events = journal(spool)
    samples = metrics(http.url)

    def value(name: str, **labels: str) -> float:
        return samples[(name, tuple(sorted(labels.items())))]

    for ae in ("STORESCU", "MODALITY"):
        uids = {e["sop_instance_uid"] for e in events if e["calling_ae"] == ae}
        assert value("fastpush_received_files_total", calling_ae=ae) == len(uids) > 0
    for name in ("archive", "picky"):
        counted = steps(events, destination=name)
        assert value("fastpush_forwarded_files_total", destination=name) == counted["forwarded"]
        assert value("fastpush_failed_files_total", destination=name) == counted["failed"]
        assert value("fastpush_retries_total", destination=name) == counted["retrying"]
        assert value("fastpush_queue_files", destination=name) == 0
        assert value("fastpush_forward_duration_seconds_count", destination=name) == (
            counted["forwarded"] + counted["failed"] + counted["retrying"]
        )
    assert steps(events, destination="picky")["failed"] == 10
    assert value("fastpush_forwarded_files_total", destination="archive") == 30
    assert len(arrived(scp.outdir)) == 30
    assert value("fastpush_spool_files") == 0
    assert value("fastpush_receiving") == 1
    assert value("fastpush_disk_free_bytes") > 0

    status = get_json(http.url + "/api/status?failed_limit=4&failed_offset=2")
    assert status["received"]["files"] == 30
    by_name = {d["name"]: d for d in status["destinations"]}
    assert by_name["archive"]["forwarded"] == 30
    assert by_name["picky"]["failed"] == 10
    assert by_name["picky"]["last_error"]
    failed = status["failed"]
    assert failed["total"] == 10
    # The page: the third to sixth failed file, in arrival order, with the refusal's reason.
    on_disk = sorted(p.name for p in (spool / "failed" / "picky").iterdir() if p.suffix != ".jsonl")
    assert [f["entry"] for f in failed["entries"]] == on_disk[2:6]
    log_lines = (spool / "failed" / "picky" / "failed.jsonl").read_text().splitlines()
    lines = [json.loads(x) for x in log_lines]
    reasons = {Path(x["path"]).name: x["reason"] for x in lines}
    for entry in failed["entries"]:
        assert entry["status"] == REFUSED
        assert entry["reason"] == reasons[entry["entry"]]


def test_hold_remove_release_over_http(
    storescp: StoreSCPFactory, running: Running, files: list[Path], tmp_path: Path
) -> None:
    scp = storescp("+B", "+uf")
    spool = tmp_path / "spool"
    router, http = running(spool, Destination("127.0.0.1", scp.port, "STORESCP", name="pacs"))
    answer = post(http.url + "/api/destinations/pacs/hold")
    assert answer == {"destination": "pacs", "held": True, "changed": True}
    send_all(router.port, files[:10], tmp_path / "storescu.log")
    status = get_json(http.url + "/api/status")
    (pacs,) = status["destinations"]
    assert (pacs["state"], pacs["held"], pacs["queued"]) == ("held", True, 10)
    assert pacs["oldest_age_seconds"] is not None
    assert arrived(scp.outdir) == {}
    assert json.loads((spool / "held.json").read_text()) == {"held": ["pacs"]}

    queued = sorted(p.name for p in (spool / "queue" / "pacs").iterdir())
    removed = post(http.url + "/api/destinations/pacs/remove", {"entry": queued[3]})
    assert removed == {"destination": "pacs", "entry": queued[3], "removed_from": "queue"}
    assert not (spool / "queue" / "pacs" / queued[3]).exists()
    status_code, body = call(http.url + "/api/destinations/pacs/remove", "POST", {"entry": "nope"})
    assert status_code == 404, body
    assert get_json(http.url + "/api/status")["destinations"][0]["queued"] == 9

    post(http.url + "/api/destinations/pacs/release")
    assert router.wait_idle(60)
    assert len(arrived(scp.outdir)) == 9
    assert json.loads((spool / "held.json").read_text()) == {"held": []}
    events = journal(spool)
    operations = [e for e in events if e.get("by")]
    assert [e["step"] for e in operations] == ["held", "removed", "released"]
    assert all(e["by"].startswith("127.0.0.1:") for e in operations)
    assert operations[1]["path"].endswith(queued[3])
    assert steps(events, destination="pacs")["forwarded"] == 9


def test_held_survives_a_restart(
    storescp: StoreSCPFactory, running: Running, files: list[Path], tmp_path: Path
) -> None:
    scp = storescp("+B", "+uf")
    spool = tmp_path / "spool"
    dest = Destination("127.0.0.1", scp.port, "STORESCP", name="pacs")
    router, http = running(spool, dest)
    post(http.url + "/api/destinations/pacs/hold")
    send_all(router.port, files[:5], tmp_path / "storescu.log")
    http.stop()
    router.stop()
    router, http = running(spool, dest)
    (pacs,) = get_json(http.url + "/api/status")["destinations"]
    assert (pacs["state"], pacs["queued"]) == ("held", 5)
    post(http.url + "/api/destinations/pacs/release")
    assert router.wait_idle(60)
    assert len(arrived(scp.outdir)) == 5


def test_retry_failed_over_http(
    pynetdicom_scp: PynetdicomSCPFactory, running: Running, files: list[Path], tmp_path: Path
) -> None:
    # Refuses the first 6 files it is sent, stores everything after.
    scp = pynetdicom_scp(statuses=lambda n: REFUSED if n < 6 else 0)
    spool = tmp_path / "spool"
    router, http = running(spool, Destination("127.0.0.1", scp.port, scp.aet, name="pacs"))
    _push(router.port, files[:12], "MODALITY")
    assert router.wait_idle(60)
    status = get_json(http.url + "/api/status")
    assert status["failed"]["total"] == 6
    assert post(http.url + "/api/destinations/pacs/retry") == {
        "destination": "pacs",
        "requeued": 6,
    }
    assert router.wait_idle(60)
    status = get_json(http.url + "/api/status")
    assert status["failed"]["total"] == 0
    assert status["destinations"][0]["forwarded"] == 12
    assert sorted(set(scp.received_uids)) == sorted(
        {e["sop_instance_uid"] for e in journal(spool) if e["step"] == "received"}
    )
    counted = steps(journal(spool), destination="pacs")
    assert (counted["failed"], counted["requeued"], counted["forwarded"]) == (6, 6, 12)
    assert not any(p.name != "failed.jsonl" for p in (spool / "failed" / "pacs").iterdir())


def test_token_rule(storescp: StoreSCPFactory, running: Running, tmp_path: Path) -> None:
    scp = storescp("--ignore")
    dest = Destination("127.0.0.1", scp.port, "STORESCP", name="pacs")
    router = Router(0, [dest], spool=tmp_path / "refused", host="127.0.0.1")
    try:
        with pytest.raises(ValueError, match="needs a token"):
            OpsServer(RouterOps(router), 0, host="0.0.0.0")
    finally:
        router.stop()
    # Bound beyond the loopback (all addresses; the test talks to it on 127.0.0.1).
    _router, http = running(tmp_path / "spool", dest, token="s3cret", http_host="0.0.0.0")
    url = f"http://127.0.0.1:{http.port}"
    assert call(url + "/healthz")[0] == 200
    for path in ("/metrics", "/readyz", "/api/status"):
        assert call(url + path)[0] == 401
        assert call(url + path, token="wrong")[0] == 401
        assert call(url + path, token="s3cret")[0] == 200
    assert call(url + "/api/destinations/pacs/hold", "POST")[0] == 401
    assert call(url + "/api/destinations/pacs/hold", "POST", token="s3cret")[0] == 200
    # The page itself holds no data: it loads, then asks for the token.
    assert call(url + "/")[0] == 200


def test_loopback_rules(storescp: StoreSCPFactory, running: Running, tmp_path: Path) -> None:
    scp = storescp("--ignore")
    _router, http = running(tmp_path / "spool", Destination("127.0.0.1", scp.port, "S", name="p"))
    assert http.host == "127.0.0.1"
    # A page whose DNS name was rebound to 127.0.0.1 sends its own name as Host.
    assert call(http.url + "/api/status", headers={"Host": "evil.example"})[0] == 403
    assert call(http.url + "/api/status", headers={"Host": f"localhost:{http.port}"})[0] == 200
    # Control takes JSON only: a cross-origin form post cannot reach it without a preflight.
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    assert call(http.url + "/api/destinations/p/hold", "POST", headers=form)[0] == 415
    assert call(http.url + "/api/destinations/nope/hold", "POST")[0] == 404


def test_health_readiness_and_disk_guard(
    storescp: StoreSCPFactory, running: Running, files: list[Path], tmp_path: Path
) -> None:
    scp = storescp("--ignore")
    spool = tmp_path / "spool"
    router, http = running(
        spool, Destination("127.0.0.1", scp.port, "STORESCP", name="pacs"), start=False
    )
    assert call(http.url + "/readyz")[0] == 503
    status, body = call(http.url + "/healthz")
    assert status == 503 and b"not receiving" in body
    router.start()
    assert call(http.url + "/readyz")[0] == 200
    assert call(http.url + "/healthz") == (200, b"ok\n")

    # Less free disk than asked for: refused before the data are read, and health says why.
    router.min_free = 1 << 62
    status, body = call(http.url + "/healthz")
    assert status == 503 and b"free disk" in body
    with StoreClient("127.0.0.1", router.port, called_ae="ROUTER", calling_ae="MOD") as client:
        result = client.store(str(files[0]))
    assert result.status == 0xA700
    refused = [e for e in journal(spool) if e["step"] == "refused"]
    # (The client tries an Out of Resources again: each attempt is one refusal.)
    assert refused and all("free disk" in e["reason"] for e in refused)
    samples = metrics(http.url)
    assert samples[("fastpush_refused_files_total", (("calling_ae", "MOD"),))] == len(refused)
    assert samples[("fastpush_refusing", ())] == 1
    # Space returns: receiving resumes by itself.
    router.min_free = 1
    assert call(http.url + "/healthz") == (200, b"ok\n")
    _push(router.port, files[:1], "MOD")
    assert router.wait_idle(30)
    router.stop()
    assert call(http.url + "/readyz")[0] == 503
