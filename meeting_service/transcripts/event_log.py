"""Writing events one at a time inside a caller's transaction, keeping derived state in step.

Every method runs on a connection inside the caller's transaction: the sequence comes from
`EventsRepository.allocate`, so the meeting row stays locked until commit. The NOTIFY
queued with each event is delivered on commit, never for a rolled-back write, and so are the
webhook events a change announces (`WebhookOutbox`): every status change passes here, so no
caller can change a status without its webhooks. Segments go through `TranscriptWriter`'s
group commit instead.
"""

from __future__ import annotations

import uuid

import asyncpg

from contract_errors.meeting import not_found
from gen.meeting.v1 import meeting_pb2
from meeting_service.meetings.messages import timestamp
from meeting_service.meetings.repository import MeetingsRepository
from meeting_service.transcripts import messages
from meeting_service.transcripts.repository import EventsRepository
from meeting_service.webhooks.outbox import WebhookOutbox


class EventLog:
    """Appends events to a meeting's log and applies what they mean to the stored state."""

    def __init__(
        self, meetings: MeetingsRepository, events: EventsRepository, outbox: WebhookOutbox
    ) -> None:
        self._meetings = meetings
        self._events = events
        self._outbox = outbox

    async def change_status(
        self,
        conn: asyncpg.Connection,
        meeting_id: uuid.UUID,
        status: meeting_pb2.MeetingStatus.ValueType,
        reason: str = "",
    ) -> meeting_pb2.TranscriptEvent:
        """Sets a meeting's status (and `failure_reason`) and records the change.

        Args:
            conn: The connection, in a transaction.
            meeting_id: The meeting.
            status: The new status.
            reason: Why; stored as `failure_reason` (cleared when empty).

        Returns:
            The stored event.

        Raises:
            MeetingError: MEETING_NOT_FOUND when the meeting is gone.
        """
        sequence = await self._allocate(conn, meeting_id)
        await self._meetings.set_status(conn, meeting_id, status, reason)
        await self._outbox.status_changed(conn, meeting_id, status)
        change = meeting_pb2.StatusChange(status=status, reason=reason)
        return await self._append(conn, meeting_id, sequence, messages.STATUS_CHANGE, change)

    async def put_summary(
        self, conn: asyncpg.Connection, meeting_id: uuid.UUID, summary: meeting_pb2.Summary
    ) -> meeting_pb2.TranscriptEvent:
        """Stores the meeting's summary (replacing any earlier one) as an event.

        Raises:
            MeetingError: MEETING_NOT_FOUND when the meeting is gone.
        """
        sequence = await self._allocate(conn, meeting_id)
        await self._meetings.set_summary(conn, meeting_id, summary.SerializeToString())
        return await self._append(conn, meeting_id, sequence, messages.SUMMARY, summary)

    async def announce_deletion(self, conn: asyncpg.Connection, meeting_id: uuid.UUID) -> int:
        """Allocates the final sequence of a meeting being deleted and announces it.

        The `deleted` event is not stored (the log goes with the meeting); listeners turn
        the announcement into the stream's last event.

        Returns:
            The sequence of the `deleted` event.
        """
        sequence = await self._allocate(conn, meeting_id)
        await self._outbox.meeting_deleted(conn, meeting_id)
        await self._events.announce(conn, meeting_id, sequence, deleted=True)
        return sequence

    async def _allocate(self, conn: asyncpg.Connection, meeting_id: uuid.UUID) -> int:
        sequence = await self._events.allocate(conn, meeting_id)
        if sequence is None:
            raise not_found(meeting_id)
        return sequence

    async def _append(
        self,
        conn: asyncpg.Connection,
        meeting_id: uuid.UUID,
        sequence: int,
        kind: str,
        message: meeting_pb2.Segment | meeting_pb2.StatusChange | meeting_pb2.Summary,
    ) -> meeting_pb2.TranscriptEvent:
        created = await self._events.append(
            conn, meeting_id, sequence, kind, message.SerializeToString()
        )
        event = meeting_pb2.TranscriptEvent(
            sequence=sequence, meeting_id=str(meeting_id), create_time=timestamp(created)
        )
        getattr(event, kind).CopyFrom(message)
        return event
