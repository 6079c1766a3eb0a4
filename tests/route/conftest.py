"""Fixtures of the router tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from fastpush import Router


@pytest.fixture
def routers() -> Iterator[list[Router]]:
    """Routers a test started (append them), stopped at its end; a test that mounts a disk asks
    for this fixture first, so its routers stop before the disk is unmounted."""
    started: list[Router] = []
    yield started
    for router in started:
        router.stop(abort=True)
