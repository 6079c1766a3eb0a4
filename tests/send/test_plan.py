"""Planning a push: the presentation contexts proposed for a set of items (one fallback
context per SOP class when conversion is allowed), the order syntaxes are tried in, splitting
at 128 contexts, and the syntax aliases."""

from __future__ import annotations

import pytest

from fastpush.dataset.item import Item
from fastpush.send.plan import DEFAULT_PROPOSAL, Proposal, contexts, plan, syntax_uid
from fastpush.uids import EXPLICIT_VR_BE, EXPLICIT_VR_LE, IMPLICIT_VR_LE

CT = "1.2.840.10008.5.1.4.1.1.2"
JPEG = "1.2.840.10008.1.2.4.50"


def _item(syntax: str, sop: str = CT) -> Item:
    return Item("f.dcm", sop, "1.2.3", syntax, 0, 10)


def contexts_for(
    items: list[Item], proposal: Proposal = DEFAULT_PROPOSAL
) -> list[tuple[str, tuple[str, ...]]]:
    return contexts([(i.sop_class_uid, i.transfer_syntax) for i in items], proposal)


def test_default_proposal_adds_one_fallback_context_per_sop_class() -> None:
    items = [_item(EXPLICIT_VR_LE), _item(IMPLICIT_VR_LE), _item(JPEG)]
    assert contexts_for(items) == [
        (CT, (EXPLICIT_VR_LE,)),
        (CT, (EXPLICIT_VR_LE, IMPLICIT_VR_LE)),
        (CT, (IMPLICIT_VR_LE,)),
        (CT, (JPEG,)),
    ]
    assert contexts_for(items, Proposal(conversion=False)) == [
        (CT, (EXPLICIT_VR_LE,)),
        (CT, (IMPLICIT_VR_LE,)),
        (CT, (JPEG,)),
    ]
    required = Proposal(required_only=True, prefer=(EXPLICIT_VR_BE,))
    assert contexts_for(items[:1], required) == [
        (CT, (EXPLICIT_VR_LE,)),
        (CT, (EXPLICIT_VR_BE, IMPLICIT_VR_LE)),
    ]


def test_send_order() -> None:
    assert Proposal().send_order(EXPLICIT_VR_LE)[:2] == (EXPLICIT_VR_LE, IMPLICIT_VR_LE)
    assert Proposal(prefer=(IMPLICIT_VR_LE,)).send_order(EXPLICIT_VR_LE)[0] == IMPLICIT_VR_LE
    # A compressed file keeps its own syntax first: decoding is not free, nor always lossless.
    assert Proposal(prefer=(IMPLICIT_VR_LE,)).send_order(JPEG)[0] == JPEG
    assert Proposal(conversion=False).send_order(JPEG) == (JPEG,)


def test_plan_splits_at_128_contexts() -> None:
    items = [_item(EXPLICIT_VR_LE, f"1.2.3.{n}") for n in range(100)]
    groups = plan(items)
    assert [len(contexts(g.pairs)) for g in groups] == [128, 72]
    assert sum(len(g.items) for g in groups) == 100


def test_syntax_aliases() -> None:
    assert syntax_uid("Implicit") == IMPLICIT_VR_LE
    assert syntax_uid(EXPLICIT_VR_BE) == EXPLICIT_VR_BE
    with pytest.raises(ValueError, match="not an uncompressed"):
        syntax_uid(JPEG)
