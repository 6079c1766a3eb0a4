"""The disk guard on a real small file system: the spool on an 8 MiB tmpfs the test mounts
(skipped, with the reason, where it cannot), ``min_free`` 4 MiB. Stores are answered 0xA700
once the disk is that full, /healthz says why, and receiving resumes by itself when the
destination takes the files and the space returns."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom.uid import ExplicitVRLittleEndian

from fastpush import Destination, Router, StoreClient
from fastpush.route.http import OpsServer
from fastpush.route.ops import RouterOps
from fastpush.send.retry import RetryPolicy
from fastpush.synthetic import write_study

from support.ops import call, metrics, post
from support.peers import StoreSCPFactory
from support.routing import journal

pytestmark = pytest.mark.interop

MiB = 1 << 20


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip() or done.returncode}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_min_free_on_a_small_tmpfs(
    small_disk: Path, storescp: StoreSCPFactory, tmp_path: Path
) -> None:
    files = write_study(
        tmp_path / "src",
        count=12,
        pixel_bytes=512 * 1024,
        transfer_syntaxes=[ExplicitVRLittleEndian],
    )
    scp = storescp("--ignore")
    router = Router(
        0,
        [Destination("127.0.0.1", scp.port, "STORESCP", name="pacs")],
        spool=small_disk / "spool",
        host="127.0.0.1",
        min_free=4 * MiB,
        retry=RetryPolicy(retries=0, backoff=0.05, max_backoff=0.3),
    )
    http = OpsServer(RouterOps(router), 0).start()
    router.start()
    try:
        post(http.url + "/api/destinations/pacs/hold")  # files stay: the disk fills
        statuses = []
        once = RetryPolicy(retries=0)
        with StoreClient(
            "127.0.0.1", router.port, called_ae="R", calling_ae="MOD", retry=once
        ) as c:
            for path in files:
                statuses.append(c.store(str(path)).status)
        stored = statuses.index(0xA700)
        # About 4 MiB of files fit above the 4 MiB floor; every store after is refused.
        assert 5 <= stored <= 9, statuses
        assert set(statuses[stored:]) == {0xA700}, statuses
        status, body = call(http.url + "/healthz")
        assert status == 503 and b"free disk" in body, body
        samples = metrics(http.url)
        assert samples[("fastpush_refusing", ())] == 1
        refused = [e for e in journal(small_disk / "spool") if e["step"] == "refused"]
        assert len(refused) == len(files) - stored
        assert samples[("fastpush_refused_files_total", (("calling_ae", "MOD"),))] == len(refused)

        # The destination takes the files: the space returns, receiving resumes by itself.
        post(http.url + "/api/destinations/pacs/release")
        assert router.wait_idle(60)
        assert call(http.url + "/healthz") == (200, b"ok\n")
        with StoreClient("127.0.0.1", router.port, called_ae="R", calling_ae="MOD") as client:
            assert all(client.store(str(p)).ok for p in files[stored:])
        assert router.wait_idle(60)
        assert router.stats().destinations["pacs"].forwarded == len(files)
    finally:
        http.stop()
        router.stop(abort=True)
