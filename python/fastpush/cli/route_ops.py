"""Operating the router from the shell (issue 19).

- ``route PORT ... --http [HOST:]PORT [--http-token-file FILE] [--min-free GB]``: the options
  ``route`` gains (:func:`add_ops_arguments`), and the HTTP endpoint it starts (:class:`Endpoint`);
- ``python -m fastpush route status|hold|release|retry|remove --spool DIR [--destination NAME]``
  (:func:`control`): the same control as the endpoint, through the running router's HTTP port
  when it runs, on the spool (under its lock) when it does not.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import options as arguments
from .options import EXIT_FAILURE, EXIT_OK

if TYPE_CHECKING:
    from ..route.http import OpsServer
    from ..route.ops import RouterOps
    from ..route.router import Router

ACTIONS = ("status", "hold", "release", "retry", "remove")


def _address(text: str) -> tuple[str | None, int]:
    from ..route.http import parse_address

    try:
        return parse_address(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_ops_arguments(parser: argparse.ArgumentParser) -> None:
    """``--http``, ``--http-token-file``, ``--min-free`` for ``route``."""
    ops = parser.add_argument_group("operations")
    ops.add_argument(
        "--http",
        type=_address,
        metavar="[HOST:]PORT",
        help="serve /metrics, /healthz, /readyz, /api/status, queue control and a status page "
        "on this port (127.0.0.1 unless HOST is given; beyond the loopback it needs "
        "--http-token-file)",
    )
    ops.add_argument(
        "--http-token-file",
        type=Path,
        metavar="FILE",
        help="the bearer token every HTTP request but /healthz must carry",
    )
    ops.add_argument(
        "--min-free",
        type=arguments.amount("GB"),
        metavar="GB",
        help="below this much free disk under the spool, answer new stores 0xA700 before "
        "reading their data (receiving resumes by itself when space returns)",
    )


def min_free(args: argparse.Namespace) -> int | None:
    return None if args.min_free is None else int(args.min_free * 1e9)


def read_token(path: Path) -> str:
    token = path.read_text().strip()
    if not token or any(c.isspace() for c in token):
        raise ValueError(f"{path} holds no token (one line without spaces)")
    return token


class Endpoint:
    """The HTTP endpoint ``route --http`` asks for (nothing without it). Built before the
    router, so a refused configuration ends the run (exit 2) before anything binds."""

    def __init__(self, args: argparse.Namespace) -> None:
        from ..route.http import is_loopback

        self.address: tuple[str | None, int] | None = args.http
        self.token = None if args.http_token_file is None else read_token(args.http_token_file)
        self.ops: RouterOps | None = None
        self.server: OpsServer | None = None
        if self.address is not None:
            host = self.address[0]
            if host is not None and not is_loopback(host) and self.token is None:
                raise ValueError(
                    f"--http on {host} needs --http-token-file: only 127.0.0.1 is served "
                    "without a token"
                )

    def start(self, router: Router) -> None:
        """Watch ``router`` and serve (before ``router`` starts)."""
        if self.address is None:
            return
        from ..route.http import OpsServer
        from ..route.ops import RouterOps

        host, port = self.address
        self.ops = RouterOps(router)
        self.server = OpsServer(self.ops, port, host=host, token=self.token).start()
        print(f"HTTP endpoint on {self.server.url} (status page, /metrics)", flush=True)

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()


def is_control(argv: Sequence[str]) -> bool:
    """Whether ``argv`` asks for ``route status|hold|...`` rather than for a router."""
    return len(argv) >= 2 and argv[0] == "route" and argv[1] in ACTIONS


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fastpush route",
        description="Control a router's queues: through its HTTP endpoint while it runs, on "
        "the spool (under its lock) while it is stopped. Every change is journaled.",
    )
    parser.add_argument(
        "action",
        choices=ACTIONS,
        help="status: destinations, queues, failed files; hold: send nothing more (files keep "
        "spooling); release: send again; retry: queue the failed files again; remove: one "
        "queued or failed entry",
    )
    parser.add_argument("--spool", type=Path, default=Path("spool"), metavar="DIR")
    parser.add_argument(
        "--destination", metavar="NAME", help="the destination (default: every one)"
    )
    parser.add_argument("--entry", metavar="NAME", help="remove: the entry's file name")
    parser.add_argument(
        "--http-token-file", type=Path, metavar="FILE", help="the running router's token"
    )
    parser.add_argument(
        "--offset", type=arguments.integer(0), default=0, help="status: failed entries from"
    )
    parser.add_argument(
        "--limit", type=arguments.integer(0, 1000), default=20, help="status: failed entries"
    )
    parser.add_argument("--json", action="store_true", help="print the answer as JSON")
    return parser


def _age(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.0f} s"


def _print_status(status: dict[str, Any]) -> None:
    router = status.get("router", {})
    if router.get("running", True):
        received = status["received"]
        print(
            f"Router running: receiving {'yes' if router['receiving'] else 'no'}, "
            f"{received['files']} received, {received['refused']} refused"
            + (f" (refusing: {router['refusing']})" if router.get("refusing") else "")
        )
    else:
        print(f"Router stopped; spool {status['spool']['directory']}")
    for d in status["destinations"]:
        oldest = _age(d.get("oldest_age_seconds"))
        line = f"  {d['name']}: {d['state']}, {d['queued']} queued (oldest {oldest})"
        if "forwarded" in d:
            line += f", {d['forwarded']} forwarded, {d['failed']} failed, {d['retries']} retries"
        if d.get("last_error"):
            line += f"; last error: {d['last_error']}"
        print(line)
    failed = status["failed"]
    print(f"Failed files: {failed['total']}")
    for f in failed["entries"]:
        status_code = "" if f["status"] is None else f" 0x{f['status']:04X}"
        print(f"  {f['destination']}/{f['entry']}:{status_code} {f['reason']}")


def control(argv: Sequence[str]) -> int:
    """``route status|hold|release|retry|remove ...``; the exit code (2 when it failed)."""
    import json  # here: every command's start reads is_control from this module

    from ..route.control import ControlError, open_control
    from ..route.spool import SpoolBusy

    args = _parser().parse_args(argv)
    try:
        token = None if args.http_token_file is None else read_token(args.http_token_file)
        ctl = open_control(args.spool, token=token)
    except (ControlError, OSError, ValueError, SpoolBusy) as exc:
        print(f"fastpush route {args.action}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    try:
        if args.action == "status":
            answers: list[dict[str, Any]] = [ctl.status(args.destination, args.offset, args.limit)]
            if args.json:
                print(json.dumps(answers[0], indent=1))
            else:
                _print_status(answers[0])
            return EXIT_OK
        if args.action == "remove":
            if args.destination is None or args.entry is None:
                print("fastpush route remove: give --destination and --entry", file=sys.stderr)
                return EXIT_FAILURE
            answers = [ctl.remove(args.destination, args.entry)]
        else:
            names = (
                [args.destination]
                if args.destination is not None
                else [d["name"] for d in ctl.status(None, 0, 0)["destinations"]]
            )
            answers = [getattr(ctl, args.action)(name) for name in names]
    except (ControlError, OSError) as exc:
        print(f"fastpush route {args.action}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    finally:
        close = getattr(ctl, "close", None)
        if close is not None:
            close()
    if args.json:  # one document: the answer, or the list of them (one per destination)
        print(json.dumps(answers[0] if len(answers) == 1 else answers))
    else:
        for answer in answers:
            print(_say(args.action, answer))
    return EXIT_OK


def _say(action: str, answer: dict[str, Any]) -> str:
    name = answer["destination"]
    if action in ("hold", "release"):
        state = "held" if answer["held"] else "released"
        return f"{name}: {state}" + ("" if answer["changed"] else " (already)")
    if action == "retry":
        return f"{name}: {answer['requeued']} failed files queued again"
    return f"{name}: {answer['entry']} removed from {answer['removed_from']}"
