"""The journal's lines are ``RouteEvent.to_json`` as compact JSON, written field by field
without the dict (two lines a file): byte for byte what the generic encoder makes of any event,
whatever its text holds."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastpush.route.journal import Journal, RouteEvent, Step

_TEXT = st.text(max_size=40)  # any code point: non-ASCII, controls, quotes, NUL
_EVENTS = st.builds(
    RouteEvent,
    step=st.sampled_from(Step),
    sop_instance_uid=_TEXT,
    destination=st.none() | _TEXT,
    path=st.none() | _TEXT,
    sop_class_uid=st.none() | _TEXT,
    calling_ae=st.none() | _TEXT,
    status=st.none() | st.integers(0, 0xFFFF),
    reason=_TEXT,
    bytes=st.integers(0, 1 << 50),
    maybe_duplicate=st.booleans(),
    time=st.floats(allow_nan=True, allow_infinity=True),
    by=_TEXT,
    rule=_TEXT,
    series=st.integers(0, 10_000),
    instances=st.integers(0, 10_000),
    edits=_TEXT,
)
_GENERIC = json.JSONEncoder(separators=(",", ":")).encode


@settings(max_examples=300, deadline=None)
@given(events=st.lists(_EVENTS, min_size=1, max_size=4))
def test_each_line_is_the_generic_encoding_of_the_event(
    tmp_path_factory: pytest.TempPathFactory, events: list[RouteEvent]
) -> None:
    folder = tmp_path_factory.mktemp("journal")
    journal = Journal(folder / "journal.jsonl")
    for event in events:
        journal.write(event)
    journal.close()
    expected = "".join(_GENERIC(event.to_json()) + "\n" for event in events).encode()
    assert (folder / "journal.jsonl").read_bytes() == expected
