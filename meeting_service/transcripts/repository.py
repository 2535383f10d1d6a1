"""SQL for the event log and the transcript (the latest version of each segment).

This module also owns the meeting's event counter, `meetings.last_sequence`: both ways of
allocating sequences (`allocate` for one event, `lock_meetings` + `append_segments` for a
group commit) take the same row lock, so writers of one meeting are serialised and
sequences become visible in order. Each user's feed of meeting changes (`user_events`) is
written by the trigger of migration 0008; `UserEventsRepository` reads it.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import asyncpg

from gen.meeting.v1 import meeting_pb2
from meeting_service.meetings.repository import MeetingRow
from meeting_service.transcripts import notifications


@dataclass(frozen=True)
class EventRow:
    """One stored event: `payload` is the serialized message of its `kind`."""

    meeting_id: uuid.UUID
    sequence: int
    kind: str
    payload: bytes
    create_time: dt.datetime


class SearchFields(NamedTuple):
    """What search reads of one version of a segment, stored beside its payload.

    The names are the `segments` columns they go in; the database derives the text
    search vector from them (migration 0003). A tuple because the writer makes one per
    segment and hands them over column by column.
    """

    text: str
    speaker: str
    start_us: int
    end_us: int
    final: bool
    language: str

    @classmethod
    def of(cls, segment: meeting_pb2.Segment) -> SearchFields:
        """The fields of a segment."""
        return cls(
            segment.text,
            segment.speaker,
            segment.start_offset.ToMicroseconds(),
            segment.end_offset.ToMicroseconds(),
            segment.final,
            segment.language,
        )


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
        await conn.execute(
            "SELECT pg_notify($1, $2)",
            notifications.CHANNEL,
            notifications.encode(meeting_id, sequence, deleted=deleted),
        )

    async def allocate(self, conn: asyncpg.Connection, meeting_id: uuid.UUID) -> int | None:
        """Allocates the meeting's next event sequence; the row stays locked until commit.

        Returns:
            The sequence, or None when the meeting does not exist.
        """
        value: int | None = await conn.fetchval(
            "UPDATE meetings SET last_sequence = last_sequence + 1 WHERE id = $1"
            " RETURNING last_sequence",
            meeting_id,
        )
        return value

    async def last_sequence(
        self, conn: asyncpg.Connection | asyncpg.Pool, meeting_id: uuid.UUID
    ) -> int:
        """Reads the meeting's newest sequence (0 when it has none or does not exist)."""
        value: int | None = await conn.fetchval(
            "SELECT last_sequence FROM meetings WHERE id = $1", meeting_id
        )
        return value or 0

    async def next_segment_index(
        self, conn: asyncpg.Connection | asyncpg.Pool, meeting_id: uuid.UUID
    ) -> int:
        """The index after the meeting's highest stored segment (0 when it has none)."""
        value: int = await conn.fetchval(
            "SELECT COALESCE(MAX(segment_index) + 1, 0) FROM segments WHERE meeting_id = $1",
            meeting_id,
        )
        return value

    async def lock_meetings(
        self, conn: asyncpg.Connection, meeting_ids: Sequence[uuid.UUID]
    ) -> dict[uuid.UUID, int]:
        """Locks meetings' rows in id order and reads their last sequence.

        The lock is the one `UPDATE meetings` takes (FOR NO KEY UPDATE), so it orders
        event writers exactly as `allocate` does, without blocking
        inserts that only reference the meeting; taking the rows in id order means two
        writers of overlapping sets of meetings cannot deadlock.

        Args:
            conn: The connection, inside the writing transaction.
            meeting_ids: The meetings.

        Returns:
            Each existing meeting's `last_sequence`; deleted meetings are absent.
        """
        records = await conn.fetch(
            "SELECT id, last_sequence FROM meetings WHERE id = ANY($1::uuid[])"
            " ORDER BY id FOR NO KEY UPDATE",
            list(meeting_ids),
        )
        return {r["id"]: r["last_sequence"] for r in records}

    async def append_segments(
        self,
        conn: asyncpg.Connection,
        meeting_id: uuid.UUID,
        after: int,
        indexes: Sequence[int],
        payloads: Sequence[bytes],
        fields: Sequence[SearchFields],
    ) -> dt.datetime:
        """Stores a meeting's segment events `after + 1`, `after + 2`, ... in one statement.

        Run it inside the transaction that locked the meeting (`lock_meetings`) and read
        `after` as its last sequence. One statement stores the events, stores the newest
        version of each index in `segments` (a later one in the list replaces an earlier
        one, as two calls would), moves the meeting's `last_sequence`, and queues one
        NOTIFY of the newest sequence (listeners read every event after their cursor).

        Args:
            conn: The connection, in the transaction.
            meeting_id: The meeting.
            after: Its last sequence before these events.
            indexes: Each segment's index, in sequence order.
            payloads: Each serialized `Segment` (with its `segment_id` and `sequence`).
            fields: Each segment's searchable fields, in the same order; a segment
                without a language is stored with its meeting's.

        Returns:
            The events' create time (one clock reading for the whole statement).
        """
        last = after + len(payloads)
        texts, speakers, starts, ends, finals, languages = zip(*fields, strict=True)
        created: dt.datetime = await conn.fetchval(
            """
            WITH input AS (
                SELECT t.p, t.i, $2::bigint + t.o AS s, t.text, t.speaker, t.start_us,
                       t.end_us, t.final, t.language
                FROM unnest(
                    $3::bytea[], $4::integer[], $8::text[], $9::text[], $10::bigint[],
                    $11::bigint[], $12::boolean[], $13::text[]
                ) WITH ORDINALITY AS t(p, i, text, speaker, start_us, end_us, final, language, o)
            ),
            clock AS (SELECT clock_timestamp() AS t),
            stored_events AS (
                INSERT INTO events (meeting_id, sequence, kind, payload, create_time)
                SELECT $1, input.s, 'segment', input.p, clock.t FROM input, clock
            ),
            stored_segments AS (
                INSERT INTO segments (meeting_id, segment_index, sequence, payload, text,
                                      speaker, start_us, end_us, final, language)
                SELECT DISTINCT ON (input.i) $1, input.i, input.s, input.p, input.text,
                       input.speaker, input.start_us, input.end_us, input.final,
                       COALESCE(NULLIF(input.language, ''),
                                (SELECT m.language FROM meetings m WHERE m.id = $1))
                FROM input ORDER BY input.i, input.s DESC
                ON CONFLICT (meeting_id, segment_index)
                DO UPDATE SET sequence = EXCLUDED.sequence, payload = EXCLUDED.payload,
                              text = EXCLUDED.text, speaker = EXCLUDED.speaker,
                              start_us = EXCLUDED.start_us, end_us = EXCLUDED.end_us,
                              final = EXCLUDED.final, language = EXCLUDED.language
            ),
            moved AS (UPDATE meetings SET last_sequence = $5 WHERE id = $1)
            SELECT clock.t FROM clock, pg_notify($6, $7)
            """,
            meeting_id,
            after,
            payloads,
            indexes,
            last,
            notifications.CHANNEL,
            notifications.encode(meeting_id, last),
            texts,
            speakers,
            starts,
            ends,
            finals,
            languages,
        )
        return created

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

    async def status_history(
        self, conn: asyncpg.Connection | asyncpg.Pool, meeting_id: uuid.UUID
    ) -> list[meeting_pb2.MeetingStatus.ValueType]:
        """Reads every status the meeting entered, oldest first."""
        records = await conn.fetch(
            "SELECT payload FROM events WHERE meeting_id = $1 AND kind = 'status_change'"
            " ORDER BY sequence",
            meeting_id,
        )
        return [meeting_pb2.StatusChange.FromString(r["payload"]).status for r in records]

    async def speaker_names(
        self, conn: asyncpg.Connection | asyncpg.Pool, meeting_id: uuid.UUID
    ) -> dict[str, str]:
        """Reads the names given to a meeting's speaker labels: label to name."""
        records = await conn.fetch(
            "SELECT label, name FROM speaker_names WHERE meeting_id = $1 ORDER BY label",
            meeting_id,
        )
        return {r["label"]: r["name"] for r in records}

    async def set_speaker_names(
        self, conn: asyncpg.Connection, meeting_id: uuid.UUID, names: dict[str, str]
    ) -> None:
        """Names speaker labels of a meeting; an empty name removes the label's name.

        Args:
            conn: The connection, inside the transaction that locked the meeting.
            meeting_id: The meeting.
            names: Label to name ("" to unname).
        """
        named = {label: name for label, name in names.items() if name}
        await conn.execute(
            "DELETE FROM speaker_names WHERE meeting_id = $1 AND label = ANY($2::text[])",
            meeting_id,
            [label for label in names if label not in named],
        )
        await conn.execute(
            """
            INSERT INTO speaker_names (meeting_id, label, name)
            SELECT $1, t.label, t.name FROM unnest($2::text[], $3::text[]) AS t(label, name)
            ON CONFLICT (meeting_id, label) DO UPDATE SET name = EXCLUDED.name
            """,
            meeting_id,
            list(named),
            list(named.values()),
        )


@dataclass(frozen=True)
class UserEventRow:
    """One event of a user's feed: the meeting after the change, or None once deleted."""

    sequence: int
    meeting_id: uuid.UUID
    create_time: dt.datetime
    meeting: MeetingRow | None


class UserEventsRepository:
    """Reads each user's feed of meeting changes (`user_feeds`, `user_events`)."""

    async def last_sequence(self, conn: asyncpg.Connection | asyncpg.Pool, owner: str) -> int:
        """Reads the newest sequence of an owner's feed (0 when it has none)."""
        value: int | None = await conn.fetchval(
            "SELECT last_sequence FROM user_feeds WHERE owner = $1", owner
        )
        return value or 0

    async def list_after(
        self, conn: asyncpg.Connection | asyncpg.Pool, owner: str, after: int, limit: int
    ) -> list[UserEventRow]:
        """Reads an owner's feed events with a sequence above `after`, oldest first."""
        records = await conn.fetch(
            """
            SELECT sequence, meeting_id, deleted, title, language, expected_speakers, status,
                   failure_reason, duration_us, content_type, audio_size_bytes,
                   meeting_create_time, meeting_update_time, create_time
            FROM user_events WHERE owner = $1 AND sequence > $2 ORDER BY sequence LIMIT $3
            """,
            owner,
            after,
            limit,
        )
        return [
            UserEventRow(
                sequence=r["sequence"],
                meeting_id=r["meeting_id"],
                create_time=r["create_time"],
                meeting=None if r["deleted"] else _feed_meeting(owner, r),
            )
            for r in records
        ]


def _feed_meeting(owner: str, record: asyncpg.Record) -> MeetingRow:
    return MeetingRow(
        id=record["meeting_id"],
        owner=owner,
        title=record["title"],
        language=record["language"],
        expected_speakers=record["expected_speakers"],
        status=record["status"],
        failure_reason=record["failure_reason"],
        duration_us=record["duration_us"],
        content_type=record["content_type"],
        last_sequence=0,
        summary=None,
        create_time=record["meeting_create_time"],
        update_time=record["meeting_update_time"],
        audio_size_bytes=record["audio_size_bytes"],
        # The feed carries what a list of meetings shows, not what steers processing.
        detected_language="",
        vocabulary=[],
    )
