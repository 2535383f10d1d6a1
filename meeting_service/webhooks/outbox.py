"""The transactional outbox: a meeting's webhook events, written with the change that causes them.

`EventLog` calls it inside the transaction of every status change and of a deletion, so
the event and its deliveries commit or roll back with the change itself; delivery happens
later, from any replica (`webhooks.delivery`).
"""

from __future__ import annotations

import datetime as dt
import uuid

import asyncpg

from meeting_service.meetings.messages import meeting_message
from meeting_service.meetings.repository import MeetingsRepository
from meeting_service.webhooks.events import MEETING_DELETED, STATUS_EVENTS, event_body
from meeting_service.webhooks.repository import WebhooksRepository


class WebhookOutbox:
    """Queues the webhook events of a meeting's changes."""

    def __init__(self, meetings: MeetingsRepository, webhooks: WebhooksRepository) -> None:
        self._meetings = meetings
        self._webhooks = webhooks

    async def status_changed(
        self, conn: asyncpg.Connection, meeting_id: uuid.UUID, status: int
    ) -> None:
        """Queues the event a new status announces, if it announces one.

        Args:
            conn: The connection, in the transaction that set the status.
            meeting_id: The meeting (its row already holds the new status).
            status: The new status.
        """
        event_type = STATUS_EVENTS.get(status)
        if event_type is not None:
            await self._record(conn, meeting_id, event_type)

    async def meeting_deleted(self, conn: asyncpg.Connection, meeting_id: uuid.UUID) -> None:
        """Queues `meeting.deleted`, in the deleting transaction before the row goes."""
        await self._record(conn, meeting_id, MEETING_DELETED)

    async def _record(
        self, conn: asyncpg.Connection, meeting_id: uuid.UUID, event_type: str
    ) -> None:
        row = await self._meetings.get(conn, meeting_id)
        if row is None:
            return
        body = event_body(event_type, meeting_message(row), dt.datetime.now(dt.UTC))
        await self._webhooks.record_event(
            conn, owner=row.owner, meeting_id=meeting_id, event_type=event_type, body=body
        )
