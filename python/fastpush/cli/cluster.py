"""The ``store`` options for pushing from a Dask cluster, and the hook that picks a local or a
cluster push: the CLI's progress, report, ``--resume`` and exit codes stay the same for both.
Dask is imported only when a cluster option is given."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator
from typing import Any, Protocol

from ..send.push import PathLike, Push
from ..send.results import Result
from . import options as arguments


class Pushing(Protocol):
    """What the CLI needs of a push, local or on a cluster."""

    total_files: int
    total_bytes: int
    resumed: int

    def __next__(self) -> Result: ...

    def __iter__(self) -> Iterator[Result]: ...

    def cancel(self, abort: bool = False) -> None: ...


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "pushing from a Dask cluster (pip install 'fastpush[dask]')",
        "The files must be reachable by the same paths from every worker; --associations is "
        "then per worker.",
    )
    where = group.add_mutually_exclusive_group()
    where.add_argument(
        "--dask",
        metavar="SCHEDULER_ADDRESS",
        help="push from the workers of this Dask scheduler (e.g. tcp://10.0.0.5:8786)",
    )
    where.add_argument(
        "--dask-local",
        type=arguments.positive,
        metavar="N",
        help="push from N local Dask worker processes",
    )
    group.add_argument(
        "--max-associations",
        type=arguments.positive,
        metavar="N",
        help="with --dask or --dask-local: at most N associations at once across the cluster",
    )


def problem(args: argparse.Namespace) -> str | None:
    """What is wrong with the cluster options, checked before anything is opened or sent."""
    if args.max_associations is not None and args.dask is None and args.dask_local is None:
        return "--max-associations needs --dask or --dask-local"
    return None


@contextlib.contextmanager
def pusher(
    args: argparse.Namespace, paths: list[PathLike], host: str, port: int, **options: Any
) -> Iterator[Pushing]:
    """A local ``Push``, or a ``DistributedPush`` when a cluster option was given (closed on
    leaving)."""
    if args.dask is None and args.dask_local is None:
        yield Push(paths, host, port, **options)
        return
    try:
        from ..cluster.driver import DistributedPush
    except ImportError as exc:  # pragma: no cover - the extra is part of the test install
        raise ValueError(f"{exc}: pip install 'fastpush[dask]'") from exc
    options["associations_per_worker"] = options.pop("associations")
    with DistributedPush(
        paths,
        host,
        port,
        client=args.dask,
        workers=args.dask_local or 1,
        max_associations=args.max_associations,
        **options,
    ) as push:
        yield push
