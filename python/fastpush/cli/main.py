"""``python -m fastpush``: store, echo, demo and serve, in the vocabulary of DCMTK's storescu.

Exit codes: 0 every file stored (warnings included); 1 some file failed or was skipped; 2 usage,
connection or association failure; 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import IO, Any

from .. import __version__
from ..errors import FastpushError
from ..send.association import DEFAULT_MAX_PDU
from ..send.plan import Proposal, syntax_uid
from ..send.push import Push, ReportError, echo, stored_paths
from ..transport.connect import ENGINES
from ..transport.tls import TLSOptions
from ..wire.identity import TOKEN_TYPES, UserIdentity, read_secret
from . import cluster as distributed_cli
from . import options as arguments
from . import route as route_cli
from . import serve as serve_cli
from .progress import Reporter, Tally, summary

EXIT_OK, EXIT_INCOMPLETE, EXIT_FAILURE, EXIT_INTERRUPTED = 0, 1, 2, 130


def _syntaxes(text: str) -> list[str]:
    try:
        return [syntax_uid(name) for name in text.split(",") if name.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _common(
    parser: argparse.ArgumentParser, peer: str | None = "SCP", *, quiet: bool = False
) -> None:
    if peer:
        parser.add_argument("host", help=f"the {peer}'s host name or address")
        parser.add_argument("port", type=arguments.port, help="its TCP port (1-65535)")
        parser.add_argument(
            "-aet", "--calling-ae", default="FASTPUSH", type=arguments.ae_title, help="our AE title"
        )
        parser.add_argument(
            "-aec",
            "--called-ae",
            default="ANY-SCP",
            type=arguments.ae_title,
            help="the peer's AE title",
        )
        parser.add_argument(
            "--connect-timeout",
            type=arguments.seconds,
            default=10.0,
            metavar="S",
            help="seconds to wait for the TCP connection (default 10)",
        )
        parser.add_argument(
            "--acse-timeout",
            type=arguments.seconds,
            default=30.0,
            metavar="S",
            help="seconds to wait for the peer to accept, reject or release (default 30)",
        )
        parser.add_argument(
            "--dimse-timeout",
            type=arguments.seconds,
            default=60.0,
            metavar="S",
            help="seconds to wait for each response, or to send (default 60)",
        )
        _tls_arguments(parser)
        _identity_arguments(parser)
    parser.add_argument("--engine", choices=ENGINES, help="data path (default: rust when built)")
    talk = parser.add_mutually_exclusive_group()
    if quiet:
        talk.add_argument("-q", "--quiet", action="store_true", help="only the summary")
    talk.add_argument("-v", "--verbose", action="store_true", help="tell the association story")
    talk.add_argument("-d", "--debug", action="store_true", help="also log each PDU-level step")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fastpush", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"fastpush {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    store = commands.add_parser("store", help="C-STORE files and folders to a storage SCP")
    _common(store, "storage SCP", quiet=True)
    store.add_argument("paths", nargs="+", metavar="PATH", help="files or folders to send")
    store.add_argument("-r", "--recursive", action="store_true", help="descend into subfolders")
    _sending_options(store)
    distributed_cli.add_arguments(store)

    echo_cmd = commands.add_parser("echo", help="C-ECHO a DICOM peer")
    _common(echo_cmd)

    demo = commands.add_parser("demo", help="push a synthetic CT study to an embedded SCP")
    _common(demo, peer=None, quiet=True)
    demo.add_argument("--count", type=int, default=24, help="number of images (default 24)")

    serve_cli.add_parser(commands)
    route_cli.add_parser(commands)
    return parser


def _tls_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("DICOM TLS (any --tls-* option implies --tls)")
    group.add_argument("--tls", action="store_true", help="connect with TLS (1.2 or 1.3)")
    group.add_argument(
        "--tls-ca", metavar="FILE", help="PEM CA certificates to trust (default: system store)"
    )
    group.add_argument("--tls-cert", metavar="FILE", help="PEM client certificate (chain)")
    group.add_argument("--tls-key", metavar="FILE", help="PEM private key of --tls-cert")
    group.add_argument(
        "--tls-no-verify",
        action="store_true",
        help="INSECURE: accept any server certificate and host name",
    )


def _tls_options(args: argparse.Namespace) -> TLSOptions | None:
    wanted = args.tls or args.tls_ca or args.tls_cert or args.tls_key or args.tls_no_verify
    if not wanted:
        return None
    return TLSOptions(args.tls_ca, args.tls_cert, args.tls_key, args.tls_no_verify)


def _identity_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("user identity negotiation")
    group.add_argument("--username", metavar="NAME", help="negotiate this user name")
    secret = group.add_mutually_exclusive_group()
    secret.add_argument(
        "--password", metavar="TEXT", help="its passcode (visible to `ps`: prefer --password-file)"
    )
    secret.add_argument("--password-file", metavar="FILE", help="read the passcode from FILE")
    group.add_argument(
        "--identity-token-file", metavar="FILE", help="negotiate the token in FILE instead"
    )
    group.add_argument(
        "--identity-type",
        choices=sorted(TOKEN_TYPES),
        default="jwt",
        help="what --identity-token-file holds (default: jwt)",
    )
    group.add_argument(
        "--identity-response",
        action="store_true",
        help="ask the peer to confirm the identity (positive response requested)",
    )


def _identity(args: argparse.Namespace) -> UserIdentity | None:
    positive = args.identity_response
    if args.identity_token_file is not None:
        if args.username is not None:
            raise ValueError("give either --username or --identity-token-file, not both")
        kind = TOKEN_TYPES[args.identity_type]
        token = read_secret(args.identity_token_file, binary=args.identity_type == "kerberos")
        return UserIdentity.token(kind, token, positive_response=positive)
    password: str | None = args.password
    if args.password_file is not None:
        password = read_secret(args.password_file).decode()
    if args.username is None:
        if password is not None or positive:
            raise ValueError("--password, --password-file and --identity-response need --username")
        return None
    return UserIdentity.user(args.username, password, positive_response=positive)


def _sending_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--max-pdu",
        type=arguments.integer(4096, 0xFFFFFFFF, zero=True),
        default=DEFAULT_MAX_PDU,
        metavar="N",
        help=f"our Maximum Length Received, 4096-4294967295 (default {DEFAULT_MAX_PDU}; 0 = none)",
    )
    parser.add_argument(
        "--max-send-pdu",
        type=arguments.pdu_length,
        metavar="N",
        help="send PDUs no larger than this (4096-4294967295) even if the peer allows more",
    )
    reports = parser.add_mutually_exclusive_group()
    reports.add_argument(
        "--report", type=Path, metavar="FILE.jsonl", help="write one JSON line per input path"
    )
    reports.add_argument(
        "--resume",
        type=Path,
        metavar="FILE.jsonl",
        help="skip what this report shows stored, and append to it (a FILE that does not "
        "exist yet starts a fresh report)",
    )
    parser.add_argument(
        "--associations",
        type=arguments.positive,
        default=1,
        metavar="N",
        help="parallel associations",
    )
    parser.add_argument(
        "--max-per-association",
        type=arguments.positive,
        metavar="K",
        help="reassociate every K files",
    )
    parser.add_argument(
        "--retries",
        type=arguments.integer(0),
        default=3,
        metavar="R",
        help="retries of a transient failure, of a file or of an association (default 3)",
    )
    parser.add_argument(
        "--give-up-after",
        type=arguments.seconds,
        metavar="S",
        help="stop retrying associations after S seconds; the files not sent then fail",
    )
    syntaxes = parser.add_argument_group(
        "transfer syntaxes",
        "By default each file is proposed in its own syntax and, as a fallback, in Explicit "
        "and Implicit VR Little Endian; a file the peer accepted only in another syntax is "
        "converted (uncompressed) or decompressed (compressed) for sending.",
    )
    syntaxes.add_argument(
        "--no-conversion",
        action="store_true",
        help="propose only each file's own transfer syntax; never convert",
    )
    syntaxes.add_argument(
        "--prefer",
        type=_syntaxes,
        action="extend",
        default=[],
        metavar="SYNTAX[,SYNTAX]",
        help="propose these first and send uncompressed files in them when accepted: "
        "implicit, explicit, big, deflated or a UID",
    )
    syntaxes.add_argument(
        "--required-only",
        action="store_true",
        help="fall back to Implicit VR Little Endian only (the syntax every SCP accepts)",
    )
    syntaxes.add_argument(
        "--strict",
        action="store_true",
        help="fail a non-conformant dataset (an odd-length value) instead of sending it "
        "repaired with a warning",
    )


def _configure_logging(args: argparse.Namespace) -> None:
    level = logging.DEBUG if args.debug else logging.INFO if args.verbose else logging.WARNING
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_DcmtkStyle())
    logger = logging.getLogger("fastpush")
    logger.addHandler(handler)
    logger.setLevel(level)


class _DcmtkStyle(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"{record.levelname[0]}: {record.getMessage()}"


def _push(push: distributed_cli.Pushing, report: IO[str] | None, quiet: bool) -> tuple[Tally, bool]:
    """Run a push to its end with the reporter; the first Ctrl-C finishes the files in flight
    and releases, the second aborts at once. Returns the tally and whether it was interrupted."""
    tally = Tally(push.total_files, push.total_bytes, push.resumed)
    with Reporter(tally, report, quiet=quiet) as reporter:
        interrupts = 0

        def on_sigint(signum: int, frame: FrameType | None) -> None:
            nonlocal interrupts
            interrupts += 1
            abort = interrupts > 1
            reporter.say(
                "Aborting the associations now."
                if abort
                else "Interrupted: finishing the files in flight, then releasing "
                "(Ctrl-C again to abort)."
            )
            # Releasing waits for the peer: not in a signal handler.
            threading.Thread(target=push.cancel, kwargs={"abort": abort}, daemon=True).start()

        previous = signal.signal(signal.SIGINT, on_sigint)
        try:
            for result in push:
                reporter.add(result)
        finally:
            signal.signal(signal.SIGINT, previous)
    return tally, interrupts > 0


def _exit_code(tally: Tally, interrupted: bool) -> int:
    if interrupted:
        return EXIT_INTERRUPTED
    if tally.association_failed:
        return EXIT_FAILURE
    return EXIT_INCOMPLETE if tally.not_ok else EXIT_OK


def _peer_options(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "calling_ae": args.calling_ae,
        "called_ae": args.called_ae,
        "engine": args.engine,
        "connect_timeout": args.connect_timeout,
        "acse_timeout": args.acse_timeout,
        "dimse_timeout": args.dimse_timeout,
        "tls": _tls_options(args),
        "identity": _identity(args),
    }


def _store(args: argparse.Namespace) -> int:
    problem = distributed_cli.problem(args)
    if problem is not None:
        print(f"fastpush: {problem}", file=sys.stderr)
        return EXIT_FAILURE
    skip: set[str] = set()
    if args.resume is not None:
        found = _resumed(args.resume)
        if found is None:
            return EXIT_FAILURE
        skip = found
    report_path: Path | None = args.report or args.resume
    try:
        report = (
            None
            if report_path is None
            else report_path.open("a" if args.resume else "w", encoding="utf-8")
        )
    except OSError as exc:
        print(
            f"fastpush: cannot write the report {report_path}: {exc.strerror or exc}",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    with (
        report if report is not None else contextlib.nullcontext(),
        distributed_cli.pusher(
            args,
            args.paths,
            args.host,
            args.port,
            recursive=args.recursive,
            associations=args.associations,
            retries=args.retries,
            give_up_after=args.give_up_after,
            max_per_association=args.max_per_association,
            skip=skip,
            proposal=Proposal(
                not args.no_conversion, tuple(args.prefer), args.required_only, args.strict
            ),
            max_pdu=args.max_pdu,
            max_send_pdu=args.max_send_pdu,
            **_peer_options(args),
        ) as push,
    ):
        if push.total_files == 0 and push.resumed == 0:
            hint = "" if args.recursive else " (folders are not descended without -r)"
            print(f"fastpush: no DICOM files found{hint}", file=sys.stderr)
            return EXIT_INCOMPLETE
        tally, interrupted = _push(push, report, args.quiet)
    summary(tally, sys.stdout)
    return _exit_code(tally, interrupted)


def _resumed(path: Path) -> set[str] | None:
    """What ``--resume`` skips; None (after saying why) when the report cannot be trusted.
    A partial last line (a killed run) is dropped so that appending starts on a new line."""
    if not path.exists():
        print(f"fastpush: {path} does not exist yet: starting a fresh report", file=sys.stderr)
        return set()
    try:
        stored, partial = stored_paths(path)
        if partial is not None:
            print(
                f"fastpush: {path}: dropping a partial last line (from a run that was killed); "
                "its file is sent again",
                file=sys.stderr,
            )
            with path.open("r+b") as f:
                f.truncate(partial)
    except ReportError as exc:
        print(f"fastpush: cannot resume: {exc}; nothing was sent or appended", file=sys.stderr)
        return None
    except OSError as exc:
        print(f"fastpush: cannot read the report {path}: {exc.strerror or exc}", file=sys.stderr)
        return None
    return stored


def _echo(args: argparse.Namespace) -> int:
    try:
        status = echo(args.host, args.port, **_peer_options(args))
    except (OSError, FastpushError) as exc:
        print(f"echo failed: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    print(f"Echo response from {args.host}:{args.port}: status 0x{status:04X}")
    return EXIT_OK if status == 0 else EXIT_FAILURE


def _demo(args: argparse.Namespace) -> int:
    import tempfile

    from ..receive.server import StorageServer
    from ..synthetic import write_study

    with tempfile.TemporaryDirectory(prefix="fastpush-demo-") as folder:
        ct = "1.2.840.10008.5.1.4.1.1.2"
        paths = write_study(Path(folder), count=args.count, sop_classes=[ct])
        with StorageServer("127.0.0.1", 0, ae_title="FASTPUSH-SCP") as scp:
            print(
                f"Demo: pushing a {len(paths)}-image synthetic CT study to an embedded SCP "
                f"at {scp.host}:{scp.port}"
            )
            push = Push([folder], scp.host, scp.port, called_ae=scp.ae_title, engine=args.engine)
            tally, interrupted = _push(push, None, args.quiet)
            summary(tally, sys.stdout)
        print(f"The SCP received {scp.stats.files} datasets.")
    return _exit_code(tally, interrupted)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _configure_logging(args)
    try:
        handler = {
            "store": _store,
            "echo": _echo,
            "demo": _demo,
            "serve": serve_cli.run,
            "route": route_cli.run,
        }[args.command]
        return handler(args)
    except (ValueError, OSError) as exc:  # an option the parser could not check (engine, files)
        print(f"fastpush: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:  # before a push began (scanning) or during echo
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
