"""fastpush: push DICOM to a PACS with C-STORE, fast.

``push()`` sends files and folders and returns one result per file (``Push`` is the same as a
cancellable iterator, with parallel associations and retries); ``StoreClient`` is the long-lived,
thread-safe sender for routers; ``StorageServer`` receives (a storage SCP); ``Router``
receives, spools and forwards to each ``Destination`` without losing a file; ``Association``
keeps one association open and stores files, bytes or pydicom Datasets one after another;
``echo()`` checks that a peer answers. ``ConnectionOptions`` is what a connection needs (AE
titles, timeouts, engine, TLS, identity, PDU sizes), its fields also taken as keyword arguments;
``RetryPolicy`` bounds the attempts. The bytes move through the Rust core (``fastpush._core``)
when it is built, else through the pure-Python data path.
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any

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
from .send.association import Association
from .send.client import StoreClient
from .send.failure import Failure
from .send.options import ConnectionOptions
from .send.plan import Proposal
from .send.push import Push, echo, iter_push, push
from .send.results import Event, EventKind, Outcome, Result
from .send.retry import RetryPolicy
from .transport.tls import TLSOptions
from .wire.identity import IdentityType, UserIdentity

__version__: str
try:
    from ._core import __version__
except ImportError:  # pragma: no cover - installs without the extension
    from importlib.metadata import version

    __version__ = version("fastpush")

if TYPE_CHECKING:
    from .cli.report import stored_paths
    from .dataset.edits import Deidentify, EditPlan
    from .receive.negotiation import AcceptPolicy
    from .receive.received import Received
    from .receive.server import StorageServer
    from .receive.storage import Layout
    from .route.forwarder import Destination, DestinationStats
    from .route.journal import RouteEvent, Step
    from .route.router import Router, RouterStats
    from .route.spool import SpoolBusy

# The receive side and the router load on first use, so that a push does not start up with them;
# so does the report reader, which lives with the CLI that writes the report.
_LAZY = {
    "AcceptPolicy": ".receive.negotiation",
    "Deidentify": ".dataset.edits",
    "EditPlan": ".dataset.edits",
    "Destination": ".route.forwarder",
    "DestinationStats": ".route.forwarder",
    "Layout": ".receive.storage",
    "Received": ".receive.received",
    "RouteEvent": ".route.journal",
    "Router": ".route.router",
    "RouterStats": ".route.router",
    "SpoolBusy": ".route.spool",
    "Step": ".route.journal",
    "StorageServer": ".receive.server",
    "stored_paths": ".cli.report",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = [
    "AcceptPolicy",
    "Association",
    "AssociationAborted",
    "AssociationRejected",
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
