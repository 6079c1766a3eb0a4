"""fastpush: push DICOM to a PACS with C-STORE, fast.

``push()`` sends files and folders and returns one result per file (``Push`` is the same as a
cancellable iterator, with parallel associations and retries); ``StoreClient`` is the long-lived,
thread-safe sender for routers; ``StorageServer`` receives (a storage SCP); ``Router``
receives, spools and forwards to each ``Destination`` without losing a file; ``Association``
keeps one association open and stores files, bytes or pydicom Datasets one after another;
``echo()`` checks that a peer answers. ``ConnectionOptions`` is what a connection needs (AE
titles, timeouts, engine, TLS, identity, PDU sizes), its fields also taken as keyword arguments;
``RetryPolicy`` bounds the attempts. ``CommitOptions`` asks for Storage Commitment of what was
pushed (a ``ReportListener`` takes reports sent on new associations); ``Commitment`` is how a
``StorageServer`` answers it. The bytes move through the Rust core (``fastpush._core``)
when it is built, else through the pure-Python data path.
"""

from __future__ import annotations

import importlib

# typing.TYPE_CHECKING without importing typing, which `import fastpush` would not otherwise
# load; mypy and pyright read the name alike.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from .cli.report import stored_paths
    from .dataset.edits import Deidentify, EditPlan
    from .dataset.item import Item
    from .errors import (
        AssociationAborted,
        AssociationRejected,
        ConversionError,
        FastpushError,
        IdentityRejected,
        NoAcceptedContext,
        ProtocolError,
        SourceError,
        TLSError,
    )
    from .receive.commit import Commitment
    from .receive.negotiation import AcceptPolicy
    from .receive.received import Received
    from .receive.report_listener import ReportListener
    from .receive.server import StorageServer
    from .receive.storage import Layout
    from .route.forwarder import Destination, DestinationStats
    from .route.journal import RouteEvent, Step
    from .route.router import Router, RouterStats
    from .route.spool import SpoolBusy
    from .send.association import Association
    from .send.client import StoreClient
    from .send.commit import CommitOptions
    from .send.failure import Failure
    from .send.options import ConnectionOptions
    from .send.plan import Proposal
    from .send.push import Push, echo, iter_push, push
    from .send.results import Event, EventKind, Outcome, Result
    from .send.retry import RetryPolicy
    from .transport.tls import TLSOptions
    from .wire.identity import IdentityType, UserIdentity

    __version__: str
    """The package's version: the Rust core's, from ``Cargo.toml``."""

# Every public name loads on first use, so that `import fastpush` and the CLI start without the
# modules they do not run (issue 17): a push does not load the receive side or the router, and
# `--help` loads neither the data path nor pydicom.
_LAZY = {
    "AcceptPolicy": ".receive.negotiation",
    "Deidentify": ".dataset.edits",
    "EditPlan": ".dataset.edits",
    "Association": ".send.association",
    "AssociationAborted": ".errors",
    "AssociationRejected": ".errors",
    "CommitOptions": ".send.commit",
    "Commitment": ".receive.commit",
    "ConnectionOptions": ".send.options",
    "ConversionError": ".errors",
    "Destination": ".route.forwarder",
    "DestinationStats": ".route.forwarder",
    "Event": ".send.results",
    "EventKind": ".send.results",
    "Failure": ".send.failure",
    "FastpushError": ".errors",
    "IdentityRejected": ".errors",
    "IdentityType": ".wire.identity",
    "Item": ".dataset.item",
    "Layout": ".receive.storage",
    "NoAcceptedContext": ".errors",
    "Outcome": ".send.results",
    "Proposal": ".send.plan",
    "ProtocolError": ".errors",
    "Push": ".send.push",
    "Received": ".receive.received",
    "ReportListener": ".receive.report_listener",
    "Result": ".send.results",
    "RetryPolicy": ".send.retry",
    "RouteEvent": ".route.journal",
    "Router": ".route.router",
    "RouterStats": ".route.router",
    "SourceError": ".errors",
    "SpoolBusy": ".route.spool",
    "Step": ".route.journal",
    "StorageServer": ".receive.server",
    "StoreClient": ".send.client",
    "TLSError": ".errors",
    "TLSOptions": ".transport.tls",
    "UserIdentity": ".wire.identity",
    "echo": ".send.push",
    "iter_push": ".send.push",
    "push": ".send.push",
    "stored_paths": ".cli.report",
}


def _version() -> str:
    try:
        from ._core import __version__ as version
    except ImportError:  # pragma: no cover - installs without the extension
        from importlib.metadata import version as installed

        return installed("fastpush")
    return version


def _quiet_logging() -> None:
    """The library's records go nowhere until the application configures logging (not to
    stderr through logging's last resort). Done on first use rather than at import: importing
    logging costs more than the rest of ``import fastpush``."""
    import logging

    logger = logging.getLogger(__name__)
    if not any(isinstance(handler, logging.NullHandler) for handler in logger.handlers):
        logger.addHandler(logging.NullHandler())


def __getattr__(name: str) -> Any:
    if name == "__version__":
        value: Any = _version()
    else:
        module = _LAZY.get(name)
        if module is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        _quiet_logging()
        value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__all__ = [
    "AcceptPolicy",
    "Association",
    "AssociationAborted",
    "AssociationRejected",
    "CommitOptions",
    "Commitment",
    "ConnectionOptions",
    "ConversionError",
    "Deidentify",
    "Destination",
    "DestinationStats",
    "EditPlan",
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
    "ReportListener",
    "Result",
    "RetryPolicy",
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
]
