"""``python -m fastpush store HOST PORT PATH...``: C-STORE files and folders, in the vocabulary
of DCMTK's storescu; and its small siblings ``echo`` (C-ECHO a peer) and ``demo`` (push a
synthetic study to an embedded SCP).

``store`` builds a local ``Push``, or a ``DistributedPush`` when a Dask option is given
(``cluster``); either way ``live`` shows it and ``report`` writes and resumes its report.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator

from ..wire.limits import REQUESTOR_MAX_PDU
from . import cluster
from . import options as arguments
from .options import EXIT_FAILURE, EXIT_INCOMPLETE, EXIT_OK

# typing.TYPE_CHECKING without importing typing, which building the parser does not need.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any

    from ..dataset.edits import EditPlan
    from ..send.push import PathLike
    from .live import Pushing

# The sender, the report and the live display load in the run_ functions, not here: building
# the parser (each run of these commands, the top-level --help) needs only the option groups.


def add_store(store: argparse.ArgumentParser) -> None:
    """Add the options of ``store`` to its parser."""
    arguments.add_connection(store, "storage SCP")
    arguments.add_engine(store)
    arguments.add_talk(store)
    store.add_argument("paths", nargs="+", metavar="PATH", help="files or folders to send")
    store.add_argument("-r", "--recursive", action="store_true", help="descend into subfolders")
    _add_sending(store)
    _add_commitment(store)
    cluster.add_arguments(store)


def add_echo(echo_command: argparse.ArgumentParser) -> None:
    """Add the options of ``echo`` to its parser."""
    arguments.add_connection(echo_command, "SCP")
    arguments.add_engine(echo_command)
    arguments.add_talk(echo_command, quiet=None)


def add_demo(demo: argparse.ArgumentParser) -> None:
    """Add the options of ``demo`` to its parser."""
    arguments.add_engine(demo)
    arguments.add_talk(demo)
    demo.add_argument("--count", type=int, default=24, help="number of images (default 24)")


def _syntaxes(text: str) -> list[str]:
    from ..send.plan import syntax_uid

    try:
        return [syntax_uid(name) for name in text.split(",") if name.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _add_sending(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--max-pdu",
        type=arguments.max_pdu,
        default=REQUESTOR_MAX_PDU,
        metavar="N",
        help="our Maximum Length Received, 4096-4294967295 "
        f"(default {REQUESTOR_MAX_PDU}; 0 = none)",
    )
    parser.add_argument(
        "--max-send-pdu",
        type=arguments.pdu_length,
        metavar="N",
        help="send PDUs no larger than this (4096-4294967295) even if the peer allows more",
    )
    report = parser.add_mutually_exclusive_group()
    report.add_argument(
        "--report",
        type=arguments.path,
        metavar="FILE.jsonl",
        help="write one JSON line per input path",
    )
    report.add_argument(
        "--resume",
        type=arguments.path,
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
    _add_edits(parser)


def _add_edits(parser: argparse.ArgumentParser) -> None:
    edits = parser.add_argument_group(
        "tag edits and de-identification",
        "Applied while each dataset streams out (Rust engine), pixel data untouched; TAG is a "
        "keyword or (gggg,eeee). A file the edits cannot apply to fails, never sent unedited. "
        "Keys are read from files, never given on the command line.",
    )
    edits.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="TAG=VALUE",
        dest="set_tags",
        help="set an element (added where missing)",
    )
    edits.add_argument(
        "--remove", action="append", default=[], metavar="TAG", help="remove an element"
    )
    edits.add_argument(
        "--map-uids",
        metavar="KEYFILE",
        help="map every UID to 2.25.<HMAC-SHA256 with the key in KEYFILE>: the same UID "
        "always maps to the same UID",
    )
    edits.add_argument(
        "--deidentify",
        action="store_true",
        help="apply the DICOM PS3.15 Basic Application Level Confidentiality Profile",
    )
    edits.add_argument(
        "--deidentify-key",
        metavar="FILE",
        help="the key for pseudonyms and UID maps of --deidentify",
    )


def edit_plan(args: argparse.Namespace) -> EditPlan | None:
    """The edits the options ask for, or None; ``ValueError`` for a bad one."""
    asked = (args.set_tags, args.remove, args.map_uids, args.deidentify, args.deidentify_key)
    if not any(asked):  # a push without edits starts without dataset.edits
        return None
    from ..dataset.edits import Deidentify, Edit, EditPlan, MapUids, Remove, Set

    edits: list[Edit] = []
    for text in args.set_tags:
        tag, sep, value = text.partition("=")
        if not sep:
            raise ValueError(f"--set {text!r}: use TAG=VALUE")
        edits.append(Set(tag, value))
    edits += [Remove(tag) for tag in args.remove]
    if args.map_uids:
        edits.append(MapUids())
    if args.deidentify and not args.deidentify_key:
        raise ValueError("--deidentify needs --deidentify-key FILE")
    if args.deidentify_key and not args.deidentify:
        raise ValueError("--deidentify-key needs --deidentify")
    if not edits and not args.deidentify:
        return None
    if args.map_uids and args.deidentify_key and args.map_uids != args.deidentify_key:
        raise ValueError("--map-uids and --deidentify-key must name the same key file")
    plan = EditPlan(
        tuple(edits),
        Deidentify() if args.deidentify else None,
        args.deidentify_key or args.map_uids,
    )
    plan.compiled  # noqa: B018 - reads the key and checks every tag before the first file
    return plan


def _add_commitment(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "storage commitment",
        "Ask the SCP to commit to keeping the files each association stored (Storage "
        "Commitment Push Model); a file stored but not committed fails, and --resume sends it "
        "again.",
    )
    group.add_argument("--commit", action="store_true", help="ask for Storage Commitment")
    group.add_argument(
        "--commit-timeout",
        type=arguments.seconds,
        default=60.0,
        metavar="S",
        help="wait this long for each N-EVENT-REPORT (default 60)",
    )
    group.add_argument(
        "--commit-port",
        type=arguments.port,
        metavar="PORT",
        help="take the reports on associations the SCP opens to us on this port (as Orthanc "
        "sends them), instead of on the association that stored the files",
    )


@contextlib.contextmanager
def _commitment(args: argparse.Namespace, calling_ae: str) -> Iterator[Any]:
    """The ``commit=`` of the push: None, or options with a report listener while it runs."""
    if not args.commit:
        yield None
        return
    from ..send.commit import CommitOptions

    if args.commit_port is None:
        yield CommitOptions(timeout=args.commit_timeout)
        return
    from ..receive.report_listener import ReportListener

    with ReportListener("", args.commit_port, ae_title=calling_ae) as listener:
        yield CommitOptions(timeout=args.commit_timeout, waiter=listener)


def run_store(args: argparse.Namespace) -> int:
    from ..send.plan import Proposal
    from . import report as reports
    from .live import finish, run_push

    problem = cluster.problem(args)
    if problem is None and args.commit and cluster.settings(args) is not None:
        problem = "--commit is not supported on a cluster"
    if problem is not None:
        print(f"fastpush: {problem}", file=sys.stderr)
        return EXIT_FAILURE
    skip: set[str] = set()
    if args.resume is not None:
        found = reports.resumed(args.resume)
        if found is None:
            return EXIT_FAILURE
        skip = found
    try:
        edits = edit_plan(args)
    except (OSError, ValueError) as exc:
        print(f"fastpush: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    if edits is not None and cluster.settings(args) is not None:
        print("fastpush: edits are not applied on a cluster push", file=sys.stderr)
        return EXIT_FAILURE
    extra: dict[str, Any] = {} if edits is None else {"edits": edits}
    report_path: Path | None = args.report or args.resume
    report = None
    if report_path is not None:
        report = reports.open_for(report_path, resume=args.resume is not None)
        if report is None:
            return EXIT_FAILURE
    connection = arguments.connection(args)
    with (
        report if report is not None else contextlib.nullcontext(),
        _commitment(args, connection.get("calling_ae", "FASTPUSH")) as commit,
        _pusher(
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
            commit=commit or False,
            **extra,
            **connection,
        ) as push,
    ):
        if push.total_files == 0 and push.resumed == 0:
            hint = "" if args.recursive else " (folders are not descended without -r)"
            print(f"fastpush: no DICOM files found{hint}", file=sys.stderr)
            return EXIT_INCOMPLETE
        tally = run_push(push, report, args.quiet)
    return finish(tally)


@contextlib.contextmanager
def _pusher(
    args: argparse.Namespace, paths: list[PathLike], host: str, port: int, **options: Any
) -> Iterator[Pushing]:
    """A local ``Push``, or a ``DistributedPush`` when a cluster option was given (closed on
    leaving)."""
    on_cluster = cluster.settings(args)
    if on_cluster is None:
        from ..send.push import Push

        yield Push(paths, host, port, **options)
        return
    try:
        from ..cluster.driver import DistributedPush
    except ImportError as exc:  # pragma: no cover - the extra is part of the test install
        raise ValueError(f"{exc}: pip install 'fastpush[dask]'") from exc
    options["associations_per_worker"] = options.pop("associations")
    with DistributedPush(paths, host, port, **on_cluster, **options) as push:
        yield push


def run_echo(args: argparse.Namespace) -> int:
    from ..errors import FastpushError
    from ..send.push import echo

    try:
        status = echo(args.host, args.port, **arguments.connection(args))
    except (OSError, FastpushError) as exc:
        print(f"echo failed: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    print(f"Echo response from {args.host}:{args.port}: status 0x{status:04X}")
    return EXIT_OK if status == 0 else EXIT_FAILURE


def run_demo(args: argparse.Namespace) -> int:
    import tempfile
    from pathlib import Path

    from ..receive.server import StorageServer
    from ..send.push import Push
    from ..synthetic import write_study
    from .live import finish, run_push

    with tempfile.TemporaryDirectory(prefix="fastpush-demo-") as folder:
        ct = "1.2.840.10008.5.1.4.1.1.2"
        paths = write_study(Path(folder), count=args.count, sop_classes=[ct])
        with StorageServer("127.0.0.1", 0, ae_title="FASTPUSH-SCP") as scp:
            print(
                f"Demo: pushing a {len(paths)}-image synthetic CT study to an embedded SCP "
                f"at {scp.host}:{scp.port}"
            )
            push = Push([folder], scp.host, scp.port, called_ae=scp.ae_title, engine=args.engine)
            code = finish(run_push(push, None, args.quiet))
        print(f"The SCP received {scp.stats.files} datasets.")
    return code
