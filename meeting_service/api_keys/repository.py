"""SQL for API keys: rows by owner, and the lookup by hash that every keyed call makes."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

import asyncpg

_COLUMNS = "id, owner, name, scopes, prefix, create_time, last_use_time"


@dataclass(frozen=True)
class ApiKeyRow:
    """An API key as stored (never the key itself)."""

    id: uuid.UUID
    owner: str
    name: str
    scopes: list[str]
    prefix: str
    create_time: dt.datetime
    last_use_time: dt.datetime | None

    @classmethod
    def from_record(cls, record: asyncpg.Record) -> ApiKeyRow:
        """Builds the row from a record selected with this module's columns."""
        return cls(**dict(record.items()))


class ApiKeysRepository:
    """Reads and writes `api_keys`."""

    async def insert(
        self,
        conn: asyncpg.Connection | asyncpg.Pool,
        *,
        owner: str,
        name: str,
        scopes: list[str],
        prefix: str,
        key_hash: bytes,
    ) -> ApiKeyRow:
        """Stores a new key."""
        record = await conn.fetchrow(
            f"INSERT INTO api_keys (id, owner, name, scopes, prefix, key_hash)"  # noqa: S608
            f" VALUES ($1, $2, $3, $4, $5, $6) RETURNING {_COLUMNS}",
            uuid.uuid4(),
            owner,
            name,
            scopes,
            prefix,
            key_hash,
        )
        assert record is not None
        return ApiKeyRow.from_record(record)

    async def list_active(
        self, conn: asyncpg.Connection | asyncpg.Pool, owner: str
    ) -> list[ApiKeyRow]:
        """Reads an owner's keys that are not revoked, newest first."""
        records = await conn.fetch(
            f"SELECT {_COLUMNS} FROM api_keys WHERE owner = $1 AND revoke_time IS NULL"  # noqa: S608
            " ORDER BY create_time DESC",
            owner,
        )
        return [ApiKeyRow.from_record(r) for r in records]

    async def revoke(
        self, conn: asyncpg.Connection | asyncpg.Pool, owner: str, key_id: uuid.UUID
    ) -> bool:
        """Revokes an owner's key; False when it is not theirs or already revoked."""
        revoked: uuid.UUID | None = await conn.fetchval(
            "UPDATE api_keys SET revoke_time = clock_timestamp()"
            " WHERE id = $1 AND owner = $2 AND revoke_time IS NULL RETURNING id",
            key_id,
            owner,
        )
        return revoked is not None

    async def use(
        self, conn: asyncpg.Connection | asyncpg.Pool, key_hash: bytes, resolution_s: float
    ) -> ApiKeyRow | None:
        """Finds the unrevoked key with this hash and records its use.

        The use is written only when the last one recorded is older than `resolution_s`,
        so a busy key costs one write per `resolution_s`, not one per call.

        Returns:
            The key, or None when no unrevoked key has the hash.
        """
        record = await conn.fetchrow(
            f"""
            WITH found AS (
                SELECT {_COLUMNS} FROM api_keys WHERE key_hash = $1 AND revoke_time IS NULL
            ), touched AS (
                UPDATE api_keys SET last_use_time = clock_timestamp()
                FROM found
                WHERE api_keys.id = found.id AND (found.last_use_time IS NULL
                    OR found.last_use_time < clock_timestamp() - make_interval(secs => $2))
            )
            SELECT * FROM found
            """,  # noqa: S608
            key_hash,
            resolution_s,
        )
        return None if record is None else ApiKeyRow.from_record(record)
