"""The jobs repository the pipeline builds on: claim, lease, heartbeat, retry, cancel."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from gen.meeting.v1 import meeting_service_pb2
from meeting_service.jobs.repository import JobLost, JobStatus
from meeting_service.server import RunningMeetingService
from tests.meeting_service.helpers import Stub, create, make_wav, upload, user
from tests.support.meeting import auth


async def _queued_meeting(stub: Stub, owner: str) -> str:
    meeting = await create(stub, owner)
    response = await upload(stub, owner, meeting.id, make_wav(0.5))
    assert response.complete
    return meeting.id


async def _drain(service: RunningMeetingService) -> None:
    """Claims and completes whatever earlier tests left queued in this module's database."""
    jobs = service.services.jobs
    while (job := await jobs.claim(service.services.pool, "janitor", 30)) is not None:
        await jobs.complete(service.services.pool, job.id, "janitor")


async def test_concurrent_workers_never_claim_the_same_job(
    meeting_stub: Stub, meeting_service: RunningMeetingService
) -> None:
    await _drain(meeting_service)
    owner = user()
    meeting_ids = {await _queued_meeting(meeting_stub, owner) for _ in range(4)}
    jobs, pool = meeting_service.services.jobs, meeting_service.services.pool
    claims = await asyncio.gather(*(jobs.claim(pool, f"worker-{i}", 30) for i in range(6)))
    claimed = [c for c in claims if c is not None]
    assert sorted(str(c.meeting_id) for c in claimed) == sorted(meeting_ids)
    assert len({c.id for c in claimed}) == 4
    assert all(c.status == JobStatus.RUNNING and c.attempts == 1 for c in claimed)
    for job in claimed:
        await jobs.complete(pool, job.id, job.lease_owner or "")
        assert (await jobs.get(pool, job.id)).status == JobStatus.SUCCEEDED  # type: ignore[union-attr]


async def test_an_expired_lease_passes_the_job_to_another_worker(
    meeting_stub: Stub, meeting_service: RunningMeetingService
) -> None:
    await _drain(meeting_service)
    jobs, pool = meeting_service.services.jobs, meeting_service.services.pool
    await _queued_meeting(meeting_stub, user())
    first = await jobs.claim(pool, "crashed", 0.0)  # a lease that lapses at once
    assert first is not None
    second = await jobs.claim(pool, "survivor", 30)
    assert second is not None and second.id == first.id
    assert second.attempts == 2
    with pytest.raises(JobLost):
        await jobs.heartbeat(pool, first.id, "crashed", 30)
    with pytest.raises(JobLost):
        await jobs.complete(pool, first.id, "crashed")
    expires = await jobs.heartbeat(pool, second.id, "survivor", 60)
    assert second.lease_expires_at is not None and expires > second.lease_expires_at
    await jobs.complete(pool, second.id, "survivor")


async def test_failure_retries_after_the_delay_or_gives_up(
    meeting_stub: Stub, meeting_service: RunningMeetingService
) -> None:
    await _drain(meeting_service)
    jobs, pool = meeting_service.services.jobs, meeting_service.services.pool
    await _queued_meeting(meeting_stub, user())
    job = await jobs.claim(pool, "w", 30)
    assert job is not None
    retried = await jobs.fail(pool, job.id, "w", "GPU node lost", retry_in=3600)
    assert (retried.status, retried.last_error, retried.lease_owner) == (
        JobStatus.QUEUED,
        "GPU node lost",
        None,
    )
    assert await jobs.claim(pool, "w", 30) is None  # not due for an hour
    async with pool.acquire() as conn:  # time passes
        await conn.execute("UPDATE jobs SET next_attempt_at = now() WHERE id = $1", job.id)
    again = await jobs.claim(pool, "w", 30)
    assert again is not None and again.attempts == 2
    failed = await jobs.fail(pool, again.id, "w", "not decodable", retry_in=None)
    assert failed.status == JobStatus.FAILED
    assert await jobs.claim(pool, "w", 30) is None


async def test_deleting_the_meeting_cancels_its_running_job(
    meeting_stub: Stub, meeting_service: RunningMeetingService
) -> None:
    await _drain(meeting_service)
    jobs, pool = meeting_service.services.jobs, meeting_service.services.pool
    owner = user()
    meeting_id = await _queued_meeting(meeting_stub, owner)
    job = await jobs.claim(pool, "w", 30)
    assert job is not None and str(job.meeting_id) == meeting_id
    # A call without a trace starts one, and the job continues it.
    assert len(job.trace_context.split("-")) == 4
    await meeting_stub.DeleteMeeting(
        meeting_service_pb2.DeleteMeetingRequest(meeting_id=meeting_id), metadata=auth(owner)
    )
    with pytest.raises(JobLost):
        await jobs.heartbeat(pool, job.id, "w", 30)
    assert await jobs.get(pool, job.id) is None
    assert await jobs.for_meeting(pool, uuid.UUID(meeting_id)) == []


async def test_upload_hands_its_traceparent_to_the_job(
    meeting_stub: Stub, meeting_service: RunningMeetingService
) -> None:
    from tests.meeting_service.helpers import chunks_of, requests

    owner = user()
    meeting = await create(meeting_stub, owner)
    traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    await meeting_stub.UploadAudio(
        requests(meeting.id, chunks_of(make_wav(0.5))),
        metadata=(*auth(owner), ("traceparent", traceparent)),
    )
    (job,) = await meeting_service.services.jobs.for_meeting(
        meeting_service.services.pool, uuid.UUID(meeting.id)
    )
    # The job continues the caller's trace, as a descendant of the upload's own span.
    version, trace_id, span_id, _ = job.trace_context.split("-")
    assert (version, trace_id) == ("00", "4bf92f3577b34da6a3ce929d0e0e4736")
    assert span_id != "00f067aa0ba902b7"


async def test_stats_count_jobs_by_status_and_age_the_oldest_queued(
    meeting_stub: Stub, meeting_service: RunningMeetingService
) -> None:
    await _drain(meeting_service)
    jobs, pool = meeting_service.services.jobs, meeting_service.services.pool
    before = await jobs.stats(pool)
    assert before.counts[JobStatus.QUEUED] == 0 and before.oldest_queued_age_s == 0
    owner = user()
    for _ in range(2):
        await _queued_meeting(meeting_stub, owner)
    claimed = await jobs.claim(pool, "worker", 30)
    assert claimed is not None
    stats = await jobs.stats(pool)
    assert stats.counts[JobStatus.QUEUED] == 1
    assert stats.counts[JobStatus.RUNNING] == before.counts[JobStatus.RUNNING] + 1
    assert JobStatus.SUCCEEDED not in stats.counts
    assert stats.oldest_queued_age_s > 0
    await jobs.complete(pool, claimed.id, "worker")
