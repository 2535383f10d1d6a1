"""Client credentials for the proxy's channels to nodes, re-read when the files change.

gRPC reads channel credentials once, when the channel is made; renewing the files on disk
therefore means making new channels. `CredentialFiles` notices the change (by modification
time and size) and validates the new files before anyone uses them, so a half-written
certificate is never loaded.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from mesh_common.tls import KeyPair


class CredentialError(Exception):
    """The certificate files are missing or unreadable."""


@dataclass(frozen=True)
class _Loaded:
    stamp: tuple[tuple[int, int], ...]
    credentials: grpc.ChannelCredentials


class CredentialFiles:
    """The proxy's certificate, key and trusted CA, as channel credentials.

    Args:
        identity: The certificate presented to nodes, and its key.
        ca: The CA that nodes' certificates must chain to.

    Raises:
        CredentialError: The files cannot be read or are not PEM certificates and keys.
    """

    def __init__(self, identity: KeyPair, ca: Path) -> None:
        self._paths = (identity.cert, identity.key, ca)
        self._loaded = self._load()
        self.generation = 0

    @property
    def credentials(self) -> grpc.ChannelCredentials:
        """The credentials of the current files."""
        return self._loaded.credentials

    def refresh(self) -> bool:
        """Re-reads the files when they changed.

        Returns:
            True when new credentials were loaded (channels should be rebuilt).

        Raises:
            CredentialError: The files changed but are not valid (yet); the old
                credentials stay in use.
        """
        if self._stamp() == self._loaded.stamp:
            return False
        self._loaded = self._load()
        self.generation += 1
        return True

    def _stamp(self) -> tuple[tuple[int, int], ...]:
        try:
            return tuple((os.stat(p).st_mtime_ns, os.stat(p).st_size) for p in self._paths)
        except OSError as error:
            raise CredentialError(f"cannot read certificate files: {error}") from None

    def _load(self) -> _Loaded:
        stamp = self._stamp()
        cert_path, key_path, ca_path = self._paths
        try:
            cert, key, ca = (p.read_bytes() for p in self._paths)
            x509.load_pem_x509_certificates(cert)
            serialization.load_pem_private_key(key, password=None)
            x509.load_pem_x509_certificates(ca)
        except (OSError, ValueError, TypeError) as error:
            raise CredentialError(
                f"invalid certificate files {cert_path}, {key_path}, {ca_path}: {error}"
            ) from None
        credentials = grpc.ssl_channel_credentials(
            root_certificates=ca, private_key=key, certificate_chain=cert
        )
        return _Loaded(stamp, credentials)
