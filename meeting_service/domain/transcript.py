"""Transcripts: reading them, following them live, and writing them (for the pipeline)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Sequence

import asyncpg

from gen.meeting.v1 import meeting_pb2, meeting_service_pb2
from meeting_service.domain import convert
from meeting_service.domain.event_hub import EventHub, HubClosed, SubscriberTooSlow
from meeting_service.domain.event_log import EventLog
from meeting_service.domain.validation import invalid, not_found
from meeting_service.domain.validation import meeting_id as parse_id
from meeting_service.repositories.events import EventsRepository
from meeting_service.repositories.meetings import MeetingsRepository
from mesh_common.errors import MeshError

_REPLAY_BATCH = 500
# Before any recording is processed there is no transcript to show.
_NOT_STARTED = frozenset(
    {
        meeting_pb2.MEETING_STATUS_AWAITING_AUDIO,
        meeting_pb2.MEETING_STATUS_UPLOADING,
        meeting_pb2.MEETING_STATUS_QUEUED,
    }
)


class TranscriptService:
    """What callers read: the transcript, the summary, and the live event stream."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        meetings: MeetingsRepository,
        events: EventsRepository,
        hub: EventHub,
    ) -> None:
        self._pool = pool
        self._meetings = meetings
        self._events = events
        self._hub = hub

    async def get_transcript(
        self, owner: str, meeting_id: str
    ) -> meeting_service_pb2.GetTranscriptResponse:
        """Returns the latest version of every segment of a caller's meeting.

        Raises:
            MeshError: MEETING_NOT_FOUND; NOT_READY while no recording has been processed.
        """
        mid = parse_id(meeting_id)
        async with self._pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
            # One snapshot, so `last_sequence` matches the segments exactly.
            row = await self._meetings.get(conn, mid, owner=owner)
            if row is None:
                raise not_found(mid)
            segments = await self._events.segments(conn, mid)
        if not segments and row.status in _NOT_STARTED:
            raise MeshError(
                meeting_pb2.ERROR_REASON_NOT_READY,
                "the transcript is not ready: the recording has not been processed yet",
                {"status": meeting_pb2.MeetingStatus.Name(row.status)},  # type: ignore[arg-type]
            )
        response = meeting_service_pb2.GetTranscriptResponse(
            last_sequence=row.last_sequence,
            status=meeting_pb2.MeetingStatus.ValueType(row.status),
        )
        speakers: dict[str, None] = {}
        for stored in segments:
            segment = response.segments.add()
            segment.ParseFromString(stored.payload)
            if segment.speaker:
                speakers.setdefault(segment.speaker)
        response.speakers.extend(speakers)
        return response

    async def get_summary(self, owner: str, meeting_id: str) -> meeting_pb2.Summary:
        """Returns the summary of a caller's meeting.

        Raises:
            MeshError: MEETING_NOT_FOUND; NOT_READY before the summary is written.
        """
        mid = parse_id(meeting_id)
        row = await self._meetings.get(self._pool, mid, owner=owner)
        if row is None:
            raise not_found(mid)
        if row.summary is None:
            raise MeshError(
                meeting_pb2.ERROR_REASON_NOT_READY,
                "the summary is not written yet",
                {"status": meeting_pb2.MeetingStatus.Name(row.status)},  # type: ignore[arg-type]
            )
        return meeting_pb2.Summary.FromString(row.summary)

    async def stream(
        self, owner: str, meeting_id: str, after_sequence: int
    ) -> AsyncGenerator[meeting_pb2.TranscriptEvent]:
        """Yields a caller's meeting's events after `after_sequence`, then new ones forever.

        Subscribes first and reads the stored log second, then skips live events it has
        already yielded: nothing committed in between is missed or repeated. Ends after
        the `deleted` event.

        Args:
            owner: The caller.
            meeting_id: The meeting.
            after_sequence: The last sequence the caller has (0 for all).

        Yields:
            The events, in sequence order.

        Raises:
            MeshError: MEETING_NOT_FOUND; INVALID_FIELD for a negative sequence;
                OVERLOADED when the caller reads too slowly (resume from the last
                sequence received); BACKEND_UNAVAILABLE when the server shuts down.
        """
        mid = parse_id(meeting_id)
        if after_sequence < 0:
            raise invalid("after_sequence", "after_sequence must be 0 or more")
        try:
            subscribing = self._hub.subscribe(mid)
            subscription = await subscribing.__aenter__()
        except HubClosed:
            raise _shutting_down(after_sequence) from None
        try:
            if await self._meetings.get(self._pool, mid, owner=owner) is None:
                raise not_found(mid)
            last = after_sequence
            async for event in self._read_stored(mid, last, None):
                yield event
                last = event.sequence
            while True:
                try:
                    event = await subscription.next()
                except SubscriberTooSlow:
                    raise MeshError(
                        meeting_pb2.ERROR_REASON_OVERLOADED,
                        f"the stream fell too far behind; resume with after_sequence={last}",
                        {"after_sequence": str(last)},
                        retry_after=0.0,
                    ) from None
                except HubClosed:
                    raise _shutting_down(last) from None
                if event.sequence <= last:
                    continue
                if event.sequence > last + 1 and not event.HasField("deleted"):
                    # Defensive: fill any hole from the table rather than skip events.
                    async for missed in self._read_stored(mid, last, event.sequence - 1):
                        yield missed
                        last = missed.sequence
                yield event
                last = event.sequence
                if event.HasField("deleted"):
                    return
        finally:
            with contextlib.suppress(Exception):
                await subscribing.__aexit__(None, None, None)

    async def _read_stored(
        self, mid: uuid.UUID, after: int, up_to: int | None
    ) -> AsyncIterator[meeting_pb2.TranscriptEvent]:
        while True:
            rows = await self._events.list_after(self._pool, mid, after, _REPLAY_BATCH)
            for row in rows:
                if up_to is not None and row.sequence > up_to:
                    return
                yield convert.event(row)
                after = row.sequence
            if len(rows) < _REPLAY_BATCH:
                return


def _shutting_down(last: int) -> MeshError:
    return MeshError(
        meeting_pb2.ERROR_REASON_BACKEND_UNAVAILABLE,
        f"the server is shutting down; resume with after_sequence={last}",
        {"after_sequence": str(last)},
        retry_after=1.0,
    )


class TranscriptWriter:
    """What the processing pipeline writes, each call in its own transaction.

    These calls are internal (the pipeline runs in this process): they are not scoped to
    an owner. Each raises MeshError(MEETING_NOT_FOUND) when the meeting was deleted,
    which is the pipeline's signal to stop.
    """

    def __init__(self, pool: asyncpg.Pool, log: EventLog) -> None:
        self._pool = pool
        self._log = log

    async def append_segments(
        self, meeting_id: uuid.UUID, segments: Sequence[meeting_pb2.Segment]
    ) -> list[meeting_pb2.TranscriptEvent]:
        """Stores segments (each replacing any earlier version with its index) as events.

        Args:
            meeting_id: The meeting.
            segments: The segments; `index` says which, `segment_id` and `sequence` are
                filled in.

        Returns:
            The stored events, one per segment, in order.
        """
        async with self._pool.acquire() as conn, conn.transaction():
            return [await self._log.put_segment(conn, meeting_id, s) for s in segments]

    async def append_segment(
        self, meeting_id: uuid.UUID, segment: meeting_pb2.Segment
    ) -> meeting_pb2.TranscriptEvent:
        """Stores one segment as an event (see `append_segments`)."""
        (event,) = await self.append_segments(meeting_id, [segment])
        return event

    async def change_status(
        self,
        meeting_id: uuid.UUID,
        status: meeting_pb2.MeetingStatus.ValueType,
        reason: str = "",
    ) -> meeting_pb2.TranscriptEvent:
        """Moves the meeting to `status` (an event); `reason` becomes `failure_reason`."""
        async with self._pool.acquire() as conn, conn.transaction():
            return await self._log.change_status(conn, meeting_id, status, reason)

    async def store_summary(
        self, meeting_id: uuid.UUID, summary: meeting_pb2.Summary
    ) -> meeting_pb2.TranscriptEvent:
        """Stores the summary (an event); GetSummary returns it from now on."""
        async with self._pool.acquire() as conn, conn.transaction():
            return await self._log.put_summary(conn, meeting_id, summary)

    async def mark_failed(self, meeting_id: uuid.UUID, reason: str) -> meeting_pb2.TranscriptEvent:
        """Moves the meeting to FAILED with a reason a user can read (an event)."""
        return await self.change_status(meeting_id, meeting_pb2.MEETING_STATUS_FAILED, reason)
