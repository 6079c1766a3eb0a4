"""The ``store`` options for pushing from a Dask cluster (``--dask``, ``--dask-local``,
``--max-associations``): adding them, checking them, and what they ask of ``DistributedPush``.
``store`` builds the push; Dask is imported only when a cluster option is given."""

from __future__ import annotations

import argparse

from . import options as arguments

# typing.TYPE_CHECKING without importing typing, which building the parser does not need.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


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


def settings(args: argparse.Namespace) -> dict[str, Any] | None:
    """``DistributedPush``'s cluster keyword arguments, or None for a local push."""
    if args.dask is None and args.dask_local is None:
        return None
    return {
        "client": args.dask,
        "workers": args.dask_local or 1,
        "max_associations": args.max_associations,
    }
