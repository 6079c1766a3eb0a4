"""``python -m fastpush serve PORT``: a storage SCP in the vocabulary of DCMTK's storescp.

Files go to ``-od DIR`` (default: the current folder) as ``storescp +B`` writes them, or
nowhere with ``--ignore``. A live line shows files, MB and MB/s received; the first Ctrl-C stops
accepting and lets running associations finish, the second cuts them.
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..receive.negotiation import DEFAULT_MAX_PDU, AcceptPolicy
from ..receive.storage import Layout
from ..transport.tls import TLSOptions
from . import options as arguments

if TYPE_CHECKING:
    from ..receive.server import Stats

log = logging.getLogger(__name__)

EXIT_OK, EXIT_FAILURE, EXIT_INTERRUPTED = 0, 2, 130
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


def add_parser(commands: Any) -> None:
    """Add the ``serve`` subcommand to the CLI's subparsers."""
    serve = commands.add_parser(
        "serve",
        help="receive C-STORE as a storage SCP (like storescp)",
        description="Receive C-STORE as a storage SCP, like DCMTK's storescp.",
        prefix_chars="-+",
    )
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
        type=arguments.integer(4096, 0xFFFFFFFF, zero=True),
        default=DEFAULT_MAX_PDU,
        metavar="N",
        help=f"our maximum PDU length (default {DEFAULT_MAX_PDU}; 0: no limit)",
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
    add_connection_limits(accept)
    add_dataset_check(accept)
    secure = serve.add_argument_group("DICOM TLS")
    secure.add_argument("--tls-cert", metavar="FILE", help="our PEM certificate (chain): TLS on")
    secure.add_argument("--tls-key", metavar="FILE", help="the PEM private key of --tls-cert")
    secure.add_argument(
        "--tls-ca", metavar="FILE", help="require client certificates signed by these PEM CAs"
    )
    serve.add_argument("-q", "--quiet", action="store_true", help="no live line, summary only")
    serve.add_argument("-v", "--verbose", action="store_true", help="tell the association story")
    serve.add_argument("-d", "--debug", action="store_true", help="also log each context")


def add_connection_limits(group: Any) -> None:
    """``--max-connections`` and ``--acse-timeout``, shared with ``route``."""
    group.add_argument(
        "--max-connections",
        type=arguments.positive,
        metavar="N",
        help="close new TCP connections at once above N open (default 2 x --max-associations + 8)",
    )
    group.add_argument(
        "--acse-timeout",
        type=arguments.seconds,
        default=30.0,
        metavar="S",
        help="close a connection whose association request is not in whole S seconds after "
        "it connected (default 30)",
    )


def raise_descriptor_limit() -> None:
    """Raise the soft limit on open files to the hard one: a server holds a descriptor per
    connection, and a soft limit of 1024 (a common default) is reached long before memory."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == hard:
        return
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError) as exc:  # e.g. a hard limit above what the kernel allows
        log.debug("Open files limit stays %d (hard %d): %s", soft, hard, exc)
        return
    log.debug("Open files limit raised from %d to %d", soft, hard)


def add_dataset_check(group: Any) -> None:
    """``--no-dataset-check``, shared with ``route``."""
    group.add_argument(
        "--no-dataset-check",
        dest="dataset_check",
        action="store_false",
        help="store datasets whose SOP Class/Instance UIDs differ from the command's "
        "(for senders known to send mismatched meta)",
    )


def warn_lenient(args: argparse.Namespace) -> None:
    """Say at start that datasets are stored unchecked: a setting an operator must see."""
    if not args.dataset_check:
        log.warning(
            "--no-dataset-check: datasets are stored even when their SOP Class/Instance UIDs "
            "differ from the C-STORE command's"
        )


def _line(stats: Stats, seconds: float) -> str:
    mb = stats.bytes / _MB
    rate = mb / seconds if seconds > 0 else 0.0
    failed = f", {stats.failed} failed" if stats.failed else ""
    refused = f", {stats.rejected} associations refused" if stats.rejected else ""
    return (
        f"{stats.files} files, {mb:.1f} MB, {rate:.1f} MB/s, "
        f"{stats.active} associations{failed}{refused}"
    )


class LiveLine:
    """A status line on stderr, ``text(seconds since start)``: rewritten in place on a
    terminal, a line every 10 s elsewhere."""

    def __init__(self, text: Callable[[float], str], quiet: bool) -> None:
        self.text = text
        self.tty = sys.stderr.isatty()
        self.interval = 0.5 if self.tty else 10.0
        self.started = time.perf_counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fastpush-live", daemon=True)
        if not quiet:
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            text = self.text(time.perf_counter() - self.started)
            sys.stderr.write(f"\r\x1b[K{text}" if self.tty else f"{text}\n")
            sys.stderr.flush()

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
            if self.tty:
                sys.stderr.write("\r\x1b[K")


def until_interrupted(
    serve: Callable[[], None], stop: Callable[[bool], None], live: LiveLine, finishing: str
) -> int:
    """Run ``serve()`` until Ctrl-C: the first calls ``stop(False)`` (``finishing`` says what
    still runs), the second ``stop(True)``. Closes ``live``; returns the exit code."""
    code = EXIT_OK
    try:
        serve()
    except KeyboardInterrupt:
        print(f"\nStopping: {finishing} (Ctrl-C again to cut them)", file=sys.stderr)
        try:
            stop(False)
        except KeyboardInterrupt:
            stop(True)
            code = EXIT_INTERRUPTED
    finally:
        live.close()
    return code


def run(args: argparse.Namespace) -> int:
    from ..receive.server import StorageServer  # the receive side loads only when it serves

    raise_descriptor_limit()
    policy = AcceptPolicy(
        check_called_ae=args.check_called_ae,
        calling_aes=args.accept_calling,
        promiscuous=args.promiscuous,
        syntax=args.syntax,
        max_pdu=args.max_pdu,
    )
    tls = None
    if args.tls_cert or args.tls_key or args.tls_ca:
        tls = TLSOptions(ca_file=args.tls_ca, cert_file=args.tls_cert, key_file=args.tls_key)
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
        tls=tls,
        dataset_check=args.dataset_check,
        max_connections=args.max_connections,
        acse_timeout=args.acse_timeout,
    )
    warn_lenient(args)
    target = "nowhere (--ignore)" if args.ignore else str(args.output_directory)
    print(f"Listening on port {server.port} as {args.aetitle}, storing to {target}", flush=True)
    live = LiveLine(lambda seconds: _line(server.stats, seconds), args.quiet)
    code = until_interrupted(
        server.serve_forever,
        lambda abort: server.shutdown(abort=abort),
        live,
        "running associations finish",
    )
    seconds = time.perf_counter() - live.started
    print(f"Received {_line(server.stats, seconds)} in {seconds:.1f} s")
    return code
