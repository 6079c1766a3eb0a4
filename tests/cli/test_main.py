"""What every command shares: ``--version``'s one line, ``-q | -v | -d`` exclusive everywhere,
and a report reader that ``import fastpush`` can load without the CLI's parser or rich."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

import fastpush
from fastpush.cli.main import _parser
from fastpush.transport.connect import default_engine

_VERSION = re.compile(
    r"fastpush (?P<version>\S+) \(engine: (?P<engine>rust|python), "
    r"build: (?P<build>release|debug|no Rust extension)\)\n"
)


def _fastpush(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fastpush", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, **env},
    )


def test_version_is_one_line_with_the_engine_and_the_build() -> None:
    shown = _fastpush("--version")
    assert shown.returncode == 0, shown.stderr
    found = _VERSION.fullmatch(shown.stdout)
    assert found is not None, shown.stdout
    assert found["version"] == fastpush.__version__
    assert found["engine"] == default_engine()
    try:
        from fastpush import _core
    except ImportError:  # pragma: no cover - the test install builds the extension
        assert found["build"] == "no Rust extension"
    else:
        assert found["build"] == _core.BUILD_PROFILE


def test_version_names_a_bad_engine_instead_of_failing() -> None:
    shown = _fastpush("--version", FASTPUSH_ENGINE="warp")
    assert shown.returncode == 0, shown.stderr
    assert re.fullmatch(
        r"fastpush \S+ \(engine: invalid \(unknown engine 'warp'[^\n]*\), build: [^\n]+\)\n",
        shown.stdout,
    ), shown.stdout


def test_help_does_not_look_for_the_engine() -> None:
    # An engine that cannot be chosen shows in --version's line, never fails the parser.
    shown = _fastpush("--help", FASTPUSH_ENGINE="warp")
    assert shown.returncode == 0, shown.stderr
    assert "--version" in shown.stdout


_COMMANDS = {
    "store": ["store", "localhost", "104", "file.dcm"],
    "echo": ["echo", "localhost", "104"],
    "demo": ["demo"],
    "serve": ["serve", "11112"],
    "route": ["route", "11112", "--to", "localhost", "104"],
}


_PAIRS = [
    (command, pair)
    for command in sorted(_COMMANDS)
    for pair in [("-q", "-v"), ("-q", "-d"), ("-v", "-d")]
    if command != "echo" or "-q" not in pair  # echo prints one line: it has no -q
]


@pytest.mark.parametrize(("command", "pair"), _PAIRS)
def test_talk_options_are_exclusive_in(
    command: str, pair: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    args = _parser().parse_args([*_COMMANDS[command], pair[0]])
    assert getattr(args, {"-q": "quiet", "-v": "verbose", "-d": "debug"}[pair[0]])
    with pytest.raises(SystemExit) as exited:
        _parser().parse_args([*_COMMANDS[command], *pair])
    assert exited.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_the_report_reader_loads_without_the_command_line() -> None:
    code = (
        "import sys, fastpush; fastpush.stored_paths; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('argparse', 'rich') "
        "or m.startswith('fastpush.cli')))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout == "['fastpush.cli', 'fastpush.cli.report']\n"
