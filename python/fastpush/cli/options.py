"""What the commands share, defined once: argparse types that check a value and say what is
wrong with it (so that a bad option ends the run before anything is sent), the exit codes, the
``-q | -v | -d`` group and the logging it sets, the connection options of ``store`` and ``echo``
(peer, AE titles, timeouts, client TLS, user identity), and the receiving options of ``serve``
and ``route`` (server TLS, connection limits, the dataset check).
"""

from __future__ import annotations

import argparse
import sys

from ..transport.engines import ENGINES
from ..wire.limits import TOKEN_NAMES, encode_ae_title

# typing.TYPE_CHECKING without importing typing: building a parser needs nothing of typing,
# pathlib, the identity codec or the data path (issue 17); they load with the values they make.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import logging
    from collections.abc import Callable
    from pathlib import Path
    from typing import Any, TypeAlias

    from ..transport.tls import TLSOptions
    from ..wire.identity import UserIdentity

    # argparse's add_argument_group / add_mutually_exclusive_group return private classes.
    Group: TypeAlias = Any

# 0: every file stored (warnings included), or a server stopped by one Ctrl-C; 1: some file
# failed or was skipped; 2: usage, connection or association failure; 130: interrupted.
EXIT_OK, EXIT_INCOMPLETE, EXIT_FAILURE, EXIT_INTERRUPTED = 0, 1, 2, 130


def ae_title(text: str) -> str:
    try:
        encode_ae_title(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc
    return text


def integer(low: int, high: int | None = None, *, zero: bool = False) -> Callable[[str], int]:
    """An argparse type: an integer in ``low..high`` (or 0 when ``zero``)."""

    def check(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if (zero and value == 0) or (value >= low and (high is None or value <= high)):
            return value
        allowed = f"{low}..{high}" if high is not None else f"at least {low}"
        raise argparse.ArgumentTypeError(
            f"{value} is out of range ({'0 or ' if zero else ''}{allowed})"
        )

    return check


def amount(unit: str) -> Callable[[str], float]:
    """An argparse type: a finite number above 0, of ``unit``."""

    def check(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number of {unit}") from None
        if not value > 0 or value == float("inf"):
            raise argparse.ArgumentTypeError(f"{text} is not a positive number of {unit}")
        return value

    return check


def path(text: str) -> Path:
    """An argparse type: a ``Path``, pathlib loading when an option gives one."""
    from pathlib import Path

    return Path(text)


seconds = amount("seconds")
port = integer(1, 65535)
# PS3.8 D.1: the Maximum Length is a 32-bit field (0: no limit); below 4096, as DCMTK refuses,
# a PDU carries too little to be worth its header.
pdu_length = integer(4096, 0xFFFFFFFF)
max_pdu = integer(4096, 0xFFFFFFFF, zero=True)
positive = integer(1)


# -q | -v | -d, and the logging they ask for


def add_talk(
    parser: argparse.ArgumentParser,
    *,
    quiet: str | None = "only the summary",
    verbose: str = "tell the association story",
    debug: str = "also log each PDU-level step",
) -> None:
    """``-q``, ``-v`` and ``-d``, one at most (no ``-q`` when ``quiet`` is None)."""
    talk = parser.add_mutually_exclusive_group()
    if quiet is not None:
        talk.add_argument("-q", "--quiet", action="store_true", help=quiet)
    talk.add_argument("-v", "--verbose", action="store_true", help=verbose)
    talk.add_argument("-d", "--debug", action="store_true", help=debug)


def add_log_json(parser: argparse.ArgumentParser) -> None:
    """``--log-json`` of a service (``serve``, ``route``)."""
    parser.add_argument(
        "--log-json",
        action="store_true",
        help="log on stderr one JSON object a line (time, level, logger, message, thread) for "
        "a log collector, instead of DCMTK-style lines",
    )


def configure_logging(args: argparse.Namespace) -> None:
    """Log lines on stderr as DCMTK writes them: warnings, or more with ``-v`` / ``-d``; with
    ``--log-json``, one JSON object a line."""
    # logging loads here, after parsing: ``--help`` and a usage error never need it.
    import logging

    class DcmtkStyle(logging.Formatter):
        def format(self, record: logging.LogRecord) -> str:
            return f"{record.levelname[0]}: {record.getMessage()}"

    level = logging.DEBUG if args.debug else logging.INFO if args.verbose else logging.WARNING
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_json_lines() if getattr(args, "log_json", False) else DcmtkStyle())
    logger = logging.getLogger("fastpush")
    logger.addHandler(handler)
    logger.setLevel(level)


def _json_lines() -> logging.Formatter:
    """A formatter of one JSON object a line: ``time`` (ISO 8601, UTC), ``level``, ``logger``,
    ``message``, ``thread``, the record's ``extra`` fields that are plain values, and
    ``exception``. Everything is ASCII-escaped, so text a peer sent (an AE title, a UID) can
    never split a record or forge one."""
    import json
    import logging
    from datetime import datetime, timezone

    standard = {*vars(logging.LogRecord("", 0, "", 0, "", None, None)), "message", "asctime"}

    class JsonLines(logging.Formatter):
        def format(self, record: logging.LogRecord) -> str:
            data: dict[str, object] = {
                "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(
                    timespec="milliseconds"
                ),
                "level": record.levelname,
                "logger": record.name,
                "message": record.getMessage(),
                "thread": record.threadName,
            }
            for key, value in vars(record).items():
                if key not in standard and isinstance(value, (str, int, float, bool)):
                    data.setdefault(key, value)
            if record.exc_info:
                data["exception"] = self.formatException(record.exc_info)
            return json.dumps(data)

    return JsonLines()


# Connecting to a peer: store and echo


def add_engine(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--engine", choices=ENGINES, help="data path (default: rust when built)")


def add_connection(parser: argparse.ArgumentParser, peer: str) -> None:
    """The peer (``HOST PORT``), the AE titles, the timeouts, TLS and the user identity: what
    ``connection(args)`` turns into keyword arguments (``--engine`` is ``add_engine``'s)."""
    parser.add_argument("host", help=f"the {peer}'s host name or address")
    parser.add_argument("port", type=port, help="its TCP port (1-65535)")
    parser.add_argument(
        "-aet", "--calling-ae", default="FASTPUSH", type=ae_title, help="our AE title"
    )
    parser.add_argument(
        "-aec", "--called-ae", default="ANY-SCP", type=ae_title, help="the peer's AE title"
    )
    parser.add_argument(
        "--connect-timeout",
        type=seconds,
        default=10.0,
        metavar="S",
        help="seconds to wait for the TCP connection (default 10)",
    )
    parser.add_argument(
        "--acse-timeout",
        type=seconds,
        default=30.0,
        metavar="S",
        help="seconds to wait for the peer to accept, reject or release (default 30)",
    )
    parser.add_argument(
        "--dimse-timeout",
        type=seconds,
        default=60.0,
        metavar="S",
        help="seconds to wait for each response, or to send (default 60)",
    )
    _add_client_tls(parser)
    _add_identity(parser)


def connection(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments of ``Push``, ``echo`` and ``StoreClient`` for the options of
    ``add_connection`` and ``add_engine``. Raises ``ValueError`` (or ``OSError`` for a secret
    file) for what the parser could not check."""
    return {
        "calling_ae": args.calling_ae,
        "called_ae": args.called_ae,
        "engine": args.engine,
        "connect_timeout": args.connect_timeout,
        "acse_timeout": args.acse_timeout,
        "dimse_timeout": args.dimse_timeout,
        "tls": _client_tls(args),
        "identity": _identity(args),
    }


def _add_client_tls(parser: argparse.ArgumentParser) -> None:
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


def _client_tls(args: argparse.Namespace) -> TLSOptions | None:
    wanted = args.tls or args.tls_ca or args.tls_cert or args.tls_key or args.tls_no_verify
    if not wanted:
        return None
    from ..transport.tls import TLSOptions  # the parser is built without the TLS module

    return TLSOptions(args.tls_ca, args.tls_cert, args.tls_key, args.tls_no_verify)


def _add_identity(parser: argparse.ArgumentParser) -> None:
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
        choices=sorted(TOKEN_NAMES),
        default="jwt",
        help="what --identity-token-file holds (default: jwt)",
    )
    group.add_argument(
        "--identity-response",
        action="store_true",
        help="ask the peer to confirm the identity (positive response requested)",
    )


def _identity(args: argparse.Namespace) -> UserIdentity | None:
    from ..wire.identity import TOKEN_TYPES, UserIdentity, read_secret

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


# Receiving: serve and route


def add_server_tls(parser: argparse.ArgumentParser) -> Group:
    """The ``DICOM TLS`` group of a server: ``--tls-cert``, ``--tls-key``, ``--tls-ca``
    (returned, for a command to add its own TLS options)."""
    group = parser.add_argument_group("DICOM TLS")
    group.add_argument(
        "--tls-cert", metavar="FILE", help="receive with TLS: our PEM certificate (chain)"
    )
    group.add_argument("--tls-key", metavar="FILE", help="the PEM private key of --tls-cert")
    group.add_argument(
        "--tls-ca", metavar="FILE", help="require client certificates signed by these PEM CAs"
    )
    return group


def server_tls(args: argparse.Namespace) -> TLSOptions | None:
    """The ``TLSOptions`` of ``add_server_tls``'s options; None when none was given."""
    if not (args.tls_cert or args.tls_key or args.tls_ca):
        return None
    from ..transport.tls import TLSOptions

    return TLSOptions(ca_file=args.tls_ca, cert_file=args.tls_cert, key_file=args.tls_key)


def add_connection_limits(group: Group) -> None:
    """``--max-connections`` and ``--acse-timeout`` of a server."""
    group.add_argument(
        "--max-connections",
        type=positive,
        metavar="N",
        help="close new TCP connections at once above N open (default 2 x --max-associations + 8)",
    )
    group.add_argument(
        "--acse-timeout",
        type=seconds,
        default=30.0,
        metavar="S",
        help="close a connection whose association request is not in whole S seconds after "
        "it connected (default 30)",
    )


def add_dataset_check(group: Group) -> None:
    """``--no-dataset-check`` of a server."""
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
        import logging

        logging.getLogger(__name__).warning(
            "--no-dataset-check: datasets are stored even when their SOP Class/Instance UIDs "
            "differ from the C-STORE command's"
        )
