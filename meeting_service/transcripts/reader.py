"""Reading transcripts: the transcript, the summary, the live stream, and the pipeline's reads."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass

import asyncpg

from contract_errors.meeting import MeetingError, invalid_field, not_found, not_ready, unavailable
from gen.meeting.v1 import meeting_pb2, user_events_pb2
from meeting_service.meetings.messages import meeting_message
from meeting_service.meetings.repository import MeetingsRepository
from meeting_service.transcripts import exports, messages
from meeting_service.transcripts.hub import EventHub, HubClosed, SubscriberLagged, Subscription
from meeting_service.transcripts.repository import EventsRepository, UserEventsRepository
from meeting_service.validation import meeting_id as parse_id

_REPLAY_BATCH = 500
# A meeting's final statuses: its event stream ends after either.
ENDED = frozenset({meeting_pb2.MEETING_STATUS_COMPLETED, meeting_pb2.MEETING_STATUS_FAILED})
# Before any recording is processed there is no transcript to show.
_NOT_STARTED = frozenset(
    {
        meeting_pb2.MEETING_STATUS_AWAITING_AUDIO,
        meeting_pb2.MEETING_STATUS_UPLOADING,
        meeting_pb2.MEETING_STATUS_QUEUED,
    }
)


@dataclass(frozen=True)
class Transcript:
    """The latest version of every segment, read in one snapshot.

    Attributes:
        segments: By index.
        speakers: The distinct speaker labels, in order of first appearance.
        last_sequence: The meeting's newest event when it was read.
        status: The meeting's status then.
        meeting: The meeting then.
        summary: Its summary then, when written.
    """

    segments: list[meeting_pb2.Segment]
    speakers: list[str]
    last_sequence: int
    status: meeting_pb2.MeetingStatus.ValueType
    meeting: meeting_pb2.Meeting
    summary: meeting_pb2.Summary | None


class TranscriptReader:
    """What callers read (owner-scoped), and what the pipeline reads (internal)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        meetings: MeetingsRepository,
        events: EventsRepository,
        user_events: UserEventsRepository,
        hub: EventHub,
    ) -> None:
        self._pool = pool
        self._meetings = meetings
        self._events = events
        self._user_events = user_events
        self._hub = hub

    async def get_transcript(self, owner: str, meeting_id: str) -> Transcript:
        """Returns the latest version of every segment of a caller's meeting.

        Raises:
            MeetingError: MEETING_NOT_FOUND; NOT_READY while no recording has been processed.
        """
        mid = parse_id(meeting_id)
        async with self._pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
            # One snapshot, so `last_sequence` matches the segments exactly.
            row = await self._meetings.get(conn, mid, owner=owner)
            if row is None:
                raise not_found(mid)
            segments = await self._events.segments(conn, mid)
        if not segments and row.status in _NOT_STARTED:
            raise not_ready(
                row.status, "the transcript is not ready: the recording has not been processed yet"
            )
        parsed = [meeting_pb2.Segment.FromString(stored.payload) for stored in segments]
        speakers = dict.fromkeys(s.speaker for s in parsed if s.speaker)
        return Transcript(
            segments=parsed,
            speakers=list(speakers),
            last_sequence=row.last_sequence,
            status=meeting_pb2.MeetingStatus.ValueType(row.status),
            meeting=meeting_message(row),
            summary=None if row.summary is None else meeting_pb2.Summary.FromString(row.summary),
        )

    async def export(
        self, owner: str, meeting_id: str, export_format: int, *, with_speakers: bool
    ) -> exports.Export:
        """Returns a caller's meeting's current transcript as a file.

        Args:
            owner: The caller.
            meeting_id: The meeting.
            export_format: A `meeting.v1.ExportFormat` value.
            with_speakers: Whether speaker labels appear.

        Returns:
            The file.

        Raises:
            MeshError: INVALID_FIELD for an unknown format; as `get_transcript` otherwise.
        """
        exports.check_format(export_format)
        transcript = await self.get_transcript(owner, meeting_id)
        return exports.export(
            export_format,
            transcript.meeting,
            transcript.segments,
            transcript.summary,
            with_speakers=with_speakers,
        )

    async def get_summary(self, owner: str, meeting_id: str) -> meeting_pb2.Summary:
        """Returns the summary of a caller's meeting.

        Raises:
            MeetingError: MEETING_NOT_FOUND; NOT_READY before the summary is written.
        """
        mid = parse_id(meeting_id)
        row = await self._meetings.get(self._pool, mid, owner=owner)
        if row is None:
            raise not_found(mid)
        if row.summary is None:
            raise not_ready(row.status, "the summary is not written yet")
        return meeting_pb2.Summary.FromString(row.summary)

    async def stream(
        self, owner: str, meeting_id: str, after_sequence: int
    ) -> AsyncGenerator[meeting_pb2.TranscriptEvent]:
        """Yields a caller's meeting's events after `after_sequence`, then new ones.

        Subscribes first and reads the stored log second, then skips live events it has
        already yielded: nothing committed in between is missed or repeated. Ends after
        the meeting's final status event (`ENDED`), after the `deleted` event, and at
        once, after the stored events, on a meeting that had already ended.

        Args:
            owner: The caller.
            meeting_id: The meeting.
            after_sequence: The last sequence the caller has (0 for all).

        Yields:
            The events, in sequence order.

        Raises:
            MeetingError: MEETING_NOT_FOUND; INVALID_FIELD for a negative sequence;
                BACKEND_UNAVAILABLE when the server shuts down. A caller that reads
                slowly is not cut off: once its buffer of live events is full, it reads
                what it missed from the table, so it never holds up other subscribers.
        """
        mid = parse_id(meeting_id)
        if after_sequence < 0:
            raise invalid_field("after_sequence", "after_sequence must be 0 or more")
        try:
            subscribing = self._hub.subscribe(mid)
            subscription = await subscribing.__aenter__()
        except HubClosed:
            raise _shutting_down(after_sequence) from None
        try:
            row = await self._meetings.get(self._pool, mid, owner=owner)
            if row is None:
                raise not_found(mid)

            def read(after: int, up_to: int | None) -> AsyncIterator[meeting_pb2.TranscriptEvent]:
                return self._read_stored(mid, after, up_to)

            # The row was read after subscribing: an ended meeting's final event is stored.
            live = row.status not in ENDED
            async for event in _follow(subscription, read, after_sequence, live=live):
                yield event
                if event.HasField("deleted") or (
                    event.HasField("status_change") and event.status_change.status in ENDED
                ):
                    return
        finally:
            with contextlib.suppress(Exception):
                await subscribing.__aexit__(None, None, None)

    async def stream_user(
        self, owner: str, after_sequence: int
    ) -> AsyncGenerator[user_events_pb2.UserEvent]:
        """Yields the caller's feed events after `after_sequence`, then new ones forever.

        As `stream`, for the feed of every meeting of the caller (`UserEvent`).

        Raises:
            MeetingError: INVALID_FIELD for a negative sequence; BACKEND_UNAVAILABLE when
                the server shuts down.
        """
        if after_sequence < 0:
            raise invalid_field("after_sequence", "after_sequence must be 0 or more")
        try:
            subscribing = self._hub.subscribe_owner(owner)
            subscription = await subscribing.__aenter__()
        except HubClosed:
            raise _shutting_down(after_sequence) from None

        async def read(after: int, up_to: int | None) -> AsyncIterator[user_events_pb2.UserEvent]:
            while True:
                rows = await self._user_events.list_after(self._pool, owner, after, _REPLAY_BATCH)
                for row in rows:
                    if up_to is not None and row.sequence > up_to:
                        return
                    yield messages.user_event(row)
                    after = row.sequence
                if len(rows) < _REPLAY_BATCH:
                    return

        try:
            async for event in _follow(subscription, read, after_sequence, live=True):
                yield event
        finally:
            with contextlib.suppress(Exception):
                await subscribing.__aexit__(None, None, None)

    async def final_segments(self, meeting_id: uuid.UUID) -> list[meeting_pb2.Segment]:
        """Returns the latest version of every final segment, by index (internal)."""
        rows = await self._events.segments(self._pool, meeting_id)
        segments = [meeting_pb2.Segment.FromString(row.payload) for row in rows]
        return [s for s in segments if s.final]

    async def status_history(
        self, meeting_id: uuid.UUID
    ) -> list[meeting_pb2.MeetingStatus.ValueType]:
        """Returns every status the meeting entered, oldest first (internal)."""
        return await self._events.status_history(self._pool, meeting_id)

    async def _read_stored(
        self, mid: uuid.UUID, after: int, up_to: int | None
    ) -> AsyncIterator[meeting_pb2.TranscriptEvent]:
        while True:
            rows = await self._events.list_after(self._pool, mid, after, _REPLAY_BATCH)
            for row in rows:
                if up_to is not None and row.sequence > up_to:
                    return
                yield messages.event(row)
                after = row.sequence
            if len(rows) < _REPLAY_BATCH:
                return


async def _follow[E: meeting_pb2.TranscriptEvent | user_events_pb2.UserEvent](
    subscription: Subscription[E],
    read: Callable[[int, int | None], AsyncIterator[E]],
    after: int,
    *,
    live: bool,
) -> AsyncIterator[E]:
    """Yields the stored events after `after`, then (when `live`) the subscription's.

    Live events already yielded are skipped; a hole, or a lag of the subscription, is
    filled from the table, so the events come once each, in sequence order.

    Raises:
        MeetingError: BACKEND_UNAVAILABLE when the hub closes.
    """
    last = after
    async for event in read(last, None):
        yield event
        last = event.sequence
    while live:
        try:
            event = await subscription.next()
        except SubscriberLagged:
            # Its buffer filled (it reads slowly, or a burst outgrew it): what it missed
            # is in the table; live events are buffered again from now.
            async for missed in read(last, None):
                yield missed
                last = missed.sequence
            continue
        except HubClosed:
            raise _shutting_down(last) from None
        if event.sequence <= last:
            continue
        if event.sequence > last + 1 and not _is_deletion(event):
            # Defensive: fill any hole from the table rather than skip events.
            async for missed in read(last, event.sequence - 1):
                yield missed
                last = missed.sequence
        yield event
        last = event.sequence


def _is_deletion(event: meeting_pb2.TranscriptEvent | user_events_pb2.UserEvent) -> bool:
    # A meeting's `deleted` event is never stored, so the hole before it stays.
    return isinstance(event, meeting_pb2.TranscriptEvent) and event.HasField("deleted")


def _shutting_down(last: int) -> MeetingError:
    return unavailable(
        f"the server is shutting down; resume with after_sequence={last}",
        {"after_sequence": str(last)},
    )
