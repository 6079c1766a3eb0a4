"""fastpush: push DICOM to a PACS with C-STORE, fast.

``push()`` sends files and folders and returns one result per file; ``Association`` keeps one
association open and stores files, bytes or pydicom Datasets one after another; ``echo()`` checks
that a peer answers. The bytes move through the Rust core (``fastpush._core``) when it is built,
else through the pure-Python data path.
"""

from __future__ import annotations

import logging

from .api import echo, iter_push, push
from .association import Association
from .errors import (
    AssociationAborted,
    AssociationRejected,
    FastpushError,
    NoAcceptedContext,
    ProtocolError,
    TLSError,
)
from .identity import IdentityType, UserIdentity
from .results import Event, EventKind, Outcome, Result
from .tls import TLSOptions

__version__: str
try:
    from ._core import __version__
except ImportError:  # pragma: no cover - installs without the extension
    from importlib.metadata import version

    __version__ = version("fastpush")

logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = [
    "Association",
    "AssociationAborted",
    "AssociationRejected",
    "Event",
    "EventKind",
    "FastpushError",
    "IdentityType",
    "NoAcceptedContext",
    "Outcome",
    "ProtocolError",
    "Result",
    "TLSError",
    "TLSOptions",
    "UserIdentity",
    "__version__",
    "echo",
    "iter_push",
    "push",
]
