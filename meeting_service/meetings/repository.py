"""SQL for meetings: rows, ownership-scoped reads, keyset pages."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg

_COLUMNS = """
    m.id, m.owner, m.title, m.language, m.expected_speakers, m.status, m.failure_reason,
    m.duration_us, m.content_type, m.last_sequence, m.summary, m.create_time, m.update_time,
    m.detected_language, m.vocabulary,
    COALESCE(u.stored_size, 0) AS audio_size_bytes
"""
_FROM = "meetings m LEFT JOIN uploads u ON u.meeting_id = m.id"

MUTABLE_FIELDS = frozenset({"title", "language", "expected_speakers", "vocabulary"})


@dataclass(frozen=True)
class MeetingRow:
    """A meeting as stored (status is a `meeting.v1.MeetingStatus` value)."""

    id: uuid.UUID
    owner: str
    title: str
    language: str
    expected_speakers: int
    status: int
    failure_reason: str
    duration_us: int | None
    content_type: str
    last_sequence: int
    summary: bytes | None
    create_time: dt.datetime
    update_time: dt.datetime
    detected_language: str
    vocabulary: list[str]
    audio_size_bytes: int

    @classmethod
    def from_record(cls, record: asyncpg.Record) -> MeetingRow:
        """Builds the row from a record selected with this module's columns."""
        return cls(**dict(record.items()))


class MeetingsRepository:
    """Reads and writes the `meetings` table."""

    async def insert(
        self,
        conn: asyncpg.Connection,
        *,
        owner: str,
        request_id: str | None,
        title: str,
        language: str,
        expected_speakers: int,
        vocabulary: list[str],
        status: int,
    ) -> tuple[MeetingRow, bool]:
        """Inserts a meeting, or finds the one created earlier with the same request id.

        Args:
            conn: The connection (inside a transaction).
            owner: The owner.
            request_id: Idempotency key, unique per owner; None for none.
            title: The title.
            language: The language.
            expected_speakers: Number of speakers, 0 for unknown.
            vocabulary: Words for the recognizer.
            status: The initial status.

        Returns:
            The meeting and whether this call created it.
        """
        new_id = await conn.fetchval(
            """
            INSERT INTO meetings (id, owner, request_id, title, language, expected_speakers,
                                  status, vocabulary)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
            ON CONFLICT (owner, request_id) WHERE request_id IS NOT NULL DO NOTHING
            RETURNING id
            """,
            uuid.uuid4(),
            owner,
            request_id,
            title,
            language,
            expected_speakers,
            status,
            vocabulary,
        )
        if new_id is not None:
            row = await self.get(conn, new_id)
            assert row is not None
            return row, True
        record = await conn.fetchrow(
            f"SELECT {_COLUMNS} FROM {_FROM} WHERE m.owner = $1 AND m.request_id = $2",  # noqa: S608
            owner,
            request_id,
        )
        assert record is not None, "the conflicting row is visible after ON CONFLICT"
        return MeetingRow.from_record(record), False

    async def get(
        self,
        conn: asyncpg.Connection | asyncpg.Pool,
        meeting_id: uuid.UUID,
        *,
        owner: str | None = None,
        for_update: bool = False,
    ) -> MeetingRow | None:
        """Reads a meeting.

        Args:
            conn: The connection or pool.
            meeting_id: The meeting.
            owner: When given, a meeting of another owner reads as missing.
            for_update: Lock the row until the transaction ends, as `UPDATE meetings`
                does (FOR NO KEY UPDATE): writers of the meeting queue behind it, while
                rows that only reference it (an audio chunk, an event) can still be
                inserted, even by another connection of the lock holder's own flow.

        Returns:
            The meeting, or None.
        """
        lock = " FOR NO KEY UPDATE OF m" if for_update else ""
        record = await conn.fetchrow(
            f"SELECT {_COLUMNS} FROM {_FROM} WHERE m.id = $1 "  # noqa: S608
            f"AND ($2::text IS NULL OR m.owner = $2){lock}",
            meeting_id,
            owner,
        )
        return None if record is None else MeetingRow.from_record(record)

    async def list_page(
        self,
        conn: asyncpg.Connection | asyncpg.Pool,
        *,
        owner: str,
        limit: int,
        before: tuple[dt.datetime, uuid.UUID] | None,
    ) -> list[MeetingRow]:
        """Lists an owner's meetings, newest first, strictly after a keyset position.

        Args:
            conn: The connection or pool.
            owner: The owner.
            limit: Most rows to return.
            before: (create_time, id) of the last row of the previous page, or None.

        Returns:
            The rows.
        """
        records = await conn.fetch(
            f"""
            SELECT {_COLUMNS} FROM {_FROM}
            WHERE m.owner = $1
              AND ($2::timestamptz IS NULL OR (m.create_time, m.id) < ($2, $3::uuid))
            ORDER BY m.create_time DESC, m.id DESC
            LIMIT $4
            """,  # noqa: S608
            owner,
            before[0] if before else None,
            before[1] if before else None,
            limit,
        )
        return [MeetingRow.from_record(r) for r in records]

    async def update_fields(
        self, conn: asyncpg.Connection, meeting_id: uuid.UUID, fields: dict[str, Any]
    ) -> None:
        """Sets mutable fields (names from `MUTABLE_FIELDS` only).

        Args:
            conn: The connection.
            meeting_id: The meeting.
            fields: Column name to new value.
        """
        names = sorted(fields)
        if not set(names) <= MUTABLE_FIELDS:
            raise ValueError(f"not mutable: {set(names) - MUTABLE_FIELDS}")
        assignments = ", ".join(f"{name} = ${i}" for i, name in enumerate(names, start=2))
        await conn.execute(
            f"UPDATE meetings SET {assignments}, update_time = clock_timestamp() WHERE id = $1",  # noqa: S608
            meeting_id,
            *(fields[n] for n in names),
        )

    async def set_status(
        self, conn: asyncpg.Connection, meeting_id: uuid.UUID, status: int, failure_reason: str
    ) -> None:
        """Sets the status and its reason."""
        await conn.execute(
            "UPDATE meetings SET status = $2, failure_reason = $3, update_time = clock_timestamp()"
            " WHERE id = $1",
            meeting_id,
            status,
            failure_reason,
        )

    async def set_recording(
        self,
        conn: asyncpg.Connection,
        meeting_id: uuid.UUID,
        *,
        duration_us: int | None,
        content_type: str,
    ) -> None:
        """Records what is known about the stored recording."""
        await conn.execute(
            "UPDATE meetings SET duration_us = $2, content_type = $3,"
            " update_time = clock_timestamp() WHERE id = $1",
            meeting_id,
            duration_us,
            content_type,
        )

    async def set_detected_language(
        self, conn: asyncpg.Connection | asyncpg.Pool, meeting_id: uuid.UUID, language: str
    ) -> None:
        """Records the language the recording was heard in."""
        await conn.execute(
            "UPDATE meetings SET detected_language = $2, update_time = clock_timestamp()"
            " WHERE id = $1 AND detected_language <> $2",
            meeting_id,
            language,
        )

    async def set_summary(
        self, conn: asyncpg.Connection, meeting_id: uuid.UUID, summary: bytes
    ) -> None:
        """Stores the serialized `meeting.v1.Summary`."""
        await conn.execute(
            "UPDATE meetings SET summary = $2, update_time = clock_timestamp() WHERE id = $1",
            meeting_id,
            summary,
        )

    async def delete(self, conn: asyncpg.Connection, meeting_id: uuid.UUID) -> None:
        """Deletes a meeting; its upload, audio, events, segments and jobs cascade."""
        await conn.execute("DELETE FROM meetings WHERE id = $1", meeting_id)
