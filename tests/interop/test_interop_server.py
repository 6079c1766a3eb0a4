"""StorageServer against real senders: DCMTK storescu, pynetdicom, fastpush (both engines).

Every file the server writes must hold, after its file meta, exactly the dataset bytes that
arrived: the source file's dataset when the sender sends it verbatim, and the same bytes DCMTK
``storescp +B`` writes when the sender converts it.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest

import fastpush
from fastpush import Outcome
from fastpush.dataset.item import Item
from fastpush.dataset.scan import read_file
from fastpush.receive.negotiation import AcceptPolicy
from fastpush.receive.received import Received
from fastpush.receive.server import StorageServer
from fastpush.uids import EXPLICIT_VR_LE

from support.peers import StoreSCPFactory, dataset_bytes, pydicom_test_files

pytestmark = pytest.mark.interop

STORESCU = "/usr/bin/storescu"
ECHOSCU = "/usr/bin/echoscu"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[StorageServer]:
    with StorageServer(
        "127.0.0.1", 0, directory=tmp_path / "received", unique_filenames=True
    ) as running:
        yield running


def _by_uid(folder: Path) -> dict[str, list[Path]]:
    """Stored files by SOP Instance UID, read from their file meta."""
    found: dict[str, list[Path]] = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        found.setdefault(_uid(path), []).append(path)
    return found


def _uid(path: Path) -> str:
    """The SOP Instance UID the scan finds (the dataset's, as sent)."""
    item = read_file(path)
    assert isinstance(item, Item), item
    return item.sop_instance_uid


def _assert_verbatim(server: StorageServer, sources: list[Path], count: int = 0) -> None:
    assert server.storage is not None
    stored = _by_uid(server.storage.directory)
    assert sum(len(v) for v in stored.values()) == (count or len(sources))
    for source in sources:
        item = read_file(source)  # a dataset without file meta is sent too
        assert isinstance(item, Item), item
        sent = source.read_bytes()[item.offset :]
        if len(sent) % 2:
            sent += b"\0"  # senders pad an odd-length (deflated) stream, as PS3.5 A.5 says
        copies = stored[_uid(source)]
        assert any(dataset_bytes(c) == sent for c in copies), source
    assert not list(server.storage.directory.glob(".*.part"))


def _class_and_syntax(path: Path) -> tuple[str, str]:
    item = read_file(path)
    assert isinstance(item, Item), item
    return item.sop_class_uid, item.transfer_syntax


def _storescu(
    server: StorageServer, files: list[Path], *options: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            STORESCU,
            "-aec",
            server.ae_title,
            *options,
            "127.0.0.1",
            str(server.port),
            *map(str, files),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _storescp_stored(scp_files: list[Path]) -> dict[str, Path]:
    # storescp +B names files "<modality>.<SOP Instance UID>"
    return {f.name.split(".", 1)[1]: f for f in scp_files}


@pytest.mark.parametrize(
    "options", [(), ("+sd",), ("-xi",), ("-xb",)], ids=["default", "scan-dir", "xi", "xb"]
)
def test_storescu_same_bytes_as_storescp(
    server: StorageServer, storescp: StoreSCPFactory, study: list[Path], options: tuple[str, ...]
) -> None:
    """storescu converts a file whose syntax the receiver did not accept (its default proposal
    puts Explicit VR LE first; -xi and -xb propose one syntax): both receivers must keep exactly
    the bytes that came, and the files storescu could send as they are stay verbatim."""
    oracle = storescp("+B", "+xb") if "-xb" in options else storescp("+B")
    if "-xb" in options:
        server.accept = AcceptPolicy(syntax="big")
    files = [study[0].parent] if "+sd" in options else study
    done = _storescu(server, files, *options)
    assert done.returncode == 0, done.stderr
    theirs = subprocess.run(
        [STORESCU, "-aec", oracle.aet, *options, oracle.host, str(oracle.port), *map(str, files)],
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert theirs.returncode == 0
    assert server.storage is not None
    ours = _by_uid(server.storage.directory)
    oracle_files = _storescp_stored(oracle.stored_files())
    assert len(ours) == len(oracle_files) == len(study)
    for uid, (path,) in ours.items():
        assert dataset_bytes(path) == dataset_bytes(oracle_files[uid])
        ours_meta = pydicom.dcmread(path, stop_before_pixels=True).file_meta
        theirs_meta = pydicom.dcmread(oracle_files[uid], stop_before_pixels=True).file_meta
        assert ours_meta.TransferSyntaxUID == theirs_meta.TransferSyntaxUID
        assert ours_meta.MediaStorageSOPClassUID == theirs_meta.MediaStorageSOPClassUID
        assert ours_meta.SourceApplicationEntityTitle == "STORESCU"
    if not options:
        explicit = [
            p for p in study if pydicom.dcmread(p).file_meta.TransferSyntaxUID == EXPLICIT_VR_LE
        ]
        assert explicit
        _assert_verbatim(server, explicit, count=len(study))
    assert not list(server.storage.directory.glob(".*.part"))


@pytest.mark.parametrize("engine", ["rust", "python"])
@pytest.mark.parametrize("max_pdu", [4096, 131072, 0])
def test_fastpush_pushes_pydicom_files_verbatim(tmp_path: Path, engine: str, max_pdu: int) -> None:
    """Every syntax pydicom's test files come in (deflated, big endian, compressed) arrives
    as sent: the server accepts the syntax proposed first."""
    files = pydicom_test_files()
    with StorageServer(
        "127.0.0.1",
        0,
        directory=tmp_path / "in",
        unique_filenames=True,
        accept=AcceptPolicy(max_pdu=max_pdu, promiscuous=True),
    ) as server:
        results = fastpush.push(files, server.host, server.port, engine=engine)
    stored = [r for r in results if r.outcome is Outcome.STORED]
    assert len(stored) > 50, [r.reason for r in results if r.outcome is not Outcome.STORED]
    syntaxes = {r.transfer_syntax for r in stored}
    assert {"1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.4.50"} <= syntaxes
    _assert_verbatim(server, [Path(r.path) for r in stored if r.path is not None])
    assert server.stats.files == len(stored)


def test_pynetdicom_sender(server: StorageServer, study: list[Path]) -> None:
    from pynetdicom import AE

    ae = AE(ae_title="PYNETDICOM")
    # One context per (SOP class, syntax) of the files: pynetdicom then sends each as it is.
    for sop_class, syntax in sorted({_class_and_syntax(p) for p in study}):
        ae.add_requested_context(sop_class, [syntax])
    assoc = ae.associate("127.0.0.1", server.port, ae_title=server.ae_title)
    assert assoc.is_established
    try:
        statuses = [assoc.send_c_store(str(path)).Status for path in study]
    finally:
        assoc.release()
    assert statuses == [0] * len(study)
    _assert_verbatim(server, study)


def test_echo_from_echoscu_and_fastpush(server: StorageServer) -> None:
    done = subprocess.run(
        [ECHOSCU, "-aec", server.ae_title, "127.0.0.1", str(server.port)],
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0
    for engine in ("rust", "python"):
        assert fastpush.echo(server.host, server.port, engine=engine) == 0


def test_handler_gets_bytes_in_memory(study: list[Path]) -> None:
    got: list[Received] = []
    with StorageServer("127.0.0.1", 0, ae_title="MEMORY", on_store=got.append) as server:
        results = fastpush.push(study, server.host, server.port, calling_ae="SENDER")
    assert all(r.outcome is Outcome.STORED for r in results)
    by_uid = {r.sop_instance_uid: r for r in got}
    for path in study:
        received = by_uid[_uid(path)]
        assert received.data == dataset_bytes(path)
        assert received.path is None
        assert received.size == len(received.data)
        assert (received.calling_ae, received.called_ae) == ("SENDER", "ANY-SCP")
    assert len({r.association_id for r in got}) == 1
