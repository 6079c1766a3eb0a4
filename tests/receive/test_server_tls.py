"""StorageServer over DICOM TLS (rustls, server side): DCMTK storescu +tls and fastpush (both
engines) store byte-exact; with a client CA, a client without a certificate is refused and one
with a certificate from that CA gets through."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

import fastpush
from fastpush import Outcome, TLSError, TLSOptions
from fastpush.receive.server import StorageServer

from support.certs import Certificates
from support.peers import dataset_bytes

pytestmark = pytest.mark.interop


@pytest.fixture
def tls_server(tmp_path: Path, certs: Certificates) -> Iterator[StorageServer]:
    options = TLSOptions(cert_file=str(certs.server.cert), key_file=str(certs.server.key))
    with StorageServer("127.0.0.1", 0, directory=tmp_path / "in", tls=options) as server:
        yield server


def _stored(server: StorageServer, study: list[Path]) -> None:
    assert server.storage is not None
    stored = {p.name.split(".", 1)[1]: p for p in server.storage.directory.iterdir()}
    assert len(stored) == len(study)
    assert sorted(dataset_bytes(p) for p in stored.values()) == sorted(
        dataset_bytes(p) for p in study
    )


@pytest.mark.parametrize("engine", ["rust", "python"])
def test_fastpush_over_tls(
    tls_server: StorageServer, certs: Certificates, study: list[Path], engine: str
) -> None:
    results = fastpush.push(
        study,
        "127.0.0.1",
        tls_server.port,
        engine=engine,
        tls=TLSOptions(ca_file=str(certs.ca)),
        max_pdu=0,
    )
    assert [r.outcome for r in results] == [Outcome.STORED] * len(study)
    _stored(tls_server, study)


def test_storescu_over_tls(
    tls_server: StorageServer, certs: Certificates, study: list[Path]
) -> None:
    # +tla: no client certificate; +cf: trust the CA.
    options = ["+tla", "+cf", str(certs.ca), "-aec", "ANY"]
    done = subprocess.run(
        ["/usr/bin/storescu", *options, "127.0.0.1", str(tls_server.port), *map(str, study)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert tls_server.stats.files == len(study)


def test_client_certificates_required(
    tmp_path: Path, certs: Certificates, study: list[Path]
) -> None:
    options = TLSOptions(
        ca_file=str(certs.ca), cert_file=str(certs.server.cert), key_file=str(certs.server.key)
    )
    with StorageServer("127.0.0.1", 0, directory=tmp_path / "in", tls=options) as server:
        with pytest.raises(TLSError):
            fastpush.echo("127.0.0.1", server.port, tls=TLSOptions(ca_file=str(certs.ca)))
        client = TLSOptions(
            ca_file=str(certs.ca), cert_file=str(certs.client.cert), key_file=str(certs.client.key)
        )
        assert fastpush.echo("127.0.0.1", server.port, tls=client) == 0
        results = fastpush.push(study[:2], "127.0.0.1", server.port, tls=client)
        assert [r.outcome for r in results] == [Outcome.STORED] * 2


def test_bad_server_certificate_files(tmp_path: Path, certs: Certificates) -> None:
    with pytest.raises(TLSError, match="key"):
        StorageServer(
            "127.0.0.1",
            0,
            tls=TLSOptions(cert_file=str(certs.server.cert), key_file=str(tmp_path / "missing")),
        )
