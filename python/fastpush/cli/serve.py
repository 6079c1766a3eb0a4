"""``python -m fastpush serve PORT``: a storage SCP in the vocabulary of DCMTK's storescp.

Files go to ``-od DIR`` (default: the current folder) as ``storescp +B`` writes them, or
nowhere with ``--ignore``. A live line shows files, MB and MB/s received; the first Ctrl-C stops
accepting and lets running associations finish, the second cuts them.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..receive.storage import Layout
from ..wire.limits import ACCEPTOR_MAX_PDU
from . import options as arguments

if TYPE_CHECKING:
    from ..receive.server import Stats

_MB = 1e6

# storescp's transfer syntax options -> negotiation.SYNTAX_PREFERENCES keys.
_SYNTAX_OPTIONS = (
    ("+xf", "--prefer-first", "first", "accept the syntax the sender proposed first (default)"),
    ("+x=", "--prefer-uncompr", "uncompressed", "accept uncompressed only, explicit VR first"),
    ("+xe", "--prefer-little", "little", "accept uncompressed only, explicit VR LE first"),
    ("+xb", "--prefer-big", "big", "accept uncompressed only, explicit VR BE first"),
    ("+xi", "--implicit", "implicit", "accept implicit VR little endian only"),
    ("+xd", "--prefer-deflated", "deflated", "prefer deflated explicit VR LE, else uncompressed"),
    ("+xa", "--accept-all", "all", "prefer uncompressed, accept any other syntax"),
)


def add_options(serve: argparse.ArgumentParser) -> None:
    """Add the options of ``serve`` to its parser (made with ``prefix_chars="-+"`` for
    storescp's ``+x`` options)."""
    serve.add_argument("port", type=arguments.port, help="TCP port to listen on (1-65535)")
    serve.add_argument("--host", default="", help="address to listen on (default: all)")
    serve.add_argument(
        "-aet", "--aetitle", default="FASTPUSH", type=arguments.ae_title, help="our AE title"
    )
    where = serve.add_mutually_exclusive_group()
    where.add_argument(
        "-od",
        "--output-directory",
        type=Path,
        default=Path("."),
        metavar="DIR",
        help="write received files here (default: the current folder)",
    )
    where.add_argument("--ignore", action="store_true", help="receive, answer, store nothing")
    serve.add_argument(
        "-uf",
        "--unique-filenames",
        action="store_true",
        help="never overwrite: a file with a name already taken gets .1, .2...",
    )
    serve.add_argument(
        "--layout",
        choices=[layout.value for layout in Layout],
        default=Layout.FLAT.value,
        help="files flat in DIR, in a folder per study, or per calling AE (default flat)",
    )
    serve.add_argument(
        "--fsync", action="store_true", help="answer success only once each file is on disk"
    )
    syntax = serve.add_argument_group("transfer syntaxes (storescp's options)")
    choice = syntax.add_mutually_exclusive_group()
    for short, long, key, text in _SYNTAX_OPTIONS:
        choice.add_argument(short, long, dest="syntax", action="store_const", const=key, help=text)
    serve.set_defaults(syntax="first")
    accept = serve.add_argument_group("association acceptance")
    accept.add_argument(
        "-pm", "--promiscuous", action="store_true", help="accept unknown SOP classes too"
    )
    accept.add_argument(
        "-pdu",
        "--max-pdu",
        type=arguments.max_pdu,
        default=ACCEPTOR_MAX_PDU,
        metavar="N",
        help=f"our maximum PDU length (default {ACCEPTOR_MAX_PDU}; 0: no limit)",
    )
    accept.add_argument(
        "--check-called-ae", action="store_true", help="reject requests not addressed to -aet"
    )
    accept.add_argument(
        "--accept-calling",
        action="append",
        type=arguments.ae_title,
        metavar="AE",
        help="accept only this calling AE title (repeatable)",
    )
    accept.add_argument(
        "--max-associations",
        type=arguments.positive,
        default=64,
        metavar="N",
        help="reject associations above N running at once (default 64)",
    )
    accept.add_argument(
        "--timeout",
        type=arguments.seconds,
        default=60.0,
        metavar="S",
        help="abort an association whose peer takes longer for a PDU, or is idle this long "
        "(default 60)",
    )
    arguments.add_connection_limits(accept)
    arguments.add_dataset_check(accept)
    arguments.add_server_tls(serve)
    serve.add_argument(
        "--commit-peer",
        action="append",
        type=_commit_peer,
        default=[],
        metavar="AE=HOST:PORT",
        help="where to send a Storage Commitment report when the requester AE's association "
        "ended before it (repeatable)",
    )
    arguments.add_talk(serve, quiet="no live line, summary only", debug="also log each context")
    arguments.add_log_json(serve)


def _commit_peer(text: str) -> tuple[str, str, int]:
    ae, _, address = text.partition("=")
    host, _, port = address.rpartition(":")
    if not ae or not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not AE=HOST:PORT")
    return arguments.ae_title(ae), host, arguments.port(port)


def _commitment(args: argparse.Namespace) -> Any:
    """The Storage Commitment SCP: reports the requester's association did not take go to its
    --commit-peer address, on an association of our own (the requestor side, composed here)."""
    from ..receive.commit import Commitment
    from ..wire.commitment import Report

    peers = {ae: (host, port) for ae, host, port in args.commit_peer}

    def send(calling_ae: str, report: Report) -> None:
        from ..send.commit import send_report

        if calling_ae not in peers:
            raise LookupError(f"no --commit-peer for {calling_ae}")
        host, port = peers[calling_ae]
        send_report(host, port, report, calling_ae=args.aetitle, called_ae=calling_ae)

    return Commitment(send_report=send)


def _line(stats: Stats, seconds: float) -> str:
    mb = stats.bytes / _MB
    rate = mb / seconds if seconds > 0 else 0.0
    failed = f", {stats.failed} failed" if stats.failed else ""
    refused = f", {stats.rejected} associations refused" if stats.rejected else ""
    return (
        f"{stats.files} files, {mb:.1f} MB, {rate:.1f} MB/s, "
        f"{stats.active} associations{failed}{refused}"
    )


def run(args: argparse.Namespace) -> int:
    # The receive side and the live line load only when it serves, not for the top-level
    # --help that builds this parser too.
    from ..receive.negotiation import AcceptPolicy
    from ..receive.server import StorageServer
    from .live import LiveLine, raise_descriptor_limit, until_interrupted

    raise_descriptor_limit()
    policy = AcceptPolicy(
        check_called_ae=args.check_called_ae,
        calling_aes=args.accept_calling,
        promiscuous=args.promiscuous,
        syntax=args.syntax,
        max_pdu=args.max_pdu,
    )
    server = StorageServer(
        args.host,
        args.port,
        ae_title=args.aetitle,
        directory=None if args.ignore else args.output_directory,
        accept=policy,
        max_associations=args.max_associations,
        layout=args.layout,
        unique_filenames=args.unique_filenames,
        fsync=args.fsync,
        timeout=args.timeout,
        tls=arguments.server_tls(args),
        dataset_check=args.dataset_check,
        max_connections=args.max_connections,
        acse_timeout=args.acse_timeout,
        commitment=_commitment(args),
    )
    arguments.warn_lenient(args)
    target = "nowhere (--ignore)" if args.ignore else str(args.output_directory)
    print(f"Listening on port {server.port} as {args.aetitle}, storing to {target}", flush=True)
    live = LiveLine(lambda seconds: _line(server.stats, seconds), args.quiet or args.log_json)
    code = until_interrupted(
        server.serve_forever,
        lambda abort: server.shutdown(abort=abort),
        live,
        "running associations finish",
    )
    seconds = time.perf_counter() - live.started
    print(f"Received {_line(server.stats, seconds)} in {seconds:.1f} s")
    return code
