"""StoreClient, the router API: many threads, a small pool, reopening after failures."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from pydicom import dcmread

import fastpush
from fastpush import EventKind, Outcome, StoreClient
from fastpush.send.retry import RetryPolicy

from support.peers import PynetdicomSCPFactory, StoreSCPFactory
from support.scripted import ScriptedPeer, faulty

pytestmark = pytest.mark.interop


@pytest.mark.parametrize("engine", ["rust", "python"])
def test_many_threads_share_a_small_pool(
    pynetdicom_scp: PynetdicomSCPFactory, study: list[Path], engine: str
) -> None:
    scp = pynetdicom_scp()
    events: list[fastpush.Event] = []
    lock = threading.Lock()

    def record(event: fastpush.Event) -> None:
        with lock:
            events.append(event)

    items: list[object] = [*study[:4], study[4].read_bytes(), dcmread(study[5])]
    results: list[fastpush.Result] = []
    with StoreClient(scp.host, scp.port, associations=2, engine=engine, on_event=record) as client:

        def worker(item: object) -> None:
            result = client.store(item)  # type: ignore[arg-type]
            with lock:
                results.append(result)

        threads = [threading.Thread(target=worker, args=(item,)) for item in items * 2]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        futures = [client.submit(path) for path in study[6:]]
        results.extend(future.result(timeout=30) for future in futures)
    assert all(r.outcome is Outcome.STORED for r in results), [r.reason for r in results]
    assert len(scp.received) == len(items) * 2 + len(study[6:])
    # Never more than the pool's two associations open at once, and every one released.
    open_now = peak = 0
    for event in events:
        open_now += {EventKind.ACCEPTED: 1, EventKind.RELEASED: -1}.get(event.kind, 0)
        peak = max(peak, open_now)
    assert peak == 2
    assert open_now == 0


def test_client_reopens_after_a_lost_association(tmp_path: Path) -> None:
    from fastpush.synthetic import write_study

    files = write_study(
        tmp_path,
        count=3,
        sop_classes=["1.2.840.10008.5.1.4.1.1.2"],
        transfer_syntaxes=["1.2.840.10008.1.2.1"],
    )
    with (
        ScriptedPeer(faulty(drop_during={1})) as peer,
        StoreClient(peer.host, peer.port, retry=RetryPolicy(retries=2, backoff=0)) as client,
    ):
        results = [client.store(path) for path in files]
    assert [r.outcome for r in results] == [Outcome.STORED] * 3
    assert [r.association for r in results] == [1, 2, 2]
    assert [r.attempts for r in results] == [1, 2, 1]


def test_cancelled_client_sends_nothing_more(
    pynetdicom_scp: PynetdicomSCPFactory, study: list[Path]
) -> None:
    scp = pynetdicom_scp()
    with StoreClient(scp.host, scp.port) as client:
        assert client.store(study[0]).outcome is Outcome.STORED
        client.cancel()
        late = client.store(study[1])
    assert late.outcome is Outcome.SKIPPED
    assert late.reason.startswith("not sent: push cancelled")
    assert len(scp.received) == 1


def test_a_burst_to_a_peer_that_serves_one_association_at_a_time(
    storescp: StoreSCPFactory, tmp_path: Path
) -> None:
    """The second association waits unanswered in storescp's queue: it never holds a file, and
    closing the client does not wait out its ACSE timeout."""
    from fastpush.synthetic import write_study

    files = write_study(tmp_path, count=100, sop_classes=["1.2.840.10008.5.1.4.1.1.2"])
    scp = storescp()
    with StoreClient(
        scp.host, scp.port, called_ae=scp.aet, associations=2, acse_timeout=300
    ) as client:
        futures = [client.submit(path) for path in files]
        results = [future.result(timeout=60) for future in futures]
    assert all(r.outcome is Outcome.STORED for r in results), {r.reason for r in results}
    assert len(scp.stored_files()) == 100
