"""SQL the pipeline needs beyond the shared repositories.

The stored recording's size, the meeting's status history (where a job resumes), the
latest segments, the lease check that fences a job's writes (also as a `TranscriptWriter`
fence, `LeaseFence`), and rewriting the header of a live recording once its length is
known.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import asyncpg

from gen.meeting.v1 import meeting_pb2
from meeting_service.repositories.jobs import JobLost


@dataclass(frozen=True)
class LeaseFence:
    """`PipelineStore.check_lease` as a `TranscriptWriter` fence: writes only while leased.

    Frozen, so a group commit holding several segments of one job checks its lease once.

    Attributes:
        job_id: The job.
        worker: The worker that must hold it.
    """

    job_id: uuid.UUID
    worker: str

    async def __call__(self, conn: asyncpg.Connection) -> None:
        """Checks the lease inside the writing transaction.

        Raises:
            JobLost: The job was taken over or deleted.
        """
        await PipelineStore().check_lease(conn, self.job_id, self.worker)


class PipelineStore:
    """Reads and writes for jobs and live sessions (stateless; pass a connection or pool)."""

    async def recording_size(
        self, conn: asyncpg.Connection | asyncpg.Pool, meeting_id: uuid.UUID
    ) -> int:
        """Returns the stored size of a meeting's recording (0 when there is none)."""
        size: int | None = await conn.fetchval(
            "SELECT stored_size FROM uploads WHERE meeting_id = $1", meeting_id
        )
        return size or 0

    async def status_history(
        self, conn: asyncpg.Connection | asyncpg.Pool, meeting_id: uuid.UUID
    ) -> list[meeting_pb2.MeetingStatus.ValueType]:
        """Returns every status the meeting entered, oldest first."""
        records = await conn.fetch(
            "SELECT payload FROM events WHERE meeting_id = $1 AND kind = 'status_change'"
            " ORDER BY sequence",
            meeting_id,
        )
        return [meeting_pb2.StatusChange.FromString(r["payload"]).status for r in records]

    async def final_segments(
        self, conn: asyncpg.Connection | asyncpg.Pool, meeting_id: uuid.UUID
    ) -> list[meeting_pb2.Segment]:
        """Returns the latest version of every final segment, by index."""
        records = await conn.fetch(
            "SELECT payload FROM segments WHERE meeting_id = $1 ORDER BY segment_index",
            meeting_id,
        )
        segments = [meeting_pb2.Segment.FromString(r["payload"]) for r in records]
        return [s for s in segments if s.final]

    async def check_lease(self, conn: asyncpg.Connection, job_id: uuid.UUID, worker: str) -> None:
        """Fences a job's writes: passes only while `worker` holds the job.

        Call it inside the writing transaction, after the meeting row is locked (every
        event write locks it first), so the lock order matches a meeting's deletion. The
        share lock makes a takeover wait until this transaction ends.

        Raises:
            JobLost: The job was taken over or deleted.
        """
        held = await conn.fetchval(
            "SELECT true FROM jobs WHERE id = $1 AND status = 'RUNNING' AND lease_owner = $2"
            " FOR SHARE",
            job_id,
            worker,
        )
        if not held:
            raise JobLost(f"job {job_id} is no longer leased to {worker}")

    def lease_fence(self, job_id: uuid.UUID, worker: str) -> LeaseFence:
        """The lease check as a fence for `TranscriptWriter` (segments of a job).

        Args:
            job_id: The job.
            worker: The worker that must hold it.

        Returns:
            The fence; equal fences are checked once per group commit.
        """
        return LeaseFence(job_id, worker)

    async def rewrite_chunk(
        self, conn: asyncpg.Connection, meeting_id: uuid.UUID, offset: int, data: bytes
    ) -> None:
        """Replaces the bytes of a stored chunk with as many new ones (a file header)."""
        await conn.execute(
            # Typed, or PostgreSQL reads `length($3)` as length(text) and refuses the bytes.
            "UPDATE audio_chunks SET data = $3::bytea WHERE meeting_id = $1 AND byte_offset = $2"
            " AND length(data) = length($3::bytea)",
            meeting_id,
            offset,
            data,
        )
