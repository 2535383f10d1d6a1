"""API keys: created and revoked by their owner, shown once, stored hashed, checked per call.

A key is `mm_live_` and 43 characters of base64url (256 random bits). Only its SHA-256 is
stored: with that much entropy a fast hash is as safe as a slow one, and a lookup by hash
needs no constant-time comparison. Every call made with a key looks it up (one indexed
read, no cache), so a revoked key is refused from its next call on, on every replica; its
last use is written at most once per `LAST_USE_RESOLUTION_S`.
"""

from __future__ import annotations

import hashlib
import secrets

import asyncpg

from contract_errors.meeting import MeetingError, invalid_field
from gen.meeting.v1 import meeting_pb2, meeting_service_pb2
from meeting_service import validation
from meeting_service.api_keys.repository import ApiKeyRow, ApiKeysRepository
from mesh_common.auth import API_KEY_PREFIX, Principal, unauthenticated
from mesh_common.logging import logger
from mesh_common.scopes import grantable_scopes

KEY_PREFIX = f"{API_KEY_PREFIX}live_"
LAST_USE_RESOLUTION_S = 60.0
# The scopes a key may hold: those the contract's methods name.
GRANTABLE = grantable_scopes(meeting_service_pb2.DESCRIPTOR.services_by_name["MeetingService"])
_SECRET_BYTES = 32
_SHOWN_CHARACTERS = len(KEY_PREFIX) + 4


def key_hash(key: str) -> bytes:
    """Returns what is stored of a key: its SHA-256."""
    return hashlib.sha256(key.encode()).digest()


class ApiKeysService:
    """Owner-scoped key management, and the check of a key on each call."""

    def __init__(self, pool: asyncpg.Pool, keys: ApiKeysRepository) -> None:
        self._pool = pool
        self._keys = keys

    async def create(
        self, caller: Principal, name: str, scopes: list[str]
    ) -> tuple[ApiKeyRow, str]:
        """Creates a key for the caller.

        Args:
            caller: Who asks; a caller that is itself a key may grant only its own scopes.
            name: A name for the owner's use.
            scopes: What the key may do.

        Returns:
            The stored key and the key itself (returned this once).

        Raises:
            MeetingError: INVALID_FIELD for a bad name or scope list.
        """
        validation.api_key_name(name)
        wanted = sorted(set(scopes))
        if not wanted:
            raise invalid_field("api_key.scopes", "a key needs at least one scope")
        unknown = [s for s in wanted if s not in GRANTABLE]
        if unknown:
            raise invalid_field(
                "api_key.scopes",
                f"unknown scope {unknown[0]!r}; scopes are {', '.join(sorted(GRANTABLE))}",
            )
        beyond = [s for s in wanted if not caller.allows(s)]
        if beyond:
            raise invalid_field(
                "api_key.scopes", f"a key cannot grant the scope {beyond[0]!r}, which it lacks"
            )
        key = KEY_PREFIX + secrets.token_urlsafe(_SECRET_BYTES)
        row = await self._keys.insert(
            self._pool,
            owner=caller.user,
            name=name,
            scopes=wanted,
            prefix=key[:_SHOWN_CHARACTERS],
            key_hash=key_hash(key),
        )
        logger.bind(api_key_id=str(row.id), scopes=wanted).info("API key created")
        return row, key

    async def list(self, owner: str) -> list[ApiKeyRow]:
        """Lists the owner's keys that are not revoked, newest first."""
        return await self._keys.list_active(self._pool, owner)

    async def revoke(self, owner: str, key_id: str) -> None:
        """Revokes one of the owner's keys.

        Raises:
            MeetingError: INVALID_FIELD for a malformed id; API_KEY_NOT_FOUND when the key
                is not the owner's or already revoked.
        """
        kid = validation.api_key_id(key_id)
        if not await self._keys.revoke(self._pool, owner, kid):
            raise MeetingError(
                meeting_pb2.ERROR_REASON_API_KEY_NOT_FOUND,
                f"API key {kid} not found",
                {"api_key_id": str(kid)},
            )
        logger.bind(api_key_id=str(kid)).info("API key revoked")

    async def verify_api_key(self, key: str) -> Principal:
        """Returns the owner and scopes of an unrevoked key, recording its use.

        Raises:
            MeshError: UNAUTHENTICATED for an unknown or revoked key.
        """
        row = await self._keys.use(self._pool, key_hash(key), LAST_USE_RESOLUTION_S)
        if row is None:
            raise unauthenticated("unknown or revoked API key")
        return Principal(user=row.owner, scopes=frozenset(row.scopes), api_key_id=str(row.id))
