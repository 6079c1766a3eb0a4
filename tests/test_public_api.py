"""The public API stays importable: every name ``fastpush.__all__`` lists is there, none of the
names it listed before the layout change is gone, and a name is added only on purpose."""

from __future__ import annotations

import importlib
import subprocess
import sys

import fastpush

# ``fastpush.__all__`` before the layout change (issue 16): removing any of these breaks users.
PUBLIC = {
    "AcceptPolicy",
    "Association",
    "AssociationAborted",
    "AssociationRejected",
    "ConversionError",
    "Destination",
    "DestinationStats",
    "Event",
    "EventKind",
    "Failure",
    "FastpushError",
    "IdentityRejected",
    "IdentityType",
    "Item",
    "Layout",
    "NoAcceptedContext",
    "Outcome",
    "Proposal",
    "ProtocolError",
    "Push",
    "Received",
    "Result",
    "RouteEvent",
    "Router",
    "RouterStats",
    "SourceError",
    "SpoolBusy",
    "Step",
    "StorageServer",
    "StoreClient",
    "TLSError",
    "TLSOptions",
    "UserIdentity",
    "__version__",
    "echo",
    "iter_push",
    "push",
    "stored_paths",
}
# Names the layout change (issue 16) and Storage Commitment (issue 20) may add to the public
# API (and no others).
MAY_ADD = (
    {"RetryPolicy", "ConnectionOptions"}
    | {"CommitOptions", "ReportListener", "Commitment"}
    | {
        "EditPlan",
        "Deidentify",
    }
)


def test_all_lists_the_public_names() -> None:
    names = set(fastpush.__all__)
    assert len(names) == len(fastpush.__all__), "a name is listed twice"
    assert PUBLIC - names == set(), "removed from fastpush.__all__"
    assert names - PUBLIC <= MAY_ADD, "added to fastpush.__all__ without being expected"


def test_every_listed_name_imports() -> None:
    for name in fastpush.__all__:
        assert getattr(fastpush, name) is not None, name
    namespace: dict[str, object] = {}
    exec("from fastpush import *", namespace)
    assert set(fastpush.__all__) <= namespace.keys()


def test_every_listed_name_imports_in_a_fresh_interpreter() -> None:
    """The lazy names (receive side, router) load on first use, without anything imported
    before them: each one in a process of its own."""
    lazy = subprocess.run(
        [
            sys.executable,
            "-c",
            "import fastpush; print(*set(fastpush.__all__) - set(vars(fastpush)))",
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout.split()
    for name in sorted(lazy):
        code = f"from fastpush import {name}; assert {name} is not None"
        subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_the_public_classes_say_where_they_live() -> None:
    """Each public class or function is defined inside the fastpush package."""
    for name in fastpush.__all__:
        value = getattr(fastpush, name)
        module = getattr(value, "__module__", None)
        if module is not None:
            assert module.split(".")[0] == "fastpush", (name, module)
            importlib.import_module(module)
