"""Meetings: create (idempotent), read, list, update with a mask, delete."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any, Protocol

import asyncpg

from contract_errors.meeting import MeetingError, not_found, status_name, wrong_state
from gen.meeting.v1 import meeting_pb2
from meeting_service import validation
from meeting_service.meetings import page_tokens
from meeting_service.meetings.messages import meeting_message
from meeting_service.meetings.repository import MUTABLE_FIELDS, MeetingRow, MeetingsRepository

DEFAULT_PAGE_SIZE = 20
# Language and speaker count steer processing, so they freeze once it has started.
_FROZEN_ONCE_PROCESSING = frozenset({"language", "expected_speakers"})
_BEFORE_PROCESSING = frozenset(
    {
        meeting_pb2.MEETING_STATUS_AWAITING_AUDIO,
        meeting_pb2.MEETING_STATUS_UPLOADING,
        meeting_pb2.MEETING_STATUS_QUEUED,
    }
)


class MeetingLog(Protocol):
    """The meeting's event log, as the meeting rules use it (`transcripts.EventLog`).

    Declared here so the root aggregate depends on no other: the wiring passes the log in.
    """

    async def change_status(
        self,
        conn: asyncpg.Connection,
        meeting_id: uuid.UUID,
        status: meeting_pb2.MeetingStatus.ValueType,
        reason: str = "",
    ) -> meeting_pb2.TranscriptEvent:
        """Sets the meeting's status and records the change, in the caller's transaction."""
        ...

    async def announce_deletion(self, conn: asyncpg.Connection, meeting_id: uuid.UUID) -> int:
        """Announces the deletion as the stream's last event, in the caller's transaction."""
        ...


class MeetingRecordings(Protocol):
    """Where the meeting's recording is kept, as deletion uses it (`recordings.store`).

    Declared here for the same reason as `MeetingLog`.
    """

    async def delete(self, meeting_id: uuid.UUID) -> None:
        """Deletes what the store keeps of the recording outside the `uploads` rows."""
        ...


class MeetingsService:
    """The meeting rules, every call scoped to its owner."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        meetings: MeetingsRepository,
        log: MeetingLog,
        recordings: MeetingRecordings,
    ) -> None:
        self._pool = pool
        self._meetings = meetings
        self._log = log
        self._recordings = recordings

    async def create(
        self, owner: str, meeting: meeting_pb2.Meeting, request_id: str
    ) -> meeting_pb2.Meeting:
        """Creates a meeting awaiting audio; a repeated `request_id` returns the first one.

        Args:
            owner: The caller.
            meeting: Only title, language and expected_speakers are read.
            request_id: Idempotency key ("" for none).

        Returns:
            The meeting.

        Raises:
            MeetingError: INVALID_FIELD for a bad field.
        """
        key = validation.request_id(request_id)
        title = validation.title(meeting.title)
        language = validation.language(meeting.language)
        speakers = validation.expected_speakers(meeting.expected_speakers)
        async with self._pool.acquire() as conn, conn.transaction():
            row, created = await self._meetings.insert(
                conn,
                owner=owner,
                request_id=key,
                status=meeting_pb2.MEETING_STATUS_AWAITING_AUDIO,
                title=title,
                language=language,
                expected_speakers=speakers,
            )
            if created:
                # The log starts with the initial status, so a follower sees it at 1.
                await self._log.change_status(
                    conn, row.id, meeting_pb2.MEETING_STATUS_AWAITING_AUDIO
                )
                row = await self._require(conn, owner, str(row.id))
        return meeting_message(row)

    async def get(self, owner: str, meeting_id: str) -> meeting_pb2.Meeting:
        """Returns a caller's meeting.

        Raises:
            MeetingError: MEETING_NOT_FOUND, also for another owner's meeting.
        """
        return meeting_message(await self._require(self._pool, owner, meeting_id))

    async def list(
        self, owner: str, page_size: int, page_token: str
    ) -> tuple[Sequence[meeting_pb2.Meeting], str]:
        """Lists a caller's meetings, newest first.

        Args:
            owner: The caller.
            page_size: Within the contract's rules; 0 means 20.
            page_token: The previous page's token, "" for the first page.

        Returns:
            The page and the next page's token ("" on the last page).

        Raises:
            MeetingError: INVALID_FIELD for a bad page size; INVALID_PAGE_TOKEN.
        """
        size = validation.page_size(page_size) or DEFAULT_PAGE_SIZE
        before = page_tokens.decode(owner, page_token) if page_token else None
        # One extra row tells whether another page exists without a second query.
        rows = await self._meetings.list_page(
            self._pool, owner=owner, limit=size + 1, before=before
        )
        page, more = rows[:size], len(rows) > size
        token = page_tokens.encode(owner, page[-1].create_time, page[-1].id) if more else ""
        return [meeting_message(r) for r in page], token

    async def update(
        self, owner: str, meeting: meeting_pb2.Meeting, paths: Sequence[str]
    ) -> meeting_pb2.Meeting:
        """Changes the masked fields of a caller's meeting.

        Args:
            owner: The caller.
            meeting: `id` and the new values.
            paths: The update mask's paths.

        Returns:
            The meeting after the change.

        Raises:
            MeetingError: INVALID_UPDATE_MASK for an empty mask or a path that is unknown or
                immutable; INVALID_FIELD; MEETING_NOT_FOUND; WRONG_STATE when language or
                expected_speakers change after processing started.
        """
        if not paths:
            raise MeetingError(
                meeting_pb2.ERROR_REASON_INVALID_UPDATE_MASK,
                f"update_mask is required; updatable fields: {', '.join(sorted(MUTABLE_FIELDS))}",
                {"field": "update_mask"},
            )
        bad = sorted(set(paths) - MUTABLE_FIELDS)
        if bad:
            raise MeetingError(
                meeting_pb2.ERROR_REASON_INVALID_UPDATE_MASK,
                f"cannot update {', '.join(bad)}; updatable fields: "
                f"{', '.join(sorted(MUTABLE_FIELDS))}",
                {"field": "update_mask", "paths": ",".join(bad)},
            )
        checks: dict[str, Any] = {
            "title": lambda: validation.title(meeting.title),
            "language": lambda: validation.language(meeting.language),
            "expected_speakers": lambda: validation.expected_speakers(meeting.expected_speakers),
        }
        fields = {path: checks[path]() for path in set(paths)}
        async with self._pool.acquire() as conn, conn.transaction():
            row = await self._require(conn, owner, meeting.id, for_update=True, field="meeting.id")
            frozen = sorted(set(fields) & _FROZEN_ONCE_PROCESSING)
            if frozen and row.status not in _BEFORE_PROCESSING:
                status = status_name(row.status)
                raise wrong_state(
                    status,
                    f"{', '.join(frozen)} cannot change once processing has started ({status})",
                )
            await self._meetings.update_fields(conn, row.id, fields)
            row = await self._require(conn, owner, meeting.id)
        return meeting_message(row)

    async def delete(self, owner: str, meeting_id: str) -> None:
        """Deletes a caller's meeting with its recording, transcript and jobs.

        Followers of its stream get a final `deleted` event; a worker processing it loses
        its job (`JobLost`) at its next heartbeat.

        Raises:
            MeetingError: MEETING_NOT_FOUND.
        """
        async with self._pool.acquire() as conn, conn.transaction():
            row = await self._require(conn, owner, meeting_id, for_update=True)
            await self._log.announce_deletion(conn, row.id)
            await self._meetings.delete(conn, row.id)
        # After the commit: a recording still being received is refused from here on.
        await self._recordings.delete(row.id)

    async def _require(
        self,
        conn: asyncpg.Connection | asyncpg.Pool,
        owner: str,
        meeting_id: str,
        *,
        for_update: bool = False,
        field: str = "meeting_id",
    ) -> MeetingRow:
        mid = validation.meeting_id(meeting_id, field)
        row = await self._meetings.get(conn, mid, owner=owner, for_update=for_update)
        if row is None:
            raise not_found(mid)
        return row
