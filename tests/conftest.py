"""Shared fixtures: real peers (DCMTK storescp, Orthanc, pynetdicom) and synthetic studies.

Factories return objects described in :mod:`peers`; every process is stopped by PID at teardown.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from support.certs import Certificates, make_certificates
from support.peers import (
    DEFAULT_SCP_TRANSFER_SYNTAXES,
    ORTHANC,
    STORESCP,
    IdentityCheck,
    Orthanc,
    PynetdicomSCP,
    PynetdicomSCPFactory,
    StoreSCP,
    StoreSCPFactory,
    dataset_bytes,
    start_orthanc,
    start_pynetdicom_scp,
    start_storescp,
)

__all__ = ["dataset_bytes"]


def _require(path: str) -> None:
    if not Path(path).exists():
        pytest.fail(f"{path} is missing: run scripts/setup.sh (apt-get install -y dcmtk orthanc)")


@pytest.fixture
def storescp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StoreSCPFactory]:
    """Factory: ``storescp(*args, env=None) -> StoreSCP`` (``.port``, ``.outdir``, ``.aet``).

    Runs ``/usr/bin/storescp -dhl --aetitle STORESCP -od OUTDIR *args PORT`` on a free port and
    returns once the port accepts connections; e.g. ``storescp("+B")``,
    ``storescp("--ignore", env={"TCP_NODELAY": "1"})``, ``storescp("+xa", "-pdu", "4096")``.
    Its output is in ``.log()``; stopped (terminate, then kill) at teardown.
    """
    _require(STORESCP)
    started: list[StoreSCP] = []
    workdir = tmp_path_factory.mktemp("storescp")

    def factory(*args: str, env: dict[str, str] | None = None) -> StoreSCP:
        scp = start_storescp(workdir, *args, env=env)
        started.append(scp)
        return scp

    yield factory
    for scp in started:
        scp.stop()


@pytest.fixture(scope="session")
def orthanc_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Orthanc]:
    """One Orthanc for the whole session (it takes a moment to start)."""
    _require(ORTHANC)
    server = start_orthanc(tmp_path_factory.mktemp("orthanc"))
    yield server
    server.stop()


@pytest.fixture
def orthanc(orthanc_session: Orthanc) -> Orthanc:
    """The session's Orthanc, emptied before the test (``.clear()``).

    ``.dicom_port``, ``.http_port``, ``.aet == "ORTHANC"``, ``.instances()``,
    ``.instance_file(id)``, ``.instance_tags(id)``, ``.sop_instance_uids()``, ``.statistics()``.
    """
    if orthanc_session.proc.poll() is not None:
        pytest.fail(f"Orthanc died:\n{orthanc_session.log()}")
    orthanc_session.clear()
    return orthanc_session


@pytest.fixture
def pynetdicom_scp() -> Iterator[PynetdicomSCPFactory]:
    """Factory: ``pynetdicom_scp(statuses=None, require_called_aet=None, sop_classes=None,
    transfer_syntaxes=DEFAULT_SCP_TRANSFER_SYNTAXES, max_pdu=16382, ssl_context=None,
    identity=None)`` (see :func:`peers.start_pynetdicom_scp`).

    Returns a :class:`peers.PynetdicomSCP` (``.port``, ``.aet``, ``.received``: one
    :class:`peers.ReceivedStore` per C-STORE with ``.sop_instance_uid``, ``.raw``, ``.status``,
    ``.dataset()``). ``statuses(n)`` is the status answered to the n-th C-STORE (0-based).
    """
    started: list[PynetdicomSCP] = []

    def factory(
        *,
        statuses: Callable[[int], int] | None = None,
        require_called_aet: str | None = None,
        sop_classes: Sequence[str] | None = None,
        transfer_syntaxes: Sequence[str] = DEFAULT_SCP_TRANSFER_SYNTAXES,
        max_pdu: int = 16382,
        ssl_context: ssl.SSLContext | None = None,
        identity: IdentityCheck | None = None,
    ) -> PynetdicomSCP:
        scp = start_pynetdicom_scp(
            statuses=statuses,
            require_called_aet=require_called_aet,
            sop_classes=sop_classes,
            transfer_syntaxes=transfer_syntaxes,
            max_pdu=max_pdu,
            ssl_context=ssl_context,
            identity=identity,
        )
        started.append(scp)
        return scp

    yield factory
    for scp in started:
        scp.stop()


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    """Test certificates (PEM files): a CA, a server certificate for 127.0.0.1/localhost, a
    client certificate, and servers that must be refused: expired, wrong host, untrusted CA."""
    return make_certificates(tmp_path_factory.mktemp("certs"))


@pytest.fixture
def study_dir(tmp_path: Path) -> Path:
    """A folder holding a 12-file synthetic study: CT, MR and Secondary Capture (one study and
    series each), alternating Explicit and Implicit VR LE, 64 KiB of pixel data per file."""
    # Imported here so the peer fixtures still load while the package itself is broken.
    from fastpush.synthetic import write_study

    folder = tmp_path / "study"
    write_study(folder, count=12)  # 64 KiB of pixels each: several PDUs at any -pdu
    return folder


@pytest.fixture
def study(study_dir: Path) -> list[Path]:
    """The files of :func:`study_dir`, in order (``study[0].parent == study_dir``)."""
    return sorted(study_dir.glob("*.dcm"))
