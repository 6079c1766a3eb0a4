"""A storage SCP with scripted faults, for fault injection only (interop is proven against
DCMTK, Orthanc and pynetdicom). It is fastpush's embedded SCP with faults at its seams."""

from __future__ import annotations

import threading
from collections.abc import Collection

from fastpush import dimse, pdu
from fastpush.pytransport import PyTransport
from fastpush.scp import StorageSCP


class FaultySCP(StorageSCP):
    """Faults by C-STORE request number (0-based, counting every attempt the SCP sees):

    - ``reject_transient``: reject the first N associations (rejected-transient, congestion);
    - ``abort_during``: send A-ABORT in the middle of those requests' datasets;
    - ``drop_during``: close the TCP connection in the middle of those datasets;
    - ``drop_before_response``: take the whole dataset, then close without answering.
    """

    def __init__(
        self,
        *,
        reject_transient: int = 0,
        abort_during: Collection[int] = (),
        drop_during: Collection[int] = (),
        drop_before_response: Collection[int] = (),
    ) -> None:
        super().__init__(ae_title="FAULTY")
        self.rejects_left = reject_transient
        self.abort_during = set(abort_during)
        self.drop_during = set(drop_during)
        self.drop_before_response = set(drop_before_response)
        self.requests: list[str] = []  # SOP Instance UID of every C-STORE begun
        self.unanswered: list[str] = []  # fully received, then the connection was dropped
        self._fault_lock = threading.Lock()

    def _associate_and_serve(self, transport: PyTransport) -> None:
        with self._fault_lock:
            reject = self.rejects_left > 0
            self.rejects_left -= reject
        if reject:
            transport.recv_pdu(1 << 20)
            transport.send_pdu(pdu.encode_associate_rj(pdu.AssociateRJ(2, 3, 1)))
            return
        super()._associate_and_serve(transport)

    def _dataset_fragment(
        self, transport: PyTransport, command: dimse.Command, received: int, last: bool
    ) -> None:
        with self._fault_lock:
            if received == 0:
                self.requests.append(command.sop_instance_uid)
            index = len(self.requests) - 1
        if index in self.abort_during and received > 0:
            transport.send_pdu(pdu.encode_abort(2, 0))
            raise ConnectionAbortedError("scripted A-ABORT")
        if index in self.drop_during and received > 0:
            raise ConnectionResetError("scripted drop")
        if index in self.drop_before_response and last:
            self.unanswered.append(command.sop_instance_uid)
            raise ConnectionResetError("scripted drop before the response")
