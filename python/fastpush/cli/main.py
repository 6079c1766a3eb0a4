"""``python -m fastpush``: store, echo, demo, serve and route, in the vocabulary of DCMTK.

Exit codes: 0 every file stored (warnings included); 1 some file failed or was skipped; 2 usage,
connection or association failure; 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from typing import Any

from . import options as arguments
from . import route_ops
from .options import EXIT_FAILURE, EXIT_INTERRUPTED

# command -> its module in fastpush.cli, the function adding its parser, the function running it.
# A command's module loads only when its parser is built: a run builds only its own (``store``
# starts without the receive side's option types), the top-level help and a mistyped command
# build them all.
_COMMANDS = {
    "store": ("store", "add_store", "run_store"),
    "echo": ("store", "add_echo", "run_echo"),
    "demo": ("store", "add_demo", "run_demo"),
    "serve": ("serve", "add_parser", "run"),
    "route": ("route", "add_parser", "run"),
}


def _function(command: str, which: int) -> Callable[..., Any]:
    module = importlib.import_module(f".{_COMMANDS[command][0]}", __package__)
    function: Callable[..., Any] = getattr(module, _COMMANDS[command][which])
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


def _parser(command: str | None = None) -> argparse.ArgumentParser:
    """The CLI's parser; with ``command``, only that command's subparser."""
    parser = argparse.ArgumentParser(prog="fastpush", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--version", action=_Version, help="show the version, engine and build, and exit"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for name in _COMMANDS if command is None else (command,):
        _function(name, 1)(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if route_ops.is_control(argv):  # `route status|hold|release|retry|remove --spool DIR`
        return route_ops.control(argv[1:])
    args = _parser(argv[0] if argv and argv[0] in _COMMANDS else None).parse_args(argv)
    arguments.configure_logging(args)
    try:
        code: int = _function(args.command, 2)(args)
        return code
    except (ValueError, OSError) as exc:  # an option the parser could not check (engine, files)
        print(f"fastpush: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:  # before a push began (scanning) or during echo
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
