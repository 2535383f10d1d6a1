"""SQL for processing jobs: a queue in PostgreSQL with leases.

A job is QUEUED when its meeting's upload completes (in the same transaction). A worker
`claim`s one with `FOR UPDATE SKIP LOCKED`, so concurrent workers (in any replica) never get
the same job, and holds it under a lease that it `heartbeat`s. A worker that dies stops
heartbeating; once the lease expires another worker can claim the job. `fail` either puts
the job back with a delay (`retry_in`) or gives up. Deleting a meeting deletes its jobs:
the next `heartbeat`/`complete`/`fail` by the worker raises `JobLost`, which is the
worker's signal to stop.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import enum
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg


class JobStatus(enum.StrEnum):
    """Where a job is."""

    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"


class JobLost(Exception):
    """The job is no longer this worker's.

    Its lease expired and another worker took it, or its meeting was deleted (which
    cancels the job).
    """


@dataclass(frozen=True)
class Job:
    """A processing job.

    Attributes:
        id: The job.
        meeting_id: The meeting to process.
        status: Where it is.
        attempts: How many times it was claimed (this claim included), less the tries that
            only found no GPU node to run on (see `gpu_waits`).
        next_attempt_at: Earliest time it may be claimed.
        lease_owner: The worker holding it while RUNNING.
        lease_expires_at: When that worker's claim lapses.
        last_error: Why the last attempt failed.
        trace_context: W3C `traceparent` of the upload that queued it ("" when none).
        gpu_wait_since: When its tries began finding no GPU node (None while they do not).
        gpu_waits: How many tries in a row found no GPU node.
    """

    id: uuid.UUID
    meeting_id: uuid.UUID
    status: JobStatus
    attempts: int
    next_attempt_at: dt.datetime
    lease_owner: str | None
    lease_expires_at: dt.datetime | None
    last_error: str
    trace_context: str
    gpu_wait_since: dt.datetime | None = None
    gpu_waits: int = 0

    @classmethod
    def from_record(cls, record: asyncpg.Record) -> Job:
        """Builds the job from a `jobs` row."""
        values = dict(record.items())
        values["status"] = JobStatus(values["status"])
        return cls(**values)


# The advisory lock that serialises claims under a per-owner limit ("jobs" in ASCII).
_CLAIM_LOCK = 0x6A6F6273

_COLUMNS = (
    "id, meeting_id, status, attempts, next_attempt_at, lease_owner, lease_expires_at,"
    " last_error, trace_context, gpu_wait_since, gpu_waits"
)


@dataclass(frozen=True)
class JobStats:
    """How many jobs are where, for the metrics.

    Attributes:
        counts: Jobs per status but SUCCEEDED (which only grows, and is not counted so
            the query stays cheap); 0 when none.
        oldest_queued_age_s: Seconds the longest-waiting due QUEUED job has been due; 0
            when none waits.
    """

    counts: dict[JobStatus, int]
    oldest_queued_age_s: float


class JobsRepository:
    """Reads and writes `jobs`."""

    async def stats(self, conn: asyncpg.Connection | asyncpg.Pool) -> JobStats:
        """Counts jobs per status and measures the wait of the oldest due one."""
        rows = await conn.fetch(
            """
            SELECT status, count(*) AS jobs,
                   coalesce(extract(epoch FROM clock_timestamp() - min(next_attempt_at)
                                    FILTER (WHERE next_attempt_at <= clock_timestamp())),
                            0)::float8 AS oldest_due_s
            FROM jobs WHERE status <> 'SUCCEEDED' GROUP BY status
            """
        )
        counts: dict[JobStatus, int] = {
            status: 0 for status in JobStatus if status is not JobStatus.SUCCEEDED
        }
        oldest = 0.0
        for row in rows:
            status = JobStatus(row["status"])
            counts[status] = row["jobs"]
            if status is JobStatus.QUEUED:
                oldest = row["oldest_due_s"]
        return JobStats(counts, oldest)

    async def create(
        self, conn: asyncpg.Connection, meeting_id: uuid.UUID, *, trace_context: str = ""
    ) -> Job:
        """Queues a job for a meeting (call inside the transaction completing its upload)."""
        record = await conn.fetchrow(
            f"INSERT INTO jobs (id, meeting_id, status, trace_context) VALUES ($1, $2, $3, $4)"  # noqa: S608
            f" RETURNING {_COLUMNS}",
            uuid.uuid4(),
            meeting_id,
            JobStatus.QUEUED.value,
            trace_context,
        )
        assert record is not None
        return Job.from_record(record)

    async def claim(
        self,
        conn: asyncpg.Connection | asyncpg.Pool,
        worker: str,
        lease_s: float,
        *,
        owner_limit: int = 0,
    ) -> Job | None:
        """Takes the oldest due job: a QUEUED one, or a RUNNING one whose lease expired.

        Args:
            conn: The connection or pool.
            worker: A name for this worker (unique per process and task).
            lease_s: How long the claim holds without a heartbeat.
            owner_limit: Most jobs of one meeting owner running at once (0: no limit);
                the jobs of an owner at the limit stay queued, passed over, until one of
                theirs ends. Claims are then serialised (an advisory lock) so that two
                workers cannot both take an owner's last slot.

        Returns:
            The claimed job (RUNNING, attempts incremented), or None when none is due.
        """
        if owner_limit == 0:
            return await self._claim(conn, worker, lease_s, 0)
        async with _connection(conn) as held, held.transaction():
            await held.execute("SELECT pg_advisory_xact_lock($1)", _CLAIM_LOCK)
            return await self._claim(held, worker, lease_s, owner_limit)

    async def _claim(
        self,
        conn: asyncpg.Connection | asyncpg.Pool,
        worker: str,
        lease_s: float,
        owner_limit: int,
    ) -> Job | None:
        record = await conn.fetchrow(
            f"""
            WITH due AS (
                SELECT j.id FROM jobs j JOIN meetings m ON m.id = j.meeting_id
                WHERE ((j.status = 'QUEUED' AND j.next_attempt_at <= clock_timestamp())
                   OR (j.status = 'RUNNING' AND j.lease_expires_at < clock_timestamp()))
                  AND ($3 = 0 OR (
                      SELECT count(*) FROM jobs r JOIN meetings rm ON rm.id = r.meeting_id
                      WHERE rm.owner = m.owner AND r.status = 'RUNNING'
                        AND r.lease_expires_at >= clock_timestamp()) < $3)
                ORDER BY j.next_attempt_at, j.create_time
                LIMIT 1
                FOR UPDATE OF j SKIP LOCKED
            )
            UPDATE jobs SET status = 'RUNNING', lease_owner = $1,
                lease_expires_at = clock_timestamp() + make_interval(secs => $2),
                attempts = attempts + 1, update_time = clock_timestamp()
            FROM due WHERE jobs.id = due.id
            RETURNING {", ".join("jobs." + c.strip() for c in _COLUMNS.split(","))}
            """,  # noqa: S608
            worker,
            lease_s,
            owner_limit,
        )
        return None if record is None else Job.from_record(record)

    async def heartbeat(
        self,
        conn: asyncpg.Connection | asyncpg.Pool,
        job_id: uuid.UUID,
        worker: str,
        lease_s: float,
    ) -> dt.datetime:
        """Extends this worker's lease.

        Returns:
            The new expiry.

        Raises:
            JobLost: The job is gone (meeting deleted) or no longer leased to `worker`.
        """
        expires: dt.datetime | None = await conn.fetchval(
            """
            UPDATE jobs SET lease_expires_at = clock_timestamp() + make_interval(secs => $3),
                update_time = clock_timestamp()
            WHERE id = $1 AND status = 'RUNNING' AND lease_owner = $2
            RETURNING lease_expires_at
            """,
            job_id,
            worker,
            lease_s,
        )
        if expires is None:
            raise JobLost(f"job {job_id} is no longer leased to {worker}")
        return expires

    async def complete(
        self, conn: asyncpg.Connection | asyncpg.Pool, job_id: uuid.UUID, worker: str
    ) -> None:
        """Marks this worker's job SUCCEEDED.

        Raises:
            JobLost: The job is gone or not leased to `worker`.
        """
        await self._finish(conn, job_id, worker, JobStatus.SUCCEEDED, "", None, False)

    async def fail(
        self,
        conn: asyncpg.Connection | asyncpg.Pool,
        job_id: uuid.UUID,
        worker: str,
        error: str,
        *,
        retry_in: float | None,
        gpu_wait: bool = False,
    ) -> Job:
        """Ends this worker's attempt with an error.

        Args:
            conn: The connection or pool.
            job_id: The job.
            worker: The worker holding it.
            error: Why, in words a user can read.
            retry_in: Seconds until it may be claimed again (see
                `mesh_common.retry.backoff_delay`); None gives up (FAILED).
            gpu_wait: The attempt found no GPU node: it is not counted in `attempts`, and
                the job's wait for one goes on (`gpu_wait_since`, `gpu_waits`). Any other
                end of an attempt ends that wait.

        Returns:
            The job after the change.

        Raises:
            JobLost: The job is gone or not leased to `worker`.
        """
        status = JobStatus.FAILED if retry_in is None else JobStatus.QUEUED
        return await self._finish(conn, job_id, worker, status, error, retry_in, gpu_wait)

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

    async def get(self, conn: asyncpg.Connection | asyncpg.Pool, job_id: uuid.UUID) -> Job | None:
        """Reads a job."""
        record = await conn.fetchrow(f"SELECT {_COLUMNS} FROM jobs WHERE id = $1", job_id)  # noqa: S608
        return None if record is None else Job.from_record(record)

    async def for_meeting(
        self, conn: asyncpg.Connection | asyncpg.Pool, meeting_id: uuid.UUID
    ) -> list[Job]:
        """Reads a meeting's jobs, oldest first."""
        records = await conn.fetch(
            f"SELECT {_COLUMNS} FROM jobs WHERE meeting_id = $1 ORDER BY create_time",  # noqa: S608
            meeting_id,
        )
        return [Job.from_record(r) for r in records]

    async def _finish(
        self,
        conn: asyncpg.Connection | asyncpg.Pool,
        job_id: uuid.UUID,
        worker: str,
        status: JobStatus,
        error: str,
        retry_in: float | None,
        gpu_wait: bool,
    ) -> Job:
        record = await conn.fetchrow(
            f"""
            UPDATE jobs SET status = $3, last_error = $4, lease_owner = NULL,
                lease_expires_at = NULL,
                next_attempt_at = clock_timestamp() + make_interval(secs => COALESCE($5, 0)),
                attempts = attempts - CASE WHEN $6 THEN 1 ELSE 0 END,
                gpu_waits = CASE WHEN $6 THEN gpu_waits + 1 ELSE 0 END,
                gpu_wait_since = CASE WHEN $6
                    THEN COALESCE(gpu_wait_since, clock_timestamp()) END,
                update_time = clock_timestamp()
            WHERE id = $1 AND status = 'RUNNING' AND lease_owner = $2
            RETURNING {_COLUMNS}
            """,  # noqa: S608
            job_id,
            worker,
            status.value,
            error,
            retry_in,
            gpu_wait,
        )
        if record is None:
            raise JobLost(f"job {job_id} is no longer leased to {worker}")
        return Job.from_record(record)


@contextlib.asynccontextmanager
async def _connection(
    conn: asyncpg.Connection | asyncpg.Pool,
) -> AsyncIterator[asyncpg.Connection]:
    """Yields the connection, or one acquired from the pool for the block."""
    if isinstance(conn, asyncpg.Pool):
        async with conn.acquire() as acquired:
            yield acquired
    else:
        yield conn
