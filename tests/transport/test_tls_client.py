"""DICOM TLS against DCMTK ``storescp +tls`` and a pynetdicom SCP behind Python's ``ssl``, with
certificates the tests make (``certs``): what is stored arrives intact, and an untrusted, expired
or wrong-host certificate, or a missing client certificate, ends the run with a clear message
and exit code 2."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

import fastpush
from fastpush import Outcome
from fastpush.errors import TLSError
from fastpush.transport.tls import TLSOptions

from support.certs import Certificates, KeyPair
from support.peers import PynetdicomSCPFactory, StoreSCP, StoreSCPFactory, dataset_bytes, run_cli

pytestmark = pytest.mark.interop
ENGINES = ["rust", "python"]


def _tls_scp(storescp: StoreSCPFactory, pair: KeyPair, *args: str) -> StoreSCP:
    # storescp's default is --require-peer-cert; -ic accepts clients without a certificate.
    return storescp("+tls", str(pair.key), str(pair.cert), *(args or ("-ic",)))


def _server_context(certs: Certificates, *, require_client: bool = False) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certs.server.cert, certs.server.key)
    if require_client:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(certs.ca)
    return context


@pytest.mark.parametrize("engine", ENGINES)
def test_dcmtk_bit_preserving_over_tls(
    storescp: StoreSCPFactory, certs: Certificates, study: list[Path], engine: str
) -> None:
    scp = _tls_scp(storescp, certs.server, "-ic", "+B")
    events: list[fastpush.Event] = []
    results = fastpush.push(
        study,
        scp.host,
        scp.port,
        called_ae=scp.aet,
        engine=engine,
        tls=TLSOptions(ca_file=str(certs.ca)),
        on_event=events.append,
    )
    assert [r.outcome for r in results] == [Outcome.STORED] * len(study), [
        r.reason for r in results
    ]
    stored = {f.name.split(".", 1)[1]: f for f in scp.stored_files()}
    for result in results:
        assert result.sop_instance_uid is not None and result.path is not None
        assert dataset_bytes(stored[result.sop_instance_uid]) == dataset_bytes(result.path)


@pytest.mark.parametrize("engine", ENGINES)
def test_dcmtk_requiring_a_client_certificate(
    storescp: StoreSCPFactory, certs: Certificates, study_dir: Path, engine: str
) -> None:
    scp = _tls_scp(storescp, certs.server, "--require-peer-cert", "+cf", str(certs.ca))
    common = (scp.host, str(scp.port), str(study_dir), "-aec", scp.aet, "--engine", engine)
    common += ("--tls-ca", str(certs.ca))
    refused = run_cli("store", *common)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "TLS error: the server refused the TLS connection" in refused.stderr
    client = ("--tls-cert", str(certs.client.cert), "--tls-key", str(certs.client.key))
    accepted = run_cli("store", *common, *client)
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
    assert "stored: 12," in accepted.stdout


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize(
    ("server", "expected"),
    [
        ("expired", "the server's certificate has expired"),
        ("wrong_host", "the server's certificate does not match the host name"),
        ("untrusted", "the server's certificate is not signed by a trusted CA"),
    ],
)
def test_refused_server_certificates(
    storescp: StoreSCPFactory,
    certs: Certificates,
    study_dir: Path,
    engine: str,
    server: str,
    expected: str,
) -> None:
    scp = _tls_scp(storescp, getattr(certs, server))
    args = ("store", scp.host, str(scp.port), str(study_dir), "-aec", scp.aet)
    done = run_cli(*args, "--engine", engine, "--tls-ca", str(certs.ca))
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"TLS error: {expected}" in done.stderr
    assert "stored: 0, warning: 0, failed: 12" in done.stdout
    assert not scp.stored_files()


@pytest.mark.parametrize("engine", ENGINES)
def test_no_verify_is_explicit_and_loud(
    storescp: StoreSCPFactory, certs: Certificates, study_dir: Path, engine: str
) -> None:
    scp = _tls_scp(storescp, certs.untrusted)
    args = ("store", scp.host, str(scp.port), str(study_dir), "-aec", scp.aet)
    done = run_cli(*args, "--engine", engine, "--tls-no-verify")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "W: TLS certificate verification is OFF" in done.stderr


@pytest.mark.parametrize("engine", ENGINES)
def test_echo_over_tls_reports_the_protocol(
    storescp: StoreSCPFactory, certs: Certificates, engine: str, caplog: pytest.LogCaptureFixture
) -> None:
    scp = _tls_scp(storescp, certs.server)
    caplog.set_level("INFO", logger="fastpush")
    tls = TLSOptions(ca_file=str(certs.ca))
    assert fastpush.echo(scp.host, scp.port, called_ae=scp.aet, engine=engine, tls=tls) == 0
    assert "TLS connection established (TLSv1.3, " in caplog.text


@pytest.mark.parametrize("engine", ENGINES)
def test_pynetdicom_over_python_ssl(
    pynetdicom_scp: PynetdicomSCPFactory, certs: Certificates, study: list[Path], engine: str
) -> None:
    scp = pynetdicom_scp(ssl_context=_server_context(certs, require_client=True))
    tls = TLSOptions(str(certs.ca), str(certs.client.cert), str(certs.client.key))
    results = fastpush.push(study, scp.host, scp.port, called_ae=scp.aet, engine=engine, tls=tls)
    assert all(r.outcome is Outcome.STORED for r in results), [r.reason for r in results]
    by_uid = {r.sop_instance_uid: r for r in scp.received}
    for result in results:
        assert result.path is not None
        assert by_uid[result.sop_instance_uid].raw == dataset_bytes(result.path)


@pytest.mark.parametrize("engine", ENGINES)
def test_tls_1_2_server_is_accepted(
    pynetdicom_scp: PynetdicomSCPFactory,
    certs: Certificates,
    study: list[Path],
    engine: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    context = _server_context(certs)
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    scp = pynetdicom_scp(ssl_context=context)
    caplog.set_level("INFO", logger="fastpush")
    tls = TLSOptions(ca_file=str(certs.ca))
    (result,) = fastpush.push(study[:1], scp.host, scp.port, engine=engine, tls=tls)
    assert result.outcome is Outcome.STORED, result.reason
    assert "TLS connection established (TLSv1.2, " in caplog.text


@pytest.mark.parametrize("engine", ENGINES)
def test_plain_client_against_tls_server_times_out_cleanly(
    storescp: StoreSCPFactory, certs: Certificates, engine: str
) -> None:
    scp = _tls_scp(storescp, certs.server)
    with pytest.raises((OSError, fastpush.FastpushError)):
        fastpush.echo(scp.host, scp.port, engine=engine, acse_timeout=2)


@pytest.mark.parametrize("engine", ENGINES)
def test_bad_tls_files(certs: Certificates, tmp_path: Path, engine: str) -> None:
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    for options, error in [
        (TLSOptions(ca_file=str(tmp_path / "missing.pem")), TLSError),
        (TLSOptions(ca_file=str(garbage)), TLSError),
        (TLSOptions(str(certs.ca), str(certs.client.cert), str(certs.server.key)), TLSError),
    ]:
        with pytest.raises(error):
            fastpush.echo("127.0.0.1", 9, engine=engine, tls=options)
    with pytest.raises(ValueError, match="both a certificate file and a key file"):
        TLSOptions(cert_file=str(certs.client.cert))
