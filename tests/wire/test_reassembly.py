"""The PDV reassembler: any fragmentation gives back the message; misordered PDVs are refused."""

from __future__ import annotations

import itertools
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fastpush.errors import ProtocolError
from fastpush.wire import dimse
from fastpush.wire.reassembly import Reassembler

CT = "1.2.840.10008.5.1.4.1.1.2"


def _pdv(context_id: int, data: bytes, *, command: bool, last: bool) -> bytes:
    header = (0x01 if command else 0x00) | (0x02 if last else 0x00)
    return struct.pack(">IBB", len(data) + 2, context_id, header) + data


def _fragments(data: bytes, cuts: list[int], context_id: int, *, command: bool) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} - {0, len(data)})
    bounds = [0, *points, len(data)]
    return [
        _pdv(context_id, data[a:b], command=command, last=b == len(data))
        for a, b in itertools.pairwise(bounds)
    ]


@given(
    dataset=st.binary(min_size=1, max_size=300),
    command_cuts=st.lists(st.integers(0, 400), max_size=5),
    dataset_cuts=st.lists(st.integers(0, 400), max_size=5),
    per_pdu=st.integers(1, 4),
    keep=st.booleans(),
)
def test_any_fragmentation_gives_back_the_message(
    dataset: bytes, command_cuts: list[int], dataset_cuts: list[int], per_pdu: int, keep: bool
) -> None:
    command = dimse.store_rq(7, CT, "1.2.3")
    pdvs = _fragments(command, command_cuts, 3, command=True)
    pdvs += _fragments(dataset, dataset_cuts, 3, command=False)
    messages = Reassembler({3}, keep_datasets=keep)
    done = []
    for start in range(0, len(pdvs), per_pdu):
        done += messages.feed(b"".join(pdvs[start : start + per_pdu]))
    assert len(done) == 1
    message = done[0]
    assert (message.context_id, message.command.message_id) == (3, 7)
    assert message.dataset_size == len(dataset)
    assert message.dataset == (dataset if keep else None)
    assert messages.pending is None


def test_a_command_without_dataset_completes_alone() -> None:
    messages = Reassembler({1})
    done = messages.feed(_pdv(1, dimse.echo_rq(2), command=True, last=True))
    assert [m.command.message_id for m in done] == [2]
    assert done[0].dataset is None


@pytest.mark.parametrize(
    ("pdvs", "error"),
    [
        ([_pdv(5, b"x", command=True, last=True)], "context 5, not accepted"),
        ([_pdv(1, b"xx", command=False, last=True)], "before its command"),
        (
            [
                _pdv(1, dimse.store_rq(1, CT, "1.2"), command=True, last=True),
                _pdv(1, b"ab", command=False, last=False),
                _pdv(1, b"cd", command=True, last=True),
            ],
            "middle of a dataset",
        ),
        (
            [
                _pdv(1, dimse.store_rq(1, CT, "1.2"), command=True, last=True),
                _pdv(1, b"ab", command=False, last=False),
                _pdv(3, b"cd", command=False, last=True),
            ],
            "in the middle of a message on context 1",
        ),
    ],
)
def test_misordered_fragments_are_refused(pdvs: list[bytes], error: str) -> None:
    with pytest.raises(ProtocolError, match=error):
        Reassembler({1, 3}).feed(b"".join(pdvs))


def test_command_sets_are_bounded() -> None:
    messages = Reassembler({1}, max_command=100)
    with pytest.raises(ProtocolError, match="past 100 bytes"):
        for _ in range(3):
            messages.feed(_pdv(1, bytes(60), command=True, last=False))
