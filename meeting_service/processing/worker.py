"""Workers: claim queued jobs, keep their leases alive, retry or fail them.

`PipelineWorkers` runs `pipeline_workers` loops per process. Each loop claims the oldest
due job (`FOR UPDATE SKIP LOCKED`, so replicas never share one), runs it while a
heartbeat extends its lease, and looks again; an idle loop looks every
`pipeline_poll_interval_s`. A heartbeat that finds the job gone (its meeting was deleted)
or taken over cancels the run at once. A failed attempt is announced as a status change
back to QUEUED with the reason and tried again after an exponential, jittered delay, up to
`pipeline_max_attempts`; then, or at once for failures that cannot pass (undecodable
audio, a request the GPU service refuses), the meeting is FAILED with the reason. An
attempt that found no GPU node is not the recording's fault and is not counted: the job
waits in the queue (QUEUED, "waiting for a GPU node: ..."), tried again with backoff up to
`pipeline_gpu_wait_retry_max_s`, until a node takes it or `pipeline_gpu_wait_max_s` has
passed since its wait began.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import socket
import uuid
from collections.abc import Awaitable, Callable

import asyncpg

from contract_errors.meeting import MeetingError
from gen.meeting.v1 import meeting_pb2
from meeting_service.db.database import CONNECTION_ERRORS
from meeting_service.jobs.lease import Lease
from meeting_service.jobs.repository import Job, JobLost
from meeting_service.processing.failures import Failure, classify
from meeting_service.processing.job import JobParts, JobRunner, StageFailed
from meeting_service.settings import MeetingServiceSettings
from mesh_common.logging import logger
from mesh_common.retry import backoff_delay

_Write = Callable[[asyncpg.Connection], Awaitable[None]]
_INTERRUPTED = "processing was interrupted because its server stopped; it will resume"


class PipelineWorkers:
    """The job loops of one process.

    Args:
        parts: What jobs use.
        settings: `pipeline_*` settings.
    """

    def __init__(self, parts: JobParts, settings: MeetingServiceSettings) -> None:
        self._jobs = parts.jobs
        self._log = parts.log
        self._pool: asyncpg.Pool = parts.pool
        self._settings = settings
        self._runner = JobRunner(parts)
        self._name = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._loops: list[asyncio.Task[None]] = []
        self._wake = asyncio.Event()
        self._release_on_stop = True

    def start(self) -> None:
        """Starts the loops."""
        for number in range(self._settings.pipeline_workers):
            worker = f"{self._name}:{number}"
            self._loops.append(asyncio.create_task(self._loop(worker), name=f"job-{worker}"))
        logger.bind(workers=len(self._loops), name=self._name).info("pipeline workers started")

    def wake(self) -> None:
        """Makes idle loops look for a job now (e.g. right after one was queued here)."""
        self._wake.set()

    async def stop(self, *, release: bool = True) -> None:
        """Stops every loop and the jobs they run.

        Args:
            release: Hand running jobs back to the queue at once (QUEUED, with the
                reason); False leaves their leases to expire, as a crash would.
        """
        self._release_on_stop = release
        for task in self._loops:
            task.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        self._loops.clear()

    async def _loop(self, worker: str) -> None:
        while True:
            job: Job | None = None
            try:
                job = await self._jobs.claim(
                    self._pool,
                    worker,
                    self._settings.pipeline_lease_s,
                    owner_limit=self._settings.quota_concurrent_jobs,
                )
                if job is not None:
                    await self._process(job, worker)
                    continue
            except CONNECTION_ERRORS as error:
                logger.bind(error=repr(error)).warning("pipeline worker: database unavailable")
            except Exception:
                # A bug must not silently end the loop: log it, and the lease lets the job
                # be taken over.
                logger.bind(worker=worker).exception("pipeline worker: unexpected error")
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._settings.pipeline_poll_interval_s)

    async def _process(self, job: Job, worker: str) -> None:
        log = logger.bind(job_id=str(job.id), meeting_id=str(job.meeting_id), worker=worker)
        if job.attempts > self._settings.pipeline_max_attempts:
            # Workers died holding it that often (the lease ran out each time).
            reason = job.last_error or "its workers stopped before finishing"
            await self._give_up(job, worker, Failure(reason, False))
            return
        run = asyncio.create_task(self._runner.run(job, Lease(job.id, worker)))
        lost: list[JobLost] = []
        heartbeat = asyncio.create_task(self._heartbeat(job, worker, run, lost))
        try:
            await run
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                run.cancel()
                if self._release_on_stop:
                    await asyncio.shield(self._release(job, worker))
                raise
            log.bind(why=str(lost[0]) if lost else "cancelled").info("job cancelled")
        except JobLost as error:
            log.bind(why=str(error)).info("job dropped: it is no longer ours")
        except StageFailed as failed:
            failure = classify(failed.error, failed.step)
            log.bind(reason=failure.reason, retryable=failure.retryable).opt(
                exception=failed.error if not failure.retryable else None
            ).warning("job attempt failed")
            await self._fail(job, worker, failure)
        finally:
            heartbeat.cancel()

    async def _heartbeat(
        self, job: Job, worker: str, run: asyncio.Task[None], lost: list[JobLost]
    ) -> None:
        lease = self._settings.pipeline_lease_s
        while True:
            await asyncio.sleep(lease / 3)
            try:
                await self._jobs.heartbeat(self._pool, job.id, worker, lease)
            except JobLost as error:
                lost.append(error)
                run.cancel()
                return
            except CONNECTION_ERRORS as error:
                # The lease may run out; the run's own writes are fenced by it.
                logger.bind(job_id=str(job.id), error=repr(error)).warning("heartbeat failed")

    async def _fail(self, job: Job, worker: str, failure: Failure) -> None:
        if failure.waits_for_gpu:
            await self._wait_for_gpu(job, worker, failure)
            return
        max_attempts = self._settings.pipeline_max_attempts
        if not failure.retryable or job.attempts >= max_attempts:
            await self._give_up(job, worker, failure)
            return
        delay = max(
            backoff_delay(
                job.attempts,
                initial=self._settings.pipeline_backoff_initial_s,
                maximum=self._settings.pipeline_backoff_max_s,
            ),
            failure.retry_after or 0.0,
        )
        announced = (
            f"{failure.reason}; trying again in {delay:.0f} s "
            f"(attempt {job.attempts} of {max_attempts})"
        )

        async def requeue(conn: asyncpg.Connection) -> None:
            await self._log.change_status(
                conn, job.meeting_id, meeting_pb2.MEETING_STATUS_QUEUED, announced
            )
            await self._jobs.fail(conn, job.id, worker, failure.reason, retry_in=delay)

        await self._finish(job, requeue)

    async def _wait_for_gpu(self, job: Job, worker: str, failure: Failure) -> None:
        settings = self._settings
        since = job.gpu_wait_since
        waited = 0.0 if since is None else (dt.datetime.now(dt.UTC) - since).total_seconds()
        if waited >= settings.pipeline_gpu_wait_max_s:
            reason = f"{failure.reason} (no GPU node came back within {waited:.0f} s)"
            await self._give_up(job, worker, Failure(reason, False))
            return
        delay = max(
            backoff_delay(
                job.gpu_waits + 1,
                initial=settings.pipeline_backoff_initial_s,
                maximum=settings.pipeline_gpu_wait_retry_max_s,
            ),
            failure.retry_after or 0.0,
        )
        announced = f"{failure.reason}; trying again in {delay:.0f} s"

        async def requeue(conn: asyncpg.Connection) -> None:
            await self._log.change_status(
                conn, job.meeting_id, meeting_pb2.MEETING_STATUS_QUEUED, announced
            )
            await self._jobs.fail(
                conn, job.id, worker, failure.reason, retry_in=delay, gpu_wait=True
            )

        await self._finish(job, requeue)

    async def _give_up(self, job: Job, worker: str, failure: Failure) -> None:
        reason = failure.reason
        if failure.retryable:
            reason = f"{reason} (gave up after {job.attempts} attempts)"

        async def fail(conn: asyncpg.Connection) -> None:
            await self._log.change_status(
                conn, job.meeting_id, meeting_pb2.MEETING_STATUS_FAILED, reason
            )
            await self._jobs.fail(conn, job.id, worker, reason, retry_in=None)

        await self._finish(job, fail)
        logger.bind(job_id=str(job.id), reason=reason).warning("job failed for good")

    async def _release(self, job: Job, worker: str) -> None:
        async def requeue(conn: asyncpg.Connection) -> None:
            await self._log.change_status(
                conn, job.meeting_id, meeting_pb2.MEETING_STATUS_QUEUED, _INTERRUPTED
            )
            await self._jobs.fail(conn, job.id, worker, _INTERRUPTED, retry_in=0)

        await self._finish(job, requeue)

    async def _finish(self, job: Job, write: _Write) -> None:
        """Records how an attempt ended (the status event and the job, in one transaction).

        A job that is no longer ours, or a meeting that is gone, needs nothing recorded; a
        lost database leaves the job to be taken over when its lease runs out.
        """
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                await write(conn)
        except JobLost:
            pass
        except MeetingError as error:
            if error.reason != meeting_pb2.ERROR_REASON_MEETING_NOT_FOUND:
                raise
        except CONNECTION_ERRORS as error:
            logger.bind(job_id=str(job.id), error=repr(error)).warning(
                "could not record the end of a job attempt"
            )
