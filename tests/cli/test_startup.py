"""What starting up loads (issue 17), by module list in a fresh interpreter, never by time:
``import fastpush`` loads the package alone, the send path leaves pydicom, rich, numpy, the
receive side and the router unloaded, building the CLI's parser loads no data path, and the
top-level ``--help`` loads no command."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

import pytest

import fastpush

# Heavy on their own, and needed only by what a push may never do: read a dataset with pydicom
# (conversion, decompression), draw a progress bar, decode pixels.
_HEAVY = ("pydicom", "rich", "numpy")
_RECEIVE_SIDE = ("fastpush.receive", "fastpush.route")
# The PDU and identity codecs (dataclasses, struct, pathlib) and the engine choice (the Rust
# extension): what a parser needs of them is in wire.limits and transport.engines.
_CODECS = ("fastpush.wire.pdu", "fastpush.wire.identity", "fastpush.transport.connect")
# Standard modules that cost milliseconds each on a small VM and that no parser needs. The
# interpreter runs with -S for these: site-packages' .pth files may load them in any process.
_SLOW_STDLIB = ("typing", "pathlib", "dataclasses", "inspect", "logging")

# Runs ``python -m fastpush ARGS`` as -m would, then writes the modules it loaded to OUT.
_RUN_CLI = """
import runpy, sys
out, sys.argv = sys.argv[1], ["fastpush", *sys.argv[2:]]
try:
    runpy.run_module("fastpush", run_name="__main__", alter_sys=True)
except SystemExit:
    pass
with open(out, "w") as file:
    file.write("\\n".join(sorted(sys.modules)))
"""


def _loaded_by(code: str) -> set[str]:
    done = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys\nprint('\\n'.join(sorted(sys.modules)))"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return set(done.stdout.split())


def _loaded_by_cli(tmp_path: Path, *args: str, site: bool = True) -> set[str]:
    """The modules ``python -m fastpush ARGS`` loads; without ``site``, in ``python -S`` with
    fastpush's folder alone on the path."""
    out = tmp_path / "modules.txt"
    flags, env = [], None
    if not site:
        flags = ["-S"]
        env = {**os.environ, "PYTHONPATH": str(Path(fastpush.__file__).parents[1])}
    subprocess.run(
        [sys.executable, *flags, "-c", _RUN_CLI, str(out), *args],
        capture_output=True,
        timeout=60,
        check=False,
        env=env,
    )
    return set(out.read_text().split())


def _under(modules: Iterable[str], packages: Iterable[str]) -> list[str]:
    return sorted(m for m in modules if any(m == p or m.startswith(p + ".") for p in packages))


def test_import_fastpush_loads_the_package_alone() -> None:
    loaded = _loaded_by("import fastpush")
    assert _under(loaded, ["fastpush"]) == ["fastpush"]
    assert _under(loaded, _HEAVY) == []


def test_the_public_api_loads_on_first_use() -> None:
    loaded = _loaded_by(
        "import fastpush\nfrom fastpush import *\n"
        "missing = [n for n in fastpush.__all__ if n not in globals()]\n"
        "assert not missing, missing"
    )
    assert "fastpush.route.router" in loaded
    assert "fastpush.receive.server" in loaded


def test_the_send_api_leaves_the_receive_side_and_heavy_packages_unloaded() -> None:
    loaded = _loaded_by(
        "from fastpush import Association, ConnectionOptions, Push, Result, RetryPolicy, "
        "StoreClient, TLSOptions, UserIdentity, echo, push"
    )
    assert "fastpush.send.push" in loaded
    assert _under(loaded, [*_HEAVY, *_RECEIVE_SIDE, "fastpush.cli", "fastpush.cluster"]) == []


def test_store_help_builds_its_parser_without_a_data_path(tmp_path: Path) -> None:
    loaded = _loaded_by_cli(tmp_path, "store", "--help")
    assert "fastpush.cli.store" in loaded
    unwanted = [*_HEAVY, *_RECEIVE_SIDE, *_CODECS, "fastpush.send", "fastpush.cluster"]
    assert _under(loaded, [*unwanted, "fastpush._core", "fastpush.cli.serve"]) == []


def test_help_names_the_commands_without_loading_one(tmp_path: Path) -> None:
    loaded = _loaded_by_cli(tmp_path, "--help")
    commands = ["fastpush.cli.store", "fastpush.cli.serve", "fastpush.cli.route"]
    unwanted = [*_HEAVY, *_RECEIVE_SIDE, *_CODECS, "fastpush.send", "fastpush.cluster"]
    assert _under(loaded, [*commands, *unwanted, "fastpush._core"]) == []


@pytest.mark.parametrize("args", [["--help"], ["store", "--help"]])
def test_help_loads_no_slow_standard_module(tmp_path: Path, args: list[str]) -> None:
    loaded = _loaded_by_cli(tmp_path, *args, site=False)
    assert "fastpush.cli.main" in loaded
    assert _under(loaded, _SLOW_STDLIB) == []


@pytest.mark.parametrize("command", ["echo", "demo", "serve", "route"])
def test_each_command_builds_its_parser_without_a_data_path(tmp_path: Path, command: str) -> None:
    loaded = _loaded_by_cli(tmp_path, command, "--help")
    assert f"fastpush.cli.{'store' if command in ('echo', 'demo') else command}" in loaded
    unwanted = [*_HEAVY, "fastpush.route", "fastpush.send", "fastpush.cluster"]
    assert _under(loaded, unwanted) == []
    # serve's --layout offers the names of receive.storage's Layout: that module, nothing more
    # of the receive side.
    assert set(_under(loaded, ["fastpush.receive"])) <= {
        "fastpush.receive",
        "fastpush.receive.storage",
    }


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.mark.parametrize("talk", [[], ["-q"], ["-v"]])
def test_a_store_run_loads_the_send_path_only(
    tmp_path: Path, study_dir: Path, closed_port: int, talk: list[str]
) -> None:
    # Scans the study and fails to connect: the whole send path up to the network.
    loaded = _loaded_by_cli(tmp_path, "store", *talk, "127.0.0.1", str(closed_port), str(study_dir))
    assert "fastpush.send.association" in loaded
    assert "fastpush.dataset.scan" in loaded
    assert _under(loaded, [*_HEAVY, *_RECEIVE_SIDE, "fastpush.cluster"]) == []
    # No edit was asked for: the edit plan and de-identification stay unloaded.
    assert _under(loaded, ["fastpush.dataset.edits", "fastpush.dataset.deid"]) == []


def test_a_store_run_loads_no_module_it_does_not_use(
    tmp_path: Path, study_dir: Path, closed_port: int
) -> None:
    # uuid (and platform with it) makes Storage Commitment's UIDs; the idna codec (stringprep,
    # unicodedata) encodes host names that are not ASCII: none is asked for here.
    loaded = _loaded_by_cli(
        tmp_path, "store", "127.0.0.1", str(closed_port), str(study_dir), site=False
    )
    assert "fastpush.transport.connect" in loaded
    assert _under(loaded, ["uuid", "platform", "encodings.idna", "unicodedata"]) == []
