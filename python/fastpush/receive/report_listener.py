"""The SCU's side of Storage Commitment reports sent on new associations: :class:`ReportListener`,
a small server that takes the N-EVENT-REPORTs an SCP sends on associations it opens to us and
hands each to the push awaiting its transaction (``send.commit.ReportWaiter``), from the AE it
was asked of only. Wired to a push by the CLI or the caller: send and receive never meet.
"""

from __future__ import annotations

import logging
import threading

from ..logtext import peer_text
from ..wire import commitment, dimse
from ..wire.commitment import Report
from .commit import Commitment
from .negotiation import AcceptPolicy
from .server import StorageServer

log = logging.getLogger(__name__)


class ReportListener:
    """Listens on ``host:port`` as ``ae_title`` for the N-EVENT-REPORTs an SCP sends on
    associations of its own; a ``ReportWaiter`` for :class:`~fastpush.CommitOptions`. A report
    is taken only for a transaction awaited, from the AE it was asked of. A context manager
    (listens in a background thread)."""

    def __init__(self, host: str = "", port: int = 0, *, ae_title: str = "FASTPUSH") -> None:
        self._cond = threading.Condition()
        self._awaited: dict[str, str] = {}
        self._arrived: dict[str, Report] = {}
        self._server = StorageServer(
            host,
            port,
            ae_title=ae_title,
            accept=AcceptPolicy(sop_classes=(), commitment=True),
            commitment=Commitment(on_report=self._deliver),
        )
        self.host, self.port = self._server.host, self._server.port

    def __enter__(self) -> ReportListener:
        self._server.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()

    def expect(self, transaction_uid: str, ae_title: str) -> None:
        with self._cond:
            self._awaited[transaction_uid] = ae_title

    def wait(self, transaction_uid: str, timeout: float | None) -> Report | None:
        with self._cond:
            self._cond.wait_for(lambda: transaction_uid in self._arrived, timeout)
            self._awaited.pop(transaction_uid, None)
            return self._arrived.pop(transaction_uid, None)

    def forget(self, transaction_uid: str) -> None:
        with self._cond:
            self._awaited.pop(transaction_uid, None)
            self._arrived.pop(transaction_uid, None)

    def _deliver(self, report: Report, calling_ae: str) -> int:
        with self._cond:
            expected = self._awaited.get(report.transaction_uid)
            if expected is None or expected != calling_ae:
                log.warning(
                    "N-EVENT-REPORT from %s of transaction %s refused: %s",
                    peer_text(calling_ae),
                    peer_text(report.transaction_uid),
                    "not awaited" if expected is None else f"awaited from {expected}",
                )
                return commitment.PROCESSING_FAILURE
            self._arrived[report.transaction_uid] = report
            self._cond.notify_all()
        return dimse.SUCCESS
