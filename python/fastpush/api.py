"""The one-call API: push paths to a storage SCP and get one result per input.

Scanning is ``scan``'s, grouping ``plan``'s, the protocol ``association``'s; this module runs
the plan, opens a fresh association when one is lost, and makes sure every input gets a result.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterable, Iterator
from typing import Any

from .association import Association, EventHandler
from .errors import AssociationAborted, AssociationRejected, ProtocolError
from .plan import DEFAULT_PROPOSAL, Proposal, plan
from .results import Outcome, Result
from .scan import FileItem, Skip, expand, read_file
from .uids import EXPLICIT_VR_LE, IMPLICIT_VR_LE, VERIFICATION

PathLike = str | os.PathLike[str]


def iter_push(
    paths: Iterable[PathLike],
    host: str,
    port: int,
    *,
    recursive: bool = True,
    on_event: EventHandler | None = None,
    proposal: Proposal = DEFAULT_PROPOSAL,
    **options: Any,
) -> Iterator[Result]:
    """Push every file under ``paths``; yield each file's result as soon as it is known.

    ``proposal`` says which transfer syntaxes to propose and send (``Proposal``: by default
    the file's own, then Explicit and Implicit VR LE, converting or decompressing as the peer
    accepted). ``options`` are ``Association``'s keyword arguments (``calling_ae``,
    ``called_ae``, ``engine``, ``max_pdu``, ``max_send_pdu``, the timeouts).
    """
    items: list[FileItem] = []
    for name in expand(paths, recursive):
        described = read_file(name)
        if isinstance(described, Skip):
            yield Result(described.path, Outcome.SKIPPED, reason=described.reason)
        else:
            items.append(described)
    number = 0
    for group in plan(items, proposal):
        queue = deque(group.items)
        while queue:
            number += 1
            association = Association(
                host,
                port,
                group.contexts,
                on_event=on_event,
                number=number,
                proposal=proposal,
                **options,
            )
            try:
                association.open()
            except (OSError, AssociationRejected, AssociationAborted, ProtocolError) as exc:
                reason = f"association failed: {exc}"
                while queue:
                    yield _unsent(queue.popleft(), reason)
                break
            try:
                while queue and association.is_open:
                    yield association.store(queue.popleft())
            finally:
                association.release()


def _unsent(item: FileItem, reason: str) -> Result:
    return Result(
        item.path,
        Outcome.FAILED,
        item.sop_class_uid,
        item.sop_instance_uid,
        item.transfer_syntax,
        reason=reason,
        bytes=item.length,
    )


def push(paths: Iterable[PathLike], host: str, port: int, **options: Any) -> list[Result]:
    """Push files and folders to ``host:port``; return one result per input file."""
    return list(iter_push(paths, host, port, **options))


def echo(host: str, port: int, **options: Any) -> int:
    """C-ECHO ``host:port`` on a fresh association; return the status (0 is success)."""
    with Association(
        host, port, [(VERIFICATION, (EXPLICIT_VR_LE, IMPLICIT_VR_LE))], **options
    ) as a:
        return a.echo()
