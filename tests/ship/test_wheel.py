"""The built wheel installs and works without a Rust toolchain (issue 21).

``scripts/build.sh --if-stale --x86_64-only`` builds the abi3 manylinux wheel into ``dist/``
(or keeps the one built from the same committed sources); the wheel is installed with pip into a
fresh virtual environment, and everything runs from a temporary folder (the source tree cannot
shadow the install) with a PATH that has no cargo or rustc: the demo, a push to DCMTK storescp,
and the two engines giving the same bytes.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydicom import dcmread, examples

from support.peers import StoreSCPFactory

pytestmark = [pytest.mark.wheel, pytest.mark.timeout(1800)]

ROOT = Path(__file__).resolve().parents[2]
WHEEL_GLOB = "fastpush-*-cp310-abi3-manylinux_2_28_x86_64.whl"
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"


@dataclass(frozen=True)
class Installed:
    """A fresh virtual environment with the wheel installed, and how to run in it."""

    python: Path
    wheel: Path
    cwd: Path
    env: dict[str, str]

    def run(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.python), *args],
            cwd=self.cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


def _cargo_version() -> str:
    text = (ROOT / "Cargo.toml").read_text()
    match = re.search(r'^version\s*=\s*"([^"]+)"', text, re.M)
    assert match, "no version in Cargo.toml"
    return match.group(1)


def _built_wheel() -> Path:
    log = subprocess.run(
        ["bash", str(ROOT / "scripts" / "build.sh"), "--if-stale", "--x86_64-only"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1500,
        check=False,
    )
    if log.returncode != 0:
        pytest.fail(f"scripts/build.sh failed:\n{log.stdout[-4000:]}\n{log.stderr[-8000:]}")
    wheels = sorted((ROOT / "dist").glob(WHEEL_GLOB))
    assert len(wheels) == 1, f"expected one {WHEEL_GLOB} in dist/: {wheels}"
    return wheels[0]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    wheel = _built_wheel()
    base = tmp_path_factory.mktemp("wheel")
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    path = os.pathsep.join([str(venv / "bin"), "/usr/bin", "/bin"])
    for tool in ("cargo", "rustc", "rustup", "maturin"):
        assert shutil.which(tool, path=path) is None, f"{tool} is on the test's PATH"
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("CARGO", "RUSTUP", "PYTHON", "FASTPUSH", "MATURIN"))
        and key not in ("VIRTUAL_ENV", "PATH")
    }
    env.update(PATH=path, VIRTUAL_ENV=str(venv), PIP_DISABLE_PIP_VERSION_CHECK="1")
    cwd = base / "work"
    cwd.mkdir()
    setup = Installed(python, wheel, cwd, env)
    # --only-binary: pip must not fall back to building anything from source.
    pip = setup.run("-m", "pip", "install", "--only-binary", ":all:", str(wheel), timeout=900)
    assert pip.returncode == 0, pip.stdout + pip.stderr
    yield setup


def test_wheel_is_abi3_manylinux_and_small(installed: Installed) -> None:
    name = installed.wheel.name
    assert name.startswith(f"fastpush-{_cargo_version()}-cp310-abi3-manylinux_2_28_x86_64")
    size = installed.wheel.stat().st_size
    assert size < 5 * 2**20, f"{name} is {size / 2**20:.1f} MiB"


def test_installed_package_is_the_wheel_with_the_release_core(installed: Installed) -> None:
    probe = installed.run(
        "-c",
        "import fastpush, fastpush._core as core; "
        "print(fastpush.__file__); print(core.__file__); "
        "print(fastpush.__version__); print(core.BUILD_PROFILE)",
    )
    assert probe.returncode == 0, probe.stderr
    package, core, version, profile = probe.stdout.split()
    venv = installed.python.parents[1]
    assert Path(package).is_relative_to(venv), package
    assert Path(core).name == "_core.abi3.so"
    assert Path(core).is_relative_to(venv), core
    assert version == _cargo_version()
    assert profile == "release"


def test_version_option(installed: Installed) -> None:
    shown = installed.run("-m", "fastpush", "--version")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith(f"fastpush {_cargo_version()}"), shown.stdout


def test_demo_runs_from_the_wheel(installed: Installed) -> None:
    demo = installed.run("-m", "fastpush", "demo", "-q")
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "The SCP received 24 datasets." in demo.stdout, demo.stdout


def test_push_to_storescp_from_the_wheel(
    installed: Installed, storescp: StoreSCPFactory, tmp_path: Path
) -> None:
    source = examples.ct
    path = tmp_path / "ct.dcm"
    source.save_as(path, enforce_file_format=True)
    scp = storescp("+B")
    store = installed.run(
        "-m", "fastpush", "store", scp.host, str(scp.port), str(path), "-aec", scp.aet
    )
    assert store.returncode == 0, store.stdout + store.stderr + scp.log()
    [stored] = scp.stored_files()
    assert stored.name == f"CT.{source.SOPInstanceUID}"
    assert dcmread(stored) == dcmread(path)  # element by element, pixel data included


def test_both_engines_convert_to_deflated_alike(
    installed: Installed, storescp: StoreSCPFactory, tmp_path: Path
) -> None:
    """The wheel's Rust core deflates exactly as Python's zlib does (the two data paths agree)."""
    path = tmp_path / "ct.dcm"
    examples.ct.save_as(path, enforce_file_format=True)
    received = []
    for engine in ("rust", "python"):
        scp = storescp("+B", "+xd")
        store = installed.run(
            "-m", "fastpush", "store", scp.host, str(scp.port), str(path), "-aec", scp.aet,
            "--prefer", "deflated", "--engine", engine,
        )  # fmt: skip
        assert store.returncode == 0, store.stdout + store.stderr + scp.log()
        [stored] = scp.stored_files()
        received.append(stored.read_bytes())
    rust, python = received
    assert b"1.2.840.10008.1.2.1.99" in rust[:1024], "not sent deflated"
    assert rust == python
