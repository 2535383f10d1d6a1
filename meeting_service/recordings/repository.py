"""SQL for recordings: the upload's progress and its bytes, stored in rows of a page.

The bytes live in `audio_chunks`, rows keyed by their byte offset, so an upload of any size
is written and read back a span at a time and never held whole. A received chunk is stored
as rows of at most `ROW_BYTES`, each filling one 8 KiB heap page, inline and uncompressed
(`STORAGE PLAIN`): PostgreSQL writes those with about a third of the CPU it spends on one
large value cut into 2 KB TOAST tuples, each with its own index entry and log record.
Rows written before that change (one per received chunk, TOASTed) read the same.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import asyncpg

# The most bytes of audio in one row: with its header and key, one row fits an 8 KiB page
# (PostgreSQL's MaxHeapTupleSize is 8160 bytes on the default block size).
ROW_BYTES = 8000
# How much one read of a span returns at most (plus one older, larger row).
SPAN_BYTES = 512 * 1024
# A span is read from at most this many rows (SPAN_BYTES of ROW_BYTES rows, rounded up).
_SPAN_ROWS = -(-SPAN_BYTES // ROW_BYTES)


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
    object_upload_id: str | None = None
    part_etags: tuple[str, ...] = ()
    staged_size: int = 0

    @property
    def stored_whole(self) -> bool:
        """Whether the recording is one finished object in object storage.

        Stored by one PUT, or its multipart upload completed: it takes no more bytes.
        """
        return self.object_upload_id is None and bool(self.part_etags)


_COLUMNS = (
    "meeting_id, content_type, total_size, stored_size, sha256, sealed, complete,"
    " object_upload_id, part_etags, staged_size"
)


def _row(record: asyncpg.Record) -> UploadRow:
    values = dict(record.items())
    values["part_etags"] = tuple(values["part_etags"])
    return UploadRow(**values)


def audio_rows(
    meeting_id: uuid.UUID, offset: int, data: bytes | memoryview
) -> list[tuple[uuid.UUID, int, memoryview]]:
    """`data`, stored from `offset`, as `audio_chunks` rows of at most `ROW_BYTES` (no copy)."""
    view = memoryview(data)
    return [
        (meeting_id, offset + start, view[start : start + ROW_BYTES])
        for start in range(0, len(view), ROW_BYTES)
    ]


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
        return None if record is None else _row(record)

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
        return _row(record)

    async def append_chunk(
        self,
        conn: asyncpg.Connection,
        meeting_id: uuid.UUID,
        offset: int,
        data: bytes,
        *,
        wait_for_disk: bool = True,
        staged: bool = False,
    ) -> int | None:
        """Stores a chunk at `offset` if `offset` is still the stored size.

        Args:
            conn: The connection (inside a transaction).
            meeting_id: The meeting.
            offset: Where the chunk starts.
            data: The bytes.
            wait_for_disk: False lets the transaction commit without waiting for the disk
                (`synchronous_commit` off): only for bytes nobody has been told about yet,
                which the next durable commit makes durable (PostgreSQL's log is ordered).
            staged: The recording is in object storage and the chunk waits here for the
                part that will hold it (counted in `staged_size` too; `add_part` deletes it).

        Returns:
            The new stored size, or None when another writer moved the size (nothing
            was stored).
        """
        # The commit mode is set by the size's own statement (`set_config(..., true)` is
        # SET LOCAL) rather than by a statement of its own: a round trip less per chunk,
        # and a chunk's round trips are what an upload waits on in meeting_service.
        size: int | None = await conn.fetchval(
            """
            UPDATE uploads SET stored_size = stored_size + $3,
                staged_size = staged_size + CASE WHEN $5 THEN $3 ELSE 0 END,
                update_time = clock_timestamp()
            WHERE meeting_id = $1 AND stored_size = $2 AND NOT sealed
            RETURNING stored_size,
                CASE WHEN $4 THEN NULL ELSE set_config('synchronous_commit', 'off', true) END
            """,
            meeting_id,
            offset,
            len(data),
            wait_for_disk,
            staged,
        )
        if size is None:
            return None
        await self.write_rows(conn, meeting_id, offset, data)
        return size

    async def rewrite_start(
        self, conn: asyncpg.Connection | asyncpg.Pool, meeting_id: uuid.UUID, data: bytes
    ) -> None:
        """Replaces the recording's first bytes with as many new ones (a file header)."""
        await conn.execute(
            "UPDATE audio_chunks SET data = overlay(data PLACING $2::bytea FROM 1)"
            " WHERE meeting_id = $1 AND byte_offset = 0 AND length(data) >= length($2::bytea)",
            meeting_id,
            data,
        )

    async def add_part(
        self,
        conn: asyncpg.Connection | asyncpg.Pool,
        meeting_id: uuid.UUID,
        offset: int,
        size: int,
        etag: str,
        *,
        last: bool = False,
    ) -> int | None:
        """Counts an object-storage part of `size` bytes stored from `offset` (part N+1).

        The part holds the staged bytes, if any (`append_chunk(staged=True)`): they are
        in the parts now, and their rows are deleted in the same statement.

        Args:
            conn: A connection or the pool.
            meeting_id: The meeting.
            offset: Where the part starts: the size of the parts stored before it.
            size: Its bytes.
            etag: Its ETag ("" for a recording stored with one PUT).
            last: The recording's last part, counted by its completion: the recording
                may be sealed already (by the caller completing it).

        Returns:
            The new stored size, or None when another writer moved the size (nothing
            was counted).
        """
        stored: int | None = await conn.fetchval(
            """
            WITH counted AS (
                UPDATE uploads SET stored_size = $2 + $3,
                                   staged_size = 0,
                                   part_etags = array_append(part_etags, $4),
                                   update_time = clock_timestamp()
                WHERE meeting_id = $1 AND stored_size - staged_size = $2 AND (NOT sealed OR $5)
                RETURNING stored_size
            ), unstaged AS (
                DELETE FROM audio_chunks
                WHERE meeting_id = $1 AND EXISTS (SELECT FROM counted)
            )
            SELECT stored_size FROM counted
            """,
            meeting_id,
            offset,
            size,
            etag,
            last,
        )
        return stored

    async def read_staged(
        self, conn: asyncpg.Connection | asyncpg.Pool, meeting_id: uuid.UUID, offset: int
    ) -> bytes:
        """The bytes staged from `offset` (where the object-storage parts end), in order."""
        data: bytes | None = await conn.fetchval(
            "SELECT string_agg(data, ''::bytea ORDER BY byte_offset) FROM audio_chunks"
            " WHERE meeting_id = $1 AND byte_offset >= $2",
            meeting_id,
            offset,
        )
        return data or b""

    async def write_rows(
        self,
        conn: asyncpg.Connection | asyncpg.Pool,
        meeting_id: uuid.UUID,
        offset: int,
        data: bytes,
    ) -> None:
        """Writes `data` as `audio_chunks` rows from `offset`; the size is the caller's.

        `append_chunk` counts the bytes in the same transaction; bytes an older version
        staged as an object-storage piece are counted already.
        """
        await conn.copy_records_to_table(
            "audio_chunks",
            columns=("meeting_id", "byte_offset", "data"),
            records=audio_rows(meeting_id, offset, data),
        )

    async def replace_part(
        self, conn: asyncpg.Connection | asyncpg.Pool, meeting_id: uuid.UUID, number: int, etag: str
    ) -> None:
        """Records the ETag of a part stored again with the same size (1-based `number`)."""
        await conn.execute(
            "UPDATE uploads SET part_etags[$2] = $3 WHERE meeting_id = $1", meeting_id, number, etag
        )

    async def open_object_upload(
        self, conn: asyncpg.Connection | asyncpg.Pool, meeting_id: uuid.UUID, upload_id: str
    ) -> bool:
        """Records the multipart upload that receives the recording's parts.

        Returns:
            False when the recording already has one (or is gone): `upload_id` is not kept.
        """
        status: str = await conn.execute(
            "UPDATE uploads SET object_upload_id = $2, update_time = clock_timestamp()"
            " WHERE meeting_id = $1 AND object_upload_id IS NULL AND stored_size = staged_size",
            meeting_id,
            upload_id,
        )
        return status == "UPDATE 1"

    async def close_object_upload(
        self, conn: asyncpg.Connection | asyncpg.Pool, meeting_id: uuid.UUID
    ) -> None:
        """Records that the multipart upload became the recording's object."""
        await conn.execute(
            "UPDATE uploads SET object_upload_id = NULL WHERE meeting_id = $1", meeting_id
        )

    async def object_upload_idle_s(
        self, conn: asyncpg.Connection | asyncpg.Pool, upload_id: str
    ) -> float | None:
        """Seconds since the recording receiving a multipart upload last changed.

        Returns:
            None when no recording holds `upload_id` (its meeting was deleted, or the
            upload was never recorded).
        """
        idle: float | None = await conn.fetchval(
            "SELECT extract(epoch FROM clock_timestamp() - update_time)::float8"
            " FROM uploads WHERE object_upload_id = $1",
            upload_id,
        )
        return idle

    async def forget_object_upload(
        self, conn: asyncpg.Connection | asyncpg.Pool, upload_id: str
    ) -> None:
        """Resets the progress of a recording whose multipart upload was aborted.

        Its next stream starts again at offset 0; its staged rows go too.
        """
        await conn.execute(
            """
            WITH reset AS (
                UPDATE uploads SET stored_size = 0, staged_size = 0, part_etags = '{}',
                    object_upload_id = NULL, update_time = clock_timestamp()
                WHERE object_upload_id = $1 AND NOT sealed
                RETURNING meeting_id
            )
            DELETE FROM audio_chunks WHERE meeting_id IN (SELECT meeting_id FROM reset)
            """,
            upload_id,
        )

    async def set_total_size(
        self, conn: asyncpg.Connection | asyncpg.Pool, meeting_id: uuid.UUID, total_size: int
    ) -> None:
        """Records the size of a recording whose stream ended (a live one, about to complete)."""
        await conn.execute(
            "UPDATE uploads SET total_size = $2 WHERE meeting_id = $1", meeting_id, total_size
        )

    async def touch(self, conn: asyncpg.Connection, meeting_id: uuid.UUID) -> None:
        """Records that a stream ended (`update_time`), in a commit of its own."""
        await conn.execute(
            "UPDATE uploads SET update_time = clock_timestamp() WHERE meeting_id = $1", meeting_id
        )

    async def seal(
        self, conn: asyncpg.Connection, meeting_id: uuid.UUID, total_size: int | None = None
    ) -> None:
        """Stops accepting chunks: the recording is being completed and verified.

        Args:
            conn: The connection.
            meeting_id: The meeting.
            total_size: The recording's size, once its stream has ended (None keeps the
                declared one): whoever finishes the completion knows whether every byte
                was counted.
        """
        await conn.execute(
            "UPDATE uploads SET sealed = true, total_size = COALESCE($2, total_size)"
            " WHERE meeting_id = $1",
            meeting_id,
            total_size,
        )

    async def hold_seal(self, conn: asyncpg.Connection, meeting_id: uuid.UUID) -> None:
        """Takes the session lock that says the recording's sealer is alive.

        The lock is this connection's until `release_seal`, or until the connection ends
        (its process died): then `seal_abandoned` says so.
        """
        await conn.execute(
            "SELECT pg_advisory_lock(hashtextextended($1::uuid::text, 17))", meeting_id
        )

    async def try_hold_seal(self, conn: asyncpg.Connection, meeting_id: uuid.UUID) -> bool:
        """Takes the lock of `hold_seal` unless a live sealer holds it; says whether it did."""
        taken: bool = await conn.fetchval(
            "SELECT pg_try_advisory_lock(hashtextextended($1::uuid::text, 17))", meeting_id
        )
        return taken

    async def sealed(self, conn: asyncpg.Connection | asyncpg.Pool) -> list[uuid.UUID]:
        """The meetings whose recording is sealed but not complete."""
        records = await conn.fetch("SELECT meeting_id FROM uploads WHERE sealed AND NOT complete")
        return [record["meeting_id"] for record in records]

    async def release_seal(self, conn: asyncpg.Connection, meeting_id: uuid.UUID) -> None:
        """Gives back the lock `hold_seal` took."""
        await conn.execute(
            "SELECT pg_advisory_unlock(hashtextextended($1::uuid::text, 17))", meeting_id
        )

    async def seal_abandoned(self, conn: asyncpg.Connection, meeting_id: uuid.UUID) -> bool:
        """Whether nobody holds the recording's seal lock.

        Call it inside a transaction: the lock is then held until it ends, so no sealer
        starts meanwhile.
        """
        free: bool = await conn.fetchval(
            "SELECT pg_try_advisory_xact_lock(hashtextextended($1::uuid::text, 17))", meeting_id
        )
        return free

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

    async def read_at(
        self, conn: asyncpg.Connection | asyncpg.Pool, meeting_id: uuid.UUID, offset: int
    ) -> tuple[int, bytes] | None:
        """Reads a span of the stored recording: the row holding `offset` and those after it.

        Args:
            conn: A connection or the pool (one query).
            meeting_id: The meeting.
            offset: A byte of the recording.

        Returns:
            (the span's first byte offset, its bytes: about `SPAN_BYTES`, less at the end),
            or None when `offset` is past the stored bytes.
        """
        records = await conn.fetch(
            """
            SELECT byte_offset, data FROM (
                SELECT byte_offset, data,
                       sum(length(data)) OVER (ORDER BY byte_offset) - length(data) AS before
                FROM audio_chunks
                WHERE meeting_id = $1 AND byte_offset >= (
                    SELECT byte_offset FROM audio_chunks
                    WHERE meeting_id = $1 AND byte_offset <= $2
                    ORDER BY byte_offset DESC LIMIT 1)
                ORDER BY byte_offset LIMIT $4
            ) AS span
            WHERE before < $3
            ORDER BY byte_offset
            """,
            meeting_id,
            offset,
            SPAN_BYTES,
            _SPAN_ROWS,
        )
        if not records:
            return None
        start: int = records[0]["byte_offset"]
        data = b"".join(r["data"] for r in records)
        if offset >= start + len(data):
            return None
        return start, data
