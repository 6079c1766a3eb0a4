"""StoreClient(idle_release=S): an association idle for S seconds is released, and the next
file opens another; DCMTK storescp's story counts the associations."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

import fastpush
from fastpush import EventKind, StoreClient
from fastpush.synthetic import write_study

from support.peers import StoreSCPFactory

pytestmark = pytest.mark.interop


@pytest.fixture
def study(tmp_path: Path) -> list[Path]:
    """Three CT files in one syntax: one presentation context, one association for all."""
    return write_study(
        tmp_path / "ct",
        count=3,
        pixel_bytes=1024,
        sop_classes=[CTImageStorage],
        transfer_syntaxes=[ExplicitVRLittleEndian],
    )


def test_idle_association_is_released_and_reopened(
    storescp: StoreSCPFactory, study: list[Path]
) -> None:
    scp = storescp("-v")
    released = threading.Event()

    def record(event: fastpush.Event) -> None:
        if event.kind is EventKind.RELEASED:
            released.set()

    with StoreClient(scp.host, scp.port, idle_release=0.2, on_event=record) as client:
        assert client.store(study[0]).ok
        assert client.store(study[1]).ok
        assert released.wait(60), "the idle association was never released"
        assert client.open_associations == 0
        assert client.store(study[2]).ok
        assert client.open_associations == 1
    log = scp.log()
    assert log.count("Association Acknowledged") == 2, log
    assert log.count("Association Release") == 2, log


def test_without_idle_release_one_association_carries_everything(
    storescp: StoreSCPFactory, study: list[Path]
) -> None:
    scp = storescp("-v")
    with StoreClient(scp.host, scp.port) as client:
        for path in study[:3]:
            assert client.store(path).ok
        assert client.open_associations == 1
    assert scp.log().count("Association Acknowledged") == 1, scp.log()


def test_idle_release_must_be_positive() -> None:
    with pytest.raises(ValueError, match="idle_release"):
        StoreClient("127.0.0.1", 104, idle_release=0)
