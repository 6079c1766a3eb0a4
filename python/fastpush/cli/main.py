"""``python -m fastpush``: store, echo, demo, serve and route, in the vocabulary of DCMTK.

Exit codes: 0 every file stored (warnings included); 1 some file failed or was skipped; 2 usage,
connection or association failure; 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Collection, Sequence

from . import options as arguments
from .options import EXIT_FAILURE, EXIT_INTERRUPTED

# typing.TYPE_CHECKING without importing typing, which no command needs to build its parser.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

# command -> its module in fastpush.cli, the function adding its options to its parser, the
# function running it, and its parser's own arguments (the help line is the top-level help's).
# A command's module loads only when that command runs or shows its help: the top-level
# --help and a mistyped or missing command need no more than this table.
_COMMANDS: dict[str, tuple[str, str, str, dict[str, Any]]] = {
    "store": (
        "store",
        "add_store",
        "run_store",
        {"help": "C-STORE files and folders to a storage SCP"},
    ),
    "echo": ("store", "add_echo", "run_echo", {"help": "C-ECHO a DICOM peer"}),
    "demo": (
        "store",
        "add_demo",
        "run_demo",
        {"help": "push a synthetic CT study to an embedded SCP"},
    ),
    "serve": (
        "serve",
        "add_options",
        "run",
        {
            "help": "receive C-STORE as a storage SCP (like storescp)",
            "description": "Receive C-STORE as a storage SCP, like DCMTK's storescp.",
            "prefix_chars": "-+",
        },
    ),
    "route": (
        "route",
        "add_options",
        "run",
        {
            "help": "receive C-STORE, spool durably, forward to one or more SCPs",
            "description": "A store-and-forward router: every file received is spooled "
            "durably, then forwarded to every --to; nothing leaves the spool until each "
            "stored it.",
        },
    ),
}


def _function(command: str, *, adding: bool) -> Callable[..., Any]:
    """The function adding ``command``'s options, or (not ``adding``) the one running it."""
    module, add, run, _ = _COMMANDS[command]
    functions = importlib.import_module(f".{module}", __package__)
    function: Callable[..., Any] = getattr(functions, add if adding else run)
    return function


def version() -> str:
    """``fastpush 0.1.0 (engine: rust, build: release)``: the version, the data path a run
    takes by default, and how the Rust extension was built."""
    from .. import __version__
    from ..transport.connect import default_engine

    try:
        engine = default_engine()
    except ValueError as exc:  # FASTPUSH_ENGINE names no engine, or one not built
        engine = f"invalid ({exc})"
    try:
        from .. import _core
    except ImportError:
        build = "no Rust extension"
    else:
        build = _core.BUILD_PROFILE
    return f"fastpush {__version__} (engine: {engine}, build: {build})"


class _Version(argparse.Action):
    """``--version``: the line is made only when asked, so that building the parser (and
    ``--help``) does not look for the data path."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> None:
        print(version())
        parser.exit()


def _parser(commands: Collection[str] = tuple(_COMMANDS)) -> argparse.ArgumentParser:
    """The CLI's parser with the options of ``commands`` (by default, every command's). With
    none, every command has its name and help line only: all that the top-level ``--help`` and
    a usage error show."""
    parser = argparse.ArgumentParser(prog="fastpush", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--version", action=_Version, help="show the version, engine and build, and exit"
    )
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in commands or _COMMANDS:
        command = subparsers.add_parser(name, **_COMMANDS[name][3])
        if commands:
            _function(name, adding=True)(command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["route"]:  # route_ops loads for route alone
        from . import route_ops

        if route_ops.is_control(argv):  # `route status|hold|release|retry|remove --spool DIR`
            return route_ops.control(argv[1:])
    args = _parser([argv[0]] if argv and argv[0] in _COMMANDS else []).parse_args(argv)
    arguments.configure_logging(args)
    try:
        code: int = _function(args.command, adding=False)(args)
        return code
    except (ValueError, OSError) as exc:  # an option the parser could not check (engine, files)
        print(f"fastpush: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:  # before a push began (scanning) or during echo
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
