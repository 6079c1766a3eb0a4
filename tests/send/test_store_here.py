"""StoreClient.store_here: callers with threads of their own (the router's lanes) store on
their own thread from a pool of associations; with a peer that takes one association at a
time, the callers share it instead of waiting for an association that never comes."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, MRImageStorage

from fastpush import Result, StoreClient
from fastpush.synthetic import write_study

from support.peers import PynetdicomSCPFactory, StoreSCPFactory

pytestmark = pytest.mark.interop


def _files(folder: Path, sop_class: str, count: int, seed: int = 0) -> list[Path]:
    return write_study(
        folder,
        count=count,
        pixel_bytes=1024,
        sop_classes=[sop_class],
        transfer_syntaxes=[ExplicitVRLittleEndian],
        seed=seed,
    )


def _in_threads(client: StoreClient, batches: list[list[Path]]) -> list[Result]:
    results: list[Result] = []
    lock = threading.Lock()

    def run(batch: list[Path]) -> None:
        for path in batch:
            result = client.store_here(path)
            with lock:
                results.append(result)

    threads = [threading.Thread(target=run, args=(batch,)) for batch in batches]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
        assert not thread.is_alive(), "a caller never got an association"
    return results


def test_two_callers_two_associations(pynetdicom_scp: PynetdicomSCPFactory, tmp_path: Path) -> None:
    scp = pynetdicom_scp()
    batches = [_files(tmp_path / str(n), CTImageStorage, 6, seed=n) for n in range(2)]
    with StoreClient("127.0.0.1", scp.port, associations=2) as client:
        results = _in_threads(client, batches)
        assert 1 <= client.open_associations <= 2
    assert all(r.ok and r.attempts == 1 for r in results), [r.reason for r in results]
    sent = {r.sop_instance_uid for r in results}
    assert len(sent) == 12
    assert set(scp.received_uids) == sent


def test_a_peer_taking_one_association_is_shared(storescp: StoreSCPFactory, tmp_path: Path) -> None:
    # storescp serves one association at a time: the two callers share it.
    scp = storescp("+B", "+uf")
    batches = [_files(tmp_path / str(n), CTImageStorage, 5, seed=n) for n in range(2)]
    with StoreClient("127.0.0.1", scp.port, associations=2, acse_timeout=300) as client:
        results = _in_threads(client, batches)
    assert all(r.ok for r in results), [r.reason for r in results]
    assert len(scp.stored_files()) == 10


def test_an_idle_association_that_does_not_fit_makes_room(
    storescp: StoreSCPFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Two SOP classes: the MR file needs a context the idle association (CT only) lacks. It is
    # released before another (proposing both) is asked for, which storescp (one association at
    # a time) would not accept while it is open.
    scp = storescp("-v", "+B", "+uf")
    ct = _files(tmp_path / "ct", CTImageStorage, 2)
    mr = _files(tmp_path / "mr", MRImageStorage, 2)
    with StoreClient("127.0.0.1", scp.port, associations=2, acse_timeout=300) as client:
        results = _in_threads(client, [[ct[0], mr[0], ct[1], mr[1]]])
    assert all(r.ok for r in results), [r.reason for r in results]
    assert "did not take another association" not in caplog.text
    log = scp.log()
    assert log.count("Association Acknowledged") == 2, log
    assert log.count("Association Release") == 2, log  # released by us, not timed out


def test_idle_associations_are_released(storescp: StoreSCPFactory, tmp_path: Path) -> None:
    scp = storescp()
    (path,) = _files(tmp_path, CTImageStorage, 1)
    with StoreClient("127.0.0.1", scp.port, idle_release=30) as client:
        assert client.idle_due() is None
        assert client.store_here(path).ok
        due = client.idle_due()
        assert due is not None and 0 < due <= 30
        client.release_idle()  # not idle long enough yet
        assert client.open_associations == 1
    with StoreClient("127.0.0.1", scp.port, idle_release=0.01) as client:
        assert client.store_here(path).ok
        threading.Event().wait(0.05)
        client.release_idle()
        assert client.open_associations == 0
        assert client.store_here(path).ok  # and the next file opens another
        assert client.open_associations == 1


def test_after_cancel_nothing_is_sent(storescp: StoreSCPFactory, tmp_path: Path) -> None:
    scp = storescp()
    (path,) = _files(tmp_path, CTImageStorage, 1)
    with StoreClient("127.0.0.1", scp.port) as client:
        client.cancel()
        result = client.store_here(path)
    assert not result.ok and result.reason.startswith("not sent"), result.reason
    assert scp.stored_files() == []
