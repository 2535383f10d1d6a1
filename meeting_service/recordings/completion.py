"""A recording is complete: one transaction records it, announces the status, queues a job.

An upload that passed its checks and a live session that ended both finish here, so the
rule "a complete recording always has exactly one job queued with it" lives in one place.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

import asyncpg

from contract_errors.meeting import not_found
from gen.meeting.v1 import meeting_pb2
from meeting_service.jobs.repository import JobsRepository
from meeting_service.meetings.repository import MeetingsRepository
from meeting_service.recordings.repository import UploadsRepository
from meeting_service.transcripts.event_log import EventLog


class RecordingCompletion:
    """Marks recordings complete and queues their processing."""

    def __init__(
        self,
        meetings: MeetingsRepository,
        uploads: UploadsRepository,
        jobs: JobsRepository,
        log: EventLog,
    ) -> None:
        self._meetings = meetings
        self._uploads = uploads
        self._jobs = jobs
        self._log = log
        self._on_queued: list[Callable[[], None]] = []

    def on_queued(self, callback: Callable[[], None]) -> None:
        """Registers what `queued` calls (this process's job workers' wake-up)."""
        self._on_queued.append(callback)

    def queued(self) -> None:
        """Says that a transaction which called `complete` has committed.

        Workers of this process then claim the job at once instead of at their next poll;
        a job is only claimable once committed, so the callers say so after the commit.
        """
        for callback in self._on_queued:
            callback()

    async def lock(self, conn: asyncpg.Connection, meeting_id: uuid.UUID) -> None:
        """Locks the meeting's row, which every write about its recording takes first.

        Raises:
            MeetingError: MEETING_NOT_FOUND when the meeting is gone.
        """
        if await self._meetings.get(conn, meeting_id, for_update=True) is None:
            raise not_found(meeting_id)

    async def complete(
        self,
        conn: asyncpg.Connection,
        meeting_id: uuid.UUID,
        *,
        duration_us: int,
        content_type: str,
        status: meeting_pb2.MeetingStatus.ValueType,
        reason: str = "",
        trace_context: str = "",
    ) -> meeting_pb2.TranscriptEvent:
        """Completes the recording, moves the meeting to `status` and queues its job.

        Args:
            conn: The connection, in the transaction that also holds whatever else the
                caller writes about the recording (e.g. a rewritten header).
            meeting_id: The meeting (locked here first, as every event write does).
            duration_us: The recording's length.
            content_type: Its media type.
            status: QUEUED for the job to start from recognition; DIARIZING when
                recognition already happened (a live session that ended cleanly).
            reason: Why, when the status says something went wrong.
            trace_context: W3C traceparent the job's spans continue.

        Returns:
            The status event.

        Raises:
            MeetingError: MEETING_NOT_FOUND when the meeting is gone.
        """
        await self.lock(conn, meeting_id)
        await self._uploads.mark_complete(conn, meeting_id)
        await self._meetings.set_recording(
            conn, meeting_id, duration_us=duration_us, content_type=content_type
        )
        event = await self._log.change_status(conn, meeting_id, status, reason)
        await self._jobs.create(conn, meeting_id, trace_context=trace_context)
        return event
