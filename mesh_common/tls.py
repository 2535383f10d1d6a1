"""Certificates for mTLS: a small CA, service certificates, and gRPC credentials.

`meeting-mesh certs` and the dev mesh keep their files in `<data dir>/certs`; tests create
theirs per run. Keys are EC P-256: small, fast to generate, accepted by gRPC's BoringSSL.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEFAULT_SERVICES: tuple[str, ...] = ("gpu-node", "gpu-proxy", "meeting-service", "gateway")
_VALIDITY = dt.timedelta(days=825)


@dataclass(frozen=True)
class KeyPair:
    """A certificate and its private key, both PEM files."""

    cert: Path
    key: Path

    def read(self) -> tuple[bytes, bytes]:
        """Returns (private key PEM, certificate PEM), the order gRPC wants."""
        return self.key.read_bytes(), self.cert.read_bytes()


def _write_private(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    os.chmod(path, 0o600)


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "meeting-mesh"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def create_ca(directory: Path, common_name: str = "meeting-mesh dev CA") -> KeyPair:
    """Creates a self-signed CA in a directory (`ca.pem`, `ca.key`).

    Args:
        directory: Where to write; created when missing.
        common_name: The CA's subject CN (tests make a second, untrusted CA).

    Returns:
        The CA's files.
    """
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    pair = KeyPair(directory / "ca.pem", directory / "ca.key")
    pair.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_private(pair.key, _key_pem(key))
    return pair


def issue_certificate(
    ca: KeyPair,
    directory: Path,
    name: str,
    hosts: Iterable[str] = ("localhost", "127.0.0.1", "::1"),
) -> KeyPair:
    """Issues a certificate usable both as TLS server and TLS client.

    Args:
        ca: The signing CA.
        directory: Where to write `<name>.pem` and `<name>.key`.
        name: Common name, also the first DNS subject alternative name.
        hosts: Further DNS names and IP addresses the certificate is valid for.

    Returns:
        The certificate's files.
    """
    ca_cert = x509.load_pem_x509_certificate(ca.cert.read_bytes())
    ca_key = serialization.load_pem_private_key(ca.key.read_bytes(), password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    alt_names: list[x509.GeneralName] = [x509.DNSName(name)]
    for host in hosts:
        try:
            alt_names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            alt_names.append(x509.DNSName(host))
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    pair = KeyPair(directory / f"{name}.pem", directory / f"{name}.key")
    pair.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_private(pair.key, _key_pem(key))
    return pair


def ensure_certificates(
    directory: Path, services: Iterable[str] = DEFAULT_SERVICES
) -> dict[str, KeyPair]:
    """Creates the CA and service certificates unless they already exist.

    Args:
        directory: The certificate directory (`<data dir>/certs`).
        services: Service names to issue certificates for.

    Returns:
        Every service's files, plus the CA's under the key "ca".
    """
    ca = KeyPair(directory / "ca.pem", directory / "ca.key")
    if not (ca.cert.exists() and ca.key.exists()):
        ca = create_ca(directory)
    pairs = {"ca": ca}
    for service in services:
        pair = KeyPair(directory / f"{service}.pem", directory / f"{service}.key")
        if not (pair.cert.exists() and pair.key.exists()):
            pair = issue_certificate(ca, directory, service)
        pairs[service] = pair
    return pairs


def server_credentials(identity: KeyPair, client_ca: Path) -> grpc.ServerCredentials:
    """Server credentials that require a client certificate signed by `client_ca`.

    Certificates are re-read on new handshakes, so renewing the files needs no restart.

    Args:
        identity: The server's certificate and key.
        client_ca: The CA that client certificates must chain to.

    Returns:
        Credentials for `server.add_secure_port`.
    """

    def fetch() -> grpc.ServerCertificateConfiguration:
        return grpc.ssl_server_certificate_configuration(
            [identity.read()], root_certificates=client_ca.read_bytes()
        )

    return grpc.dynamic_ssl_server_credentials(fetch(), fetch, require_client_authentication=True)


def channel_credentials(identity: KeyPair, server_ca: Path) -> grpc.ChannelCredentials:
    """Client credentials presenting `identity` and trusting only `server_ca`.

    Args:
        identity: The client's certificate and key.
        server_ca: The CA the server's certificate must chain to.

    Returns:
        Credentials for `grpc.aio.secure_channel`.
    """
    key, cert = identity.read()
    return grpc.ssl_channel_credentials(
        root_certificates=server_ca.read_bytes(), private_key=key, certificate_chain=cert
    )
