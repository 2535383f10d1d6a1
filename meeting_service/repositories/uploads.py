"""SQL for recordings: the upload's progress and its bytes, stored in chunks.

The bytes live in `audio_chunks`, one row per received chunk keyed by its byte offset, so
an upload of any size is written and read back a chunk at a time and never held whole.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg


@dataclass(frozen=True)
class UploadRow:
    """The progress of a meeting's recording."""

    meeting_id: uuid.UUID
    content_type: str
    total_size: int | None
    stored_size: int
    sha256: str
    sealed: bool
    complete: bool


_COLUMNS = "meeting_id, content_type, total_size, stored_size, sha256, sealed, complete"


class UploadsRepository:
    """Reads and writes `uploads` and `audio_chunks`."""

    async def get(
        self,
        conn: asyncpg.Connection | asyncpg.Pool,
        meeting_id: uuid.UUID,
        *,
        for_update: bool = False,
    ) -> UploadRow | None:
        """Reads the upload of a meeting (None before the first upload started)."""
        lock = " FOR UPDATE" if for_update else ""
        record = await conn.fetchrow(
            f"SELECT {_COLUMNS} FROM uploads WHERE meeting_id = $1{lock}",  # noqa: S608
            meeting_id,
        )
        return None if record is None else UploadRow(**dict(record.items()))

    async def begin(
        self,
        conn: asyncpg.Connection,
        meeting_id: uuid.UUID,
        *,
        content_type: str,
        total_size: int | None,
        sha256: str,
    ) -> UploadRow:
        """Starts an upload, or updates the declared facts of one being resumed.

        A resumed stream keeps the earlier declarations it does not repeat.
        """
        record = await conn.fetchrow(
            f"""
            INSERT INTO uploads (meeting_id, content_type, total_size, sha256)
            VALUES ($1, $2, $3, $4)
            ON CONFLICT (meeting_id) DO UPDATE SET
                content_type = EXCLUDED.content_type,
                total_size = COALESCE(EXCLUDED.total_size, uploads.total_size),
                sha256 = CASE WHEN EXCLUDED.sha256 = '' THEN uploads.sha256
                              ELSE EXCLUDED.sha256 END,
                update_time = clock_timestamp()
            RETURNING {_COLUMNS}
            """,  # noqa: S608
            meeting_id,
            content_type,
            total_size,
            sha256,
        )
        assert record is not None
        return UploadRow(**dict(record.items()))

    async def append_chunk(
        self, conn: asyncpg.Connection, meeting_id: uuid.UUID, offset: int, data: bytes
    ) -> int | None:
        """Stores a chunk at `offset` if `offset` is still the stored size.

        Args:
            conn: The connection (inside a transaction).
            meeting_id: The meeting.
            offset: Where the chunk starts.
            data: The bytes.

        Returns:
            The new stored size, or None when another writer moved the size (nothing
            was stored).
        """
        size: int | None = await conn.fetchval(
            """
            UPDATE uploads SET stored_size = stored_size + $3, update_time = clock_timestamp()
            WHERE meeting_id = $1 AND stored_size = $2 AND NOT sealed
            RETURNING stored_size
            """,
            meeting_id,
            offset,
            len(data),
        )
        if size is None:
            return None
        await conn.execute(
            "INSERT INTO audio_chunks (meeting_id, byte_offset, data) VALUES ($1, $2, $3)",
            meeting_id,
            offset,
            data,
        )
        return size

    async def seal(self, conn: asyncpg.Connection, meeting_id: uuid.UUID) -> None:
        """Stops accepting chunks: the recording is being verified."""
        await conn.execute("UPDATE uploads SET sealed = true WHERE meeting_id = $1", meeting_id)

    async def unseal(self, conn: asyncpg.Connection, meeting_id: uuid.UUID) -> None:
        """Accepts chunks again (verification could not finish)."""
        await conn.execute("UPDATE uploads SET sealed = false WHERE meeting_id = $1", meeting_id)

    async def mark_complete(self, conn: asyncpg.Connection, meeting_id: uuid.UUID) -> None:
        """Marks the recording complete (sealed for good)."""
        await conn.execute(
            "UPDATE uploads SET sealed = true, complete = true, update_time = clock_timestamp()"
            " WHERE meeting_id = $1",
            meeting_id,
        )

    async def discard(self, conn: asyncpg.Connection, meeting_id: uuid.UUID) -> None:
        """Deletes the recording and its progress, as if no upload had started."""
        await conn.execute("DELETE FROM audio_chunks WHERE meeting_id = $1", meeting_id)
        await conn.execute("DELETE FROM uploads WHERE meeting_id = $1", meeting_id)

    async def iter_chunks(self, pool: asyncpg.Pool, meeting_id: uuid.UUID) -> AsyncIterator[bytes]:
        """Reads the stored recording back in order, one chunk in memory at a time.

        Args:
            pool: The pool (one short query per chunk, so no connection is held between).
            meeting_id: The meeting.

        Yields:
            The chunks, in byte order.
        """
        offset = 0
        while True:
            record = await pool.fetchrow(
                "SELECT byte_offset, data FROM audio_chunks"
                " WHERE meeting_id = $1 AND byte_offset >= $2 ORDER BY byte_offset LIMIT 1",
                meeting_id,
                offset,
            )
            if record is None:
                return
            data: bytes = record["data"]
            offset = record["byte_offset"] + len(data)
            yield data
