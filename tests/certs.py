"""Certificates for the TLS tests, made here (the ``cryptography`` package): a CA, a
server certificate it signed and a self-signed one (both for ``localhost`` and
127.0.0.1), a client certificate it signed, and another CA that signed nothing here."""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class Certs:
    ca: str  # the CA's certificate
    server: str  # signed by the CA
    server_key: str
    self_signed: str  # the server's key, self-signed: its own root
    client: str  # signed by the CA
    client_key: str
    other_ca: str  # a CA that signed none of these


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _certificate(
    subject: str, key: ec.EllipticCurvePrivateKey, issuer: str,
    signer: ec.EllipticCurvePrivateKey, *, ca: bool, server: bool,
) -> x509.Certificate:  # fmt: skip
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if server:
        names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(signer, hashes.SHA256())


def make(folder: Path) -> Certs:
    """Write every certificate and key into ``folder`` (PEM)."""

    def write(name: str, data: bytes) -> str:
        path = folder / name
        path.write_bytes(data)
        return str(path)

    def pem(cert: x509.Certificate) -> bytes:
        return cert.public_bytes(serialization.Encoding.PEM)

    def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
        return key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    ca_key, server_key, client_key, other_key = (
        ec.generate_private_key(ec.SECP256R1()) for _ in range(4)
    )
    ca = _certificate("test CA", ca_key, "test CA", ca_key, ca=True, server=False)
    other = _certificate("other CA", other_key, "other CA", other_key, ca=True, server=False)
    server = _certificate("localhost", server_key, "test CA", ca_key, ca=False, server=True)
    alone = _certificate("localhost", server_key, "localhost", server_key, ca=True, server=True)
    client = _certificate("client", client_key, "test CA", ca_key, ca=False, server=False)
    return Certs(
        ca=write("ca.pem", pem(ca)),
        server=write("server.pem", pem(server)),
        server_key=write("server.key", key_pem(server_key)),
        self_signed=write("self-signed.pem", pem(alone)),
        client=write("client.pem", pem(client)),
        client_key=write("client.key", key_pem(client_key)),
        other_ca=write("other-ca.pem", pem(other)),
    )
