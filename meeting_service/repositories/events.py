"""SQL for the event log and the transcript (the latest version of each segment)."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from dataclasses import dataclass

import asyncpg

# The one NOTIFY channel; payloads are small JSON ({"m": id, "s": sequence[, "d": 1]}) and
# listeners read the events themselves, so no payload ever nears NOTIFY's 8000-byte limit.
CHANNEL = "meeting_events"


@dataclass(frozen=True)
class EventRow:
    """One stored event: `payload` is the serialized message of its `kind`."""

    meeting_id: uuid.UUID
    sequence: int
    kind: str
    payload: bytes
    create_time: dt.datetime


@dataclass(frozen=True)
class SegmentRow:
    """The current version of one segment (a serialized `meeting.v1.Segment`)."""

    segment_index: int
    sequence: int
    payload: bytes


class EventsRepository:
    """Reads and writes `events` and `segments`, and announces events."""

    async def append(
        self,
        conn: asyncpg.Connection,
        meeting_id: uuid.UUID,
        sequence: int,
        kind: str,
        payload: bytes,
    ) -> dt.datetime:
        """Stores an event and announces it on commit.

        Args:
            conn: The connection, inside the transaction that allocated `sequence`.
            meeting_id: The meeting.
            sequence: The allocated sequence.
            kind: "segment", "status_change" or "summary".
            payload: The serialized message.

        Returns:
            The event's create time.
        """
        created: dt.datetime = await conn.fetchval(
            "INSERT INTO events (meeting_id, sequence, kind, payload) VALUES ($1, $2, $3, $4)"
            " RETURNING create_time",
            meeting_id,
            sequence,
            kind,
            payload,
        )
        await self.announce(conn, meeting_id, sequence)
        return created

    async def announce(
        self,
        conn: asyncpg.Connection,
        meeting_id: uuid.UUID,
        sequence: int,
        *,
        deleted: bool = False,
    ) -> None:
        """Queues a NOTIFY that PostgreSQL delivers when the transaction commits."""
        message: dict[str, object] = {"m": str(meeting_id), "s": sequence}
        if deleted:
            message["d"] = 1
        await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, json.dumps(message))

    async def upsert_segment(
        self,
        conn: asyncpg.Connection,
        meeting_id: uuid.UUID,
        index: int,
        sequence: int,
        payload: bytes,
    ) -> None:
        """Stores a segment version, replacing any earlier version with the same index."""
        await conn.execute(
            """
            INSERT INTO segments (meeting_id, segment_index, sequence, payload)
            VALUES ($1, $2, $3, $4)
            ON CONFLICT (meeting_id, segment_index)
            DO UPDATE SET sequence = EXCLUDED.sequence, payload = EXCLUDED.payload
            """,
            meeting_id,
            index,
            sequence,
            payload,
        )

    async def list_after(
        self,
        conn: asyncpg.Connection | asyncpg.Pool,
        meeting_id: uuid.UUID,
        after: int,
        limit: int,
    ) -> list[EventRow]:
        """Reads events with a sequence above `after`, oldest first."""
        records = await conn.fetch(
            "SELECT meeting_id, sequence, kind, payload, create_time FROM events"
            " WHERE meeting_id = $1 AND sequence > $2 ORDER BY sequence LIMIT $3",
            meeting_id,
            after,
            limit,
        )
        return [EventRow(**dict(r.items())) for r in records]

    async def segments(
        self, conn: asyncpg.Connection | asyncpg.Pool, meeting_id: uuid.UUID
    ) -> list[SegmentRow]:
        """Reads the current version of every segment, by index."""
        records = await conn.fetch(
            "SELECT segment_index, sequence, payload FROM segments WHERE meeting_id = $1"
            " ORDER BY segment_index",
            meeting_id,
        )
        return [SegmentRow(**dict(r.items())) for r in records]
