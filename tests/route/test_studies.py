"""Study completion (issue 19): a study is complete once no file of it arrived for
``study_stable`` seconds; a ``study_complete`` journal line and ``on_study_complete`` then, and
a destination with ``study_complete`` gets the study only after it. DCMTK storescu sends with a
pause (the completion itself ends the pause), storescp and pynetdicom receive."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

from fastpush import Destination, Router
from fastpush.route.metrics import Metrics
from fastpush.route.ops import RouterOps
from fastpush.route.studies import Study
from fastpush.send.retry import RetryPolicy
from fastpush.synthetic import write_study

from support.ops import parse_metrics
from support.peers import PynetdicomSCP, PynetdicomSCPFactory, StoreSCPFactory
from support.routing import journal, send_all, uid_of

pytestmark = pytest.mark.interop

FAST_RETRY = RetryPolicy(retries=1, backoff=0.05, max_backoff=0.3)


@pytest.fixture
def files(tmp_path: Path) -> list[Path]:
    """Ten files of one CT study and series."""
    return write_study(
        tmp_path / "src",
        count=10,
        pixel_bytes=2048,
        sop_classes=[CTImageStorage],
        transfer_syntaxes=[ExplicitVRLittleEndian],
    )


class Completions:
    """``on_study_complete``: each study, with what the whole-study destination held then."""

    def __init__(self, whole: PynetdicomSCP) -> None:
        self.whole = whole
        self.seen: list[tuple[Study, int]] = []
        self._cond = threading.Condition()

    def __call__(self, study: Study) -> None:
        with self._cond:
            self.seen.append((study, len(self.whole.received)))
            self._cond.notify_all()

    def wait(self, count: int) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: len(self.seen) >= count, timeout=60)


def _router(spool: Path, destinations: list[Destination], **options: Any) -> Router:
    return Router(0, destinations, spool=spool, host="127.0.0.1", retry=FAST_RETRY, **options)


def _studies(text: bytes) -> tuple[float, float]:
    """The completed and open studies the metrics show."""
    samples = parse_metrics(text)
    return samples[("fastpush_studies_completed_total", ())], samples[("fastpush_studies_open", ())]


def test_paused_sender_completes_the_study_once_per_pause(
    storescp: StoreSCPFactory,
    pynetdicom_scp: PynetdicomSCPFactory,
    routers: list[Router],
    files: list[Path],
    tmp_path: Path,
) -> None:
    every, whole = storescp(), pynetdicom_scp()
    done = Completions(whole)
    spool = tmp_path / "spool"
    router = _router(
        spool,
        [
            Destination("127.0.0.1", every.port, "STORESCP", name="every"),
            Destination("127.0.0.1", whole.port, "ANY-SCP", name="whole", study_complete=True),
        ],
        study_stable=1.5,
        on_study_complete=done,
    )
    scrape = Metrics(RouterOps(router)).render
    routers.append(router.start())
    study_uid = str(pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)

    send_all(router.port, files[:6], tmp_path / "first.log")
    assert done.wait(1)  # the pause: longer than study_stable, ended by the completion
    assert router.wait_idle(60)
    assert sorted(whole.received_uids) == sorted(uid_of(p) for p in files[:6])
    assert _studies(scrape()) == (1, 0)

    send_all(router.port, files[6:], tmp_path / "second.log")
    assert done.wait(2)
    assert router.wait_idle(60)
    assert _studies(scrape()) == (2, 0)
    router.stop()

    (first, held_first), (second, held_second) = done.seen
    assert (held_first, held_second) == (0, 6)  # nothing before each completion
    assert (first.study_instance_uid, first.series, first.instances) == (study_uid, 1, 6)
    assert (second.study_instance_uid, second.series, second.instances) == (study_uid, 1, 4)
    assert first.calling_aes == ("STORESCU",)
    assert sorted(whole.received_uids) == sorted(uid_of(p) for p in files)
    assert len(every.stored_files()) == len(files)

    events = journal(spool)
    complete = [n for n, e in enumerate(events) if e["step"] == "study_complete"]
    assert [(events[n]["series"], events[n]["instances"]) for n in complete] == [(1, 6), (1, 4)]
    assert all(events[n]["sop_instance_uid"] == study_uid for n in complete)
    to_whole = [
        n for n, e in enumerate(events) if e["step"] == "forwarded" and e["destination"] == "whole"
    ]
    assert all(n > complete[0] for n in to_whole)
    assert sum(n > complete[1] for n in to_whole) == 4


def test_files_waiting_at_a_restart_complete_after_the_stable_time(
    pynetdicom_scp: PynetdicomSCPFactory,
    routers: list[Router],
    files: list[Path],
    tmp_path: Path,
) -> None:
    whole = pynetdicom_scp()
    spool = tmp_path / "spool"
    destination = Destination("127.0.0.1", whole.port, "ANY-SCP", name="whole", study_complete=True)
    first = _router(spool, [destination], study_stable=600)
    routers.append(first.start())
    send_all(first.port, files, tmp_path / "storescu.log")
    first.stop()  # the study is still open: its files wait in the spool
    assert whole.received == []
    assert len(list((spool / "queue" / "whole").iterdir())) == len(files)

    done = Completions(whole)
    second = _router(spool, [destination], study_stable=0.5, on_study_complete=done)
    routers.append(second.start())
    assert done.wait(1)
    assert second.wait_idle(60)
    second.stop()
    ((study, held),) = done.seen
    assert (held, study.instances) == (0, len(files))
    assert sorted(whole.received_uids) == sorted(uid_of(p) for p in files)


def test_study_complete_destinations_need_a_stable_time(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="study_stable"):
        Router(
            0,
            [Destination("127.0.0.1", 104, study_complete=True)],
            spool=tmp_path / "spool",
            host="127.0.0.1",
        )
