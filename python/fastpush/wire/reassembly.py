"""PDVs back into DIMSE messages: the one reassembler of the Python side (the requestor reading
responses, test peers reading requests).

A message is its command fragments, then, when the command says so, its dataset fragments, all
on one presentation context; messages never interleave (PS3.8 9.3.1). Anything else is a
``ProtocolError``. Dataset bytes are kept only when asked: a requestor drops the (undefined)
dataset of a response, a test peer only counts what it received.
"""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass

from ..errors import ProtocolError
from . import dimse, pdu


@dataclass
class Message:
    context_id: int
    command: dimse.Command
    dataset: bytes | None
    """The dataset's bytes when kept; None when there was none or it was not kept."""
    dataset_size: int = 0
    command_set: bytes = b""
    """The command set's bytes, as received."""


class Reassembler:
    """Feed it P-DATA-TF bodies; it returns each message once its last fragment arrived.

    ``contexts`` are the accepted presentation context IDs; ``keep_datasets`` keeps dataset
    bytes (else only their size is counted); ``max_command`` bounds a command set, which is a
    few hundred bytes when the peer behaves.
    """

    def __init__(
        self,
        contexts: Container[int],
        *,
        keep_datasets: bool = False,
        max_command: int = 1 << 20,
    ) -> None:
        self._contexts = contexts
        self._keep = keep_datasets
        self._max_command = max_command
        self._command = bytearray()
        self._dataset = bytearray()
        self._context: int | None = None
        self.pending: Message | None = None
        """A message whose command arrived and whose dataset is still arriving."""

    def feed(self, body: bytes) -> list[Message]:
        """The messages this P-DATA-TF body completes (usually none or one)."""
        done = []
        for pdv in pdu.decode_pdvs(body):
            if pdv.context_id not in self._contexts:
                raise ProtocolError(
                    f"P-DATA on presentation context {pdv.context_id}, not accepted"
                )
            if self._context is not None and pdv.context_id != self._context:
                raise ProtocolError(
                    f"P-DATA on presentation context {pdv.context_id} in the middle of a "
                    f"message on context {self._context}"
                )
            self._context = pdv.context_id
            message = self._command_fragment(pdv) if self.pending is None else self._data(pdv)
            if message is not None:
                self._context = None
                done.append(message)
        return done

    def _command_fragment(self, pdv: pdu.Pdv) -> Message | None:
        if not pdv.is_command:
            raise ProtocolError("dataset fragment received before its command")
        self._command += pdv.data
        if len(self._command) > self._max_command:
            raise ProtocolError(f"command set runs past {self._max_command} bytes")
        if not pdv.is_last:
            return None
        command_set = bytes(self._command)
        self._command.clear()
        message = Message(pdv.context_id, dimse.decode(command_set), None, command_set=command_set)
        if message.command.has_dataset:
            self.pending = message
            return None
        return message

    def _data(self, pdv: pdu.Pdv) -> Message | None:
        if pdv.is_command:
            raise ProtocolError("command fragment received in the middle of a dataset")
        message = self.pending
        assert message is not None
        message.dataset_size += len(pdv.data)
        if self._keep:
            self._dataset += pdv.data
        if not pdv.is_last:
            return None
        if self._keep:
            message.dataset = bytes(self._dataset)
            self._dataset.clear()
        self.pending = None
        return message
