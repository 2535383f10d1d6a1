"""Writing status changes and summaries as the pipeline does, for tests that play its part."""

from __future__ import annotations

import uuid

from gen.meeting.v1 import meeting_pb2
from meeting_service.wiring import Services


async def change_status(
    services: Services,
    meeting_id: uuid.UUID,
    status: meeting_pb2.MeetingStatus.ValueType,
    reason: str = "",
) -> meeting_pb2.TranscriptEvent:
    """Moves a meeting to `status` (an event), in a transaction of its own."""
    async with services.pool.acquire() as conn, conn.transaction():
        return await services.processing.log.change_status(conn, meeting_id, status, reason)


async def store_summary(
    services: Services, meeting_id: uuid.UUID, summary: meeting_pb2.Summary
) -> meeting_pb2.TranscriptEvent:
    """Stores a meeting's summary (an event), in a transaction of its own."""
    async with services.pool.acquire() as conn, conn.transaction():
        return await services.processing.log.put_summary(conn, meeting_id, summary)
