"""``python -m fastpush route PORT --to HOST PORT [-aec AE] ...``: a store-and-forward router.

Every file received is spooled durably, then forwarded to every ``--to``. A live line shows
what was received, what waits in the spool, and per destination what was forwarded, failed and
how fast; the first Ctrl-C stops receiving and forwarding after the files in flight (what waits
stays in the spool for the next run), the second cuts them.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import options as arguments
from .route_config import add_config_arguments, check, settle
from .route_ops import Endpoint, add_ops_arguments, min_free

if TYPE_CHECKING:
    from ..route.router import Router, RouterStats

_MB = 1e6


class _To(argparse.Action):
    """``--to HOST PORT``: one more destination."""

    def __call__(self, parser: Any, namespace: Any, values: Any, option: Any = None) -> None:
        host, port = values
        try:
            number = arguments.port(port)
        except argparse.ArgumentTypeError as exc:
            raise argparse.ArgumentError(self, str(exc)) from None
        namespace.to = [*(namespace.to or []), [host, number, "ANY-SCP", False]]


class _Aec(argparse.Action):
    """``-aec AE``: the AE title of the ``--to`` before it."""

    def __call__(self, parser: Any, namespace: Any, values: Any, option: Any = None) -> None:
        if not namespace.to:
            raise argparse.ArgumentError(self, "give -aec after the --to HOST PORT it names")
        try:
            namespace.to[-1][2] = arguments.ae_title(values)
        except argparse.ArgumentTypeError as exc:
            raise argparse.ArgumentError(self, str(exc)) from None


class _WholeStudies(argparse.Action):
    """``--whole-studies``: the ``--to`` before it gets only complete studies."""

    def __init__(self, option_strings: Any, dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, **kwargs)

    def __call__(self, parser: Any, namespace: Any, values: Any, option: Any = None) -> None:
        if not namespace.to:
            raise argparse.ArgumentError(self, "give --whole-studies after the --to it names")
        namespace.to[-1][3] = True


def add_options(route: argparse.ArgumentParser) -> None:
    """Add the options of ``route`` to its parser."""
    route.add_argument(
        "port",
        nargs="?",
        type=arguments.port,
        help="TCP port to listen on (1-65535; optional with --config)",
    )
    route.add_argument("--host", default="", help="address to listen on (default: all)")
    route.add_argument(
        "--to",
        nargs=2,
        action=_To,
        metavar=("HOST", "PORT"),
        help="forward to this storage SCP (repeatable; replaces the config's destinations and "
        "rules)",
    )
    route.add_argument(
        "-aec", "--called-ae", action=_Aec, metavar="AE", help="AE title of the --to before it"
    )
    route.add_argument(
        "--whole-studies",
        action=_WholeStudies,
        help="the --to before it gets a study's files only once the study is complete "
        "(needs --study-stable)",
    )
    route.add_argument(
        "-aet", "--aetitle", default="FASTPUSH", type=arguments.ae_title, help="our AE title"
    )
    route.add_argument(
        "--spool", type=Path, default=Path("spool"), metavar="DIR", help="(default ./spool)"
    )
    route.add_argument(
        "--associations",
        type=arguments.positive,
        default=2,
        metavar="N",
        help="parallel associations per destination (default 2)",
    )
    route.add_argument(
        "--retries",
        type=arguments.integer(0),
        default=3,
        metavar="R",
        help="attempts of a file per try before it waits and tries again (default 3)",
    )
    route.add_argument(
        "--max-backoff",
        type=arguments.seconds,
        default=60.0,
        metavar="S",
        help="longest wait between tries of a destination that fails (default 60)",
    )
    route.add_argument(
        "--durability",
        choices=("fsync", "os"),
        default="fsync",
        help="fsync (default): success is answered once the file is on disk and queued; os: "
        "once it is queued in the page cache (no fsync: a machine crash or power cut can lose "
        "files already acknowledged)",
    )
    route.add_argument(
        "--max-spool",
        type=arguments.amount("GB"),
        metavar="GB",
        help="above this much waiting, answer new stores 0xA700 Out of Resources",
    )
    route.add_argument(
        "-pm", "--promiscuous", action="store_true", help="accept unknown SOP classes too"
    )
    route.add_argument(
        "--max-associations",
        type=arguments.positive,
        default=64,
        metavar="N",
        help="reject incoming associations above N running at once (default 64)",
    )
    arguments.add_connection_limits(route)
    route.add_argument(
        "--timeout",
        type=arguments.seconds,
        default=60.0,
        metavar="S",
        help="abort an incoming association whose peer takes longer for a PDU, or is idle this "
        "long (default 60)",
    )
    arguments.add_dataset_check(route)
    secure = arguments.add_server_tls(route)
    secure.add_argument("--to-tls", action="store_true", help="forward with TLS")
    secure.add_argument(
        "--to-tls-ca", metavar="FILE", help="PEM CAs to trust when forwarding (implies --to-tls)"
    )
    add_ops_arguments(route)  # issue 19: --http, --http-token-file, --min-free
    _add_lifecycle_arguments(route)  # issue 19: --idle-release, --journal-max, --study-stable
    _add_commitment_arguments(route)  # issue 20: --commit-timeout, --commit-port
    arguments.add_talk(route, quiet="no live line, summary only", verbose="tell each file's story")
    arguments.add_log_json(route)
    add_config_arguments(route)  # issue 18: --config, --check-config


def _add_lifecycle_arguments(route: argparse.ArgumentParser) -> None:
    group = route.add_argument_group("lifecycle")
    group.add_argument(
        "--idle-release",
        type=arguments.seconds,
        metavar="S",
        help="release an association to a destination after S seconds without files (default 30)",
    )
    group.add_argument(
        "--journal-max",
        type=arguments.amount("MB"),
        metavar="MB",
        help="rotate spool/journal.jsonl past this size, keeping journal.jsonl.1 to .5 "
        "(default 100)",
    )
    group.add_argument(
        "--cut-through",
        type=_cut_through,
        metavar="MB",
        help="forward a file larger than this while it still arrives, to the destinations it "
        "goes to whose lane is free (default 8; 0: never; not to destinations with edits)",
    )
    group.add_argument(
        "--study-stable",
        type=arguments.seconds,
        metavar="S",
        help="a study is complete after S seconds without a new file of it: a study_complete "
        "line in the journal (a --to with --whole-studies, or study_complete in --config, "
        "waits for it)",
    )


def _cut_through(text: str) -> float:
    return 0.0 if text.strip() in ("0", "0.0") else arguments.amount("MB")(text)


def _add_commitment_arguments(route: argparse.ArgumentParser) -> None:
    group = route.add_argument_group(
        "storage commitment (destinations with commit = true in --config)"
    )
    group.add_argument(
        "--commit-timeout",
        type=arguments.seconds,
        metavar="S",
        help="a file not reported committed within S seconds is sent again (default 60)",
    )
    group.add_argument(
        "--commit-port",
        type=int,
        metavar="PORT",
        help="listen on PORT for reports a destination sends on an association of its own "
        "(default: only on the association that asked)",
    )


class _Status:
    """The live line: totals, and per destination the MB/s since the line before."""

    def __init__(self, router: Router) -> None:
        self.router = router
        self.last: dict[str, tuple[float, int]] = {}

    def __call__(self, seconds: float) -> str:
        stats = self.router.stats()
        parts = [_received(stats)]
        for name, dest in stats.destinations.items():
            before, size = self.last.get(name, (0.0, 0))
            rate = (dest.bytes - size) / _MB / (seconds - before) if seconds > before else 0.0
            self.last[name] = (seconds, dest.bytes)
            line = f"{name}: {dest.forwarded} forwarded, {dest.failed} failed, {rate:.1f} MB/s"
            if dest.retrying:
                line += f" (retrying: {dest.retrying})"
            parts.append(line)
        return " | ".join(parts)


def _received(stats: RouterStats) -> str:
    refused = f", {stats.refused} refused (spool full)" if stats.refused else ""
    return (
        f"received {stats.received} ({stats.received_bytes / _MB:.1f} MB){refused}, "
        f"spooled {stats.spooled_files} ({stats.spooled_bytes / _MB:.1f} MB)"
    )


def run(args: argparse.Namespace) -> int:
    # The router, the policies and the live line load only when it runs, not for the
    # top-level --help that builds this parser too.
    from ..receive.negotiation import AcceptPolicy
    from ..route.router import Router
    from ..send.retry import RetryPolicy
    from .live import LiveLine, raise_descriptor_limit, until_interrupted

    if args.check_config is not None:
        return check(args)
    settled = settle(args)  # issue 18: the config file, before anything binds
    destinations = settled.destinations
    if args.retries < 0:
        raise ValueError("--retries must be 0 or more")
    raise_descriptor_limit()
    endpoint = Endpoint(args)  # issue 19: checked before anything binds
    router = Router(
        args.port,
        destinations,
        spool=args.spool,
        host=args.host,
        ae_title=args.aetitle,
        associations=args.associations,
        retry=RetryPolicy(retries=args.retries, max_backoff=args.max_backoff),
        max_spool=None if args.max_spool is None else int(args.max_spool * 1e9),
        min_free=min_free(args),
        accept=AcceptPolicy(promiscuous=args.promiscuous),
        tls=arguments.server_tls(args),
        max_associations=args.max_associations,
        dataset_check=args.dataset_check,
        max_connections=args.max_connections,
        acse_timeout=args.acse_timeout,
        timeout=args.timeout,
        rules=settled.rules,
        calling_ae=settled.calling_ae,
        durability=args.durability,
        idle_release=args.idle_release,
        journal_max=int(args.journal_max * _MB),
        study_stable=args.study_stable,
        commit_timeout=args.commit_timeout,
        commit_port=args.commit_port,
        cut_through=int(args.cut_through * _MB) or None,
    )
    arguments.warn_lenient(args)
    names = ", ".join(d.key for d in destinations)
    print(f"Routing port {router.port} ({args.aetitle}) to {names}; spool {args.spool}", flush=True)
    endpoint.start(router)
    live = LiveLine(_Status(router), args.quiet or args.log_json)
    try:
        code = until_interrupted(
            router.serve_forever,
            lambda abort: router.stop(abort=abort),
            live,
            "the files in flight finish, the others stay spooled",
        )
    finally:
        endpoint.stop()
    stats = router.stats()
    print(f"Routed in {time.perf_counter() - live.started:.1f} s: {_received(stats)}")
    for name, dest in stats.destinations.items():
        plan = router.destinations[name].plan
        edits = "" if plan is None else f" (edits: {plan.describe()})"
        print(
            f"  {name}: {dest.forwarded} forwarded, {dest.failed} failed, "
            f"{dest.waiting} waiting{edits}"
        )
    if stats.rules:
        print("  by rule: " + ", ".join(f"{rule} {files}" for rule, files in stats.rules.items()))
    return code
