"""Retries without loss, against a scripted faulty peer: every file ends stored, with the right
number of attempts, and nothing is reported stored that the peer did not answer for."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import fastpush
from fastpush import Outcome, Result

from support.scripted import ScriptedPeer, faulty

ENGINES = ["rust", "python"]


def _push(peer: ScriptedPeer, files: list[Path], engine: str) -> list[Result]:
    return fastpush.push(files, peer.host, peer.port, engine=engine, backoff=0.01)


@pytest.fixture
def scripted() -> Iterator[Callable[..., ScriptedPeer]]:
    """Factory: ``scripted(**faults)`` starts a :func:`faulty` peer, stopped at teardown."""
    started: list[ScriptedPeer] = []

    def start(**faults: Any) -> ScriptedPeer:
        started.append(ScriptedPeer(faulty(**faults)))
        return started[-1]

    yield start
    for peer in started:
        peer.stop()


def _check_nothing_claimed(results: list[Result], peer: ScriptedPeer) -> None:
    stored = {r.sop_instance_uid for r in results if r.ok}
    answered = {r.sop_instance_uid for r in peer.received}
    assert stored == answered


@pytest.fixture(scope="module")
def big_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Files too large for the socket buffers, so a peer failing mid-dataset fails the send."""
    from fastpush.synthetic import write_study

    return write_study(tmp_path_factory.mktemp("big"), count=5, pixel_bytes=8 << 20)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("fault", ["abort_during", "drop_during"])
def test_failure_mid_dataset_retries_only_that_file(
    scripted: Callable[..., ScriptedPeer], big_files: list[Path], engine: str, fault: str
) -> None:
    peer = scripted(**{fault: {2}})
    results = _push(peer, big_files, engine)
    assert [r.outcome for r in results] == [Outcome.STORED] * 5
    assert [r.attempts for r in results] == [1, 1, 2, 1, 1]
    # The send itself failed: the peer cannot have stored the file, so no duplicate warning.
    assert not any(r.maybe_duplicate for r in results)
    # The association was lost with the third file: it and the rest went over a new one.
    assert [r.association for r in results] == [1, 1, 2, 2, 2]
    assert peer.requests.count(results[2].sop_instance_uid) == 2
    _check_nothing_claimed(results, peer)


@pytest.mark.parametrize("engine", ENGINES)
def test_transient_rejections_then_accept(
    scripted: Callable[..., ScriptedPeer], study: list[Path], engine: str
) -> None:
    peer = scripted(reject_transient=2)
    results = _push(peer, study[:3], engine)
    assert [r.outcome for r in results] == [Outcome.STORED] * 3
    # The association was retried, not the files: each went once, over the third attempt.
    assert [r.attempts for r in results] == [1, 1, 1]
    assert {r.association for r in results} == {3}
    _check_nothing_claimed(results, peer)


@pytest.mark.parametrize("engine", ENGINES)
def test_too_many_transient_rejections_fail_with_the_reason(
    scripted: Callable[..., ScriptedPeer], study: list[Path], engine: str
) -> None:
    peer = scripted(reject_transient=100)
    results = fastpush.push(study[:3], peer.host, peer.port, engine=engine, retries=1, backoff=0)
    assert all(r.outcome is Outcome.FAILED for r in results)
    assert all(r.reason.startswith("not sent: association failed") for r in results)
    assert all("temporary congestion" in r.reason for r in results)
    assert [r.attempts for r in results] == [0, 0, 0]
    assert not peer.received


@pytest.mark.parametrize("engine", ENGINES)
def test_lost_response_is_retried_and_marked_maybe_duplicate(
    scripted: Callable[..., ScriptedPeer], study: list[Path], engine: str
) -> None:
    peer = scripted(drop_before_response={1})
    results = _push(peer, study[:3], engine)
    assert [r.outcome for r in results] == [Outcome.STORED] * 3
    assert [r.maybe_duplicate for r in results] == [False, True, False]
    assert results[1].attempts == 2
    assert peer.unanswered == [results[1].sop_instance_uid]
    _check_nothing_claimed(results, peer)


def test_no_retries_means_one_attempt(
    scripted: Callable[..., ScriptedPeer], study: list[Path]
) -> None:
    peer = scripted(drop_during={0})
    results = fastpush.push(study[:2], peer.host, peer.port, retries=0)
    assert [r.outcome for r in results] == [Outcome.FAILED, Outcome.STORED]
    assert "connection lost" in results[0].reason
    assert results[0].attempts == 1
