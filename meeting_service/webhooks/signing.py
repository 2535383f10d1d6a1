"""Standard Webhooks signing secrets: made, signed with, and sealed at rest.

A secret is `whsec_` and the base64 of 32 random bytes; those bytes are the HMAC-SHA256 key
of every signature, so the server must keep them (a hash would not do). With a sealing key
configured they are stored AES-GCM-sealed, bound to their endpoint's id; without one they
are stored as they are (docs/webhooks.md).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import uuid

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

SECRET_PREFIX = "whsec_"  # noqa: S105 (the scheme's prefix, not a secret)
_KEY_BYTES = 32
_NONCE_BYTES = 12


class SecretUnavailable(Exception):
    """A sealed secret cannot be opened: no sealing key, or not the key that sealed it."""


def new_secret() -> bytes:
    """Returns the key bytes of a new signing secret."""
    return os.urandom(_KEY_BYTES)


def secret_text(key: bytes) -> str:
    """Returns the secret as its owner sees it: `whsec_<base64>`."""
    return SECRET_PREFIX + base64.b64encode(key).decode()


def signature(key: bytes, message_id: str, timestamp: int, body: bytes) -> str:
    """Returns the `webhook-signature` header of a message.

    Args:
        key: The secret's key bytes.
        message_id: The `webhook-id` header.
        timestamp: The `webhook-timestamp` header (Unix seconds).
        body: The exact body sent.

    Returns:
        `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`.
    """
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


class SecretBox:
    """Seals secrets for storage with the configured key, or stores them plain without one.

    Args:
        sealing_key: 32 bytes, or None to store secrets as they are.
    """

    def __init__(self, sealing_key: bytes | None) -> None:
        if sealing_key is not None and len(sealing_key) != _KEY_BYTES:
            raise ValueError(f"a webhook sealing key has {_KEY_BYTES} bytes")
        self._aead = AESGCM(sealing_key) if sealing_key is not None else None

    def seal(self, endpoint_id: uuid.UUID, key: bytes) -> tuple[bytes, bool]:
        """Returns what to store for an endpoint's secret, and whether it is sealed."""
        if self._aead is None:
            return key, False
        nonce = os.urandom(_NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, key, endpoint_id.bytes), True

    def open(self, endpoint_id: uuid.UUID, stored: bytes, sealed: bool) -> bytes:
        """Returns the key bytes of a stored secret.

        Raises:
            SecretUnavailable: It is sealed and this box cannot open it.
        """
        if not sealed:
            return stored
        if self._aead is None:
            raise SecretUnavailable("the secret is sealed and no sealing key is configured")
        try:
            return self._aead.decrypt(
                stored[:_NONCE_BYTES], stored[_NONCE_BYTES:], endpoint_id.bytes
            )
        except InvalidTag as error:
            raise SecretUnavailable("the secret was sealed with another key") from error
