"""Certificates the TLS tests make for themselves (``cryptography``), as PEM files in one folder.

A private CA signs: a server certificate for 127.0.0.1 and localhost, a client certificate, an
expired server certificate and a server certificate for another host name. A second CA, which
nobody trusts, signs a server certificate that is otherwise valid. RSA 2048 throughout: what DCMTK's
BCP 195 profiles and every TLS stack accept.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_LOCAL_NAMES: tuple[x509.GeneralName, ...] = (
    x509.DNSName("localhost"),
    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
)


@dataclass(frozen=True)
class KeyPair:
    """A certificate and its key, as PEM files."""

    cert: Path
    key: Path


@dataclass(frozen=True)
class Certificates:
    ca: Path  # the trusted CA's certificate
    server: KeyPair  # valid for 127.0.0.1 and localhost
    client: KeyPair  # a client certificate from the same CA
    expired: KeyPair  # valid names, but expired yesterday
    wrong_host: KeyPair  # valid, but for host.invalid only
    untrusted: KeyPair  # valid names and dates, signed by a CA nobody trusts
    untrusted_ca: Path


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_key(path: Path, key: rsa.RSAPrivateKey) -> Path:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


def _write_cert(path: Path, cert: x509.Certificate) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def _ca(folder: Path, name: str) -> tuple[x509.Certificate, rsa.RSAPrivateKey, Path]:
    key = _key()
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(_name(name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key, _write_cert(folder / f"{name}.pem", cert)


def _leaf(
    folder: Path,
    stem: str,
    issuer: tuple[x509.Certificate, rsa.RSAPrivateKey],
    names: tuple[x509.GeneralName, ...],
    usage: x509.ObjectIdentifier,
    *,
    expired: bool = False,
) -> KeyPair:
    ca_cert, ca_key = issuer
    key = _key()
    now = dt.datetime.now(dt.timezone.utc)
    start, end = (
        (now - dt.timedelta(days=30), now - dt.timedelta(days=1))
        if expired
        else (now - dt.timedelta(days=1), now + dt.timedelta(days=30))
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(stem))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(names)), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    return KeyPair(
        _write_cert(folder / f"{stem}.pem", cert), _write_key(folder / f"{stem}.key", key)
    )


def make_certificates(folder: Path) -> Certificates:
    folder.mkdir(parents=True, exist_ok=True)
    ca_cert, ca_key, ca_path = _ca(folder, "test-ca")
    other_cert, other_key, other_path = _ca(folder, "untrusted-ca")
    ca = (ca_cert, ca_key)
    server = ExtendedKeyUsageOID.SERVER_AUTH
    return Certificates(
        ca=ca_path,
        server=_leaf(folder, "server", ca, _LOCAL_NAMES, server),
        client=_leaf(folder, "client", ca, (), ExtendedKeyUsageOID.CLIENT_AUTH),
        expired=_leaf(folder, "expired", ca, _LOCAL_NAMES, server, expired=True),
        wrong_host=_leaf(folder, "wrong-host", ca, (x509.DNSName("host.invalid"),), server),
        untrusted=_leaf(folder, "untrusted", (other_cert, other_key), _LOCAL_NAMES, server),
        untrusted_ca=other_path,
    )
