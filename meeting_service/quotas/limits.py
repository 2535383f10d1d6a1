"""The per-caller quotas and their checks, made inside the transaction that starts the work.

Each check runs under `QuotasRepository.lock_owner`, so it is exact across replicas: two
uploads of one caller on two replicas are counted one after the other. What was accepted
is never undone by a quota: checks happen only when an upload or live session starts, and
the concurrent-jobs quota is applied by the job queue's claim (a job waits, it does not
fail). A limit of 0 is no limit.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import asyncpg

from contract_errors.meeting import quota_exceeded
from gen.meeting.v1 import meeting_pb2
from meeting_service.quotas.repository import QuotasRepository

# There is no telling when a live session or stored bytes free up; clients are told to
# come back after this long.
_CAPACITY_RETRY_S = 30.0


@dataclass(frozen=True)
class Quotas:
    """The limits of each caller (from `MESH_QUOTA_*`; 0: unlimited).

    Attributes:
        repository: The counts.
        concurrent_jobs: Jobs of one caller running at once (applied by the claim).
        live_sessions: Live sessions of one caller at once.
        uploads_per_minute: New uploads one caller may start per minute (resumptions of
            an upload already started are not counted).
        stored_bytes: Bytes one caller's recordings may hold.
    """

    repository: QuotasRepository
    concurrent_jobs: int = 0
    live_sessions: int = 0
    uploads_per_minute: int = 0
    stored_bytes: int = 0

    async def check_upload_start(
        self,
        conn: asyncpg.Connection,
        owner: str,
        meeting_id: uuid.UUID,
        *,
        stored: int,
        total: int | None,
    ) -> None:
        """Admits the start of an upload stream, or refuses it before any byte is stored.

        A stream at offset 0 starts a new upload; one further on resumes an upload already
        accepted and counts only against the stored bytes.

        Args:
            conn: The connection, inside the transaction that starts the upload.
            owner: The caller.
            meeting_id: The meeting the recording is for.
            stored: Bytes of this recording already stored.
            total: The recording's declared size, when known.

        Raises:
            MeetingError: QUOTA_EXCEEDED.
        """
        if not (self.uploads_per_minute or self.stored_bytes):
            return
        await self.repository.lock_owner(conn, owner)
        if self.uploads_per_minute and stored == 0:
            starts, frees_in = await self.repository.upload_starts(conn, owner)
            if starts >= self.uploads_per_minute:
                raise quota_exceeded(
                    "uploads_per_minute",
                    self.uploads_per_minute,
                    f"at most {self.uploads_per_minute} uploads may start per minute",
                    retry_after=max(1.0, frees_in),
                )
            await self.repository.record_upload_start(conn, owner)
        if self.stored_bytes:
            await self._check_bytes(conn, owner, meeting_id, total or stored + 1)

    async def check_live_start(
        self, conn: asyncpg.Connection, owner: str, meeting_id: uuid.UUID
    ) -> None:
        """Admits the start of a live session, or refuses it.

        Args:
            conn: The connection, inside the transaction that makes the meeting LIVE.
            owner: The caller.
            meeting_id: The meeting going live.

        Raises:
            MeetingError: QUOTA_EXCEEDED.
        """
        if not (self.live_sessions or self.stored_bytes):
            return
        await self.repository.lock_owner(conn, owner)
        if self.live_sessions:
            live = await self.repository.live_sessions(conn, owner, meeting_pb2.MEETING_STATUS_LIVE)
            if live >= self.live_sessions:
                raise quota_exceeded(
                    "live_sessions",
                    self.live_sessions,
                    f"at most {self.live_sessions} live sessions may run at once",
                    retry_after=_CAPACITY_RETRY_S,
                )
        if self.stored_bytes:
            await self._check_bytes(conn, owner, meeting_id, 1)

    async def _check_bytes(
        self, conn: asyncpg.Connection, owner: str, meeting_id: uuid.UUID, needed: int
    ) -> None:
        """Refuses unless the caller's other recordings and `needed` bytes fit the quota.

        A recording of unknown size needs room for one more byte.
        """
        held = await self.repository.held_bytes(conn, owner, meeting_id)
        if held + needed > self.stored_bytes:
            raise quota_exceeded(
                "stored_bytes",
                self.stored_bytes,
                f"the recordings would hold more than the {self.stored_bytes} bytes allowed;"
                " delete meetings to make room",
                retry_after=_CAPACITY_RETRY_S,
            )
