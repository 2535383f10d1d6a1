"""Quotas that need the GPU path: concurrent jobs (a job over the quota waits in the queue
and is processed later) and concurrent live sessions (refused at their start)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from gen.meeting.v1 import meeting_pb2, meeting_service_pb2
from meeting_service.jobs.repository import JobStatus
from tests.support.gpu import Pki, as_wav, pcm16, silence
from tests.support.meeting import auth
from tests.support.mesh import (
    WAIT,
    Mesh,
    PausingRecognizer,
    dialogue,
    pausing_engines,
    run_mesh,
)

S = meeting_pb2.MeetingStatus


async def create(mesh: Mesh, user: str) -> str:
    response = await mesh.stub.CreateMeeting(
        meeting_service_pb2.CreateMeetingRequest(meeting=meeting_pb2.Meeting(title="q")),
        metadata=auth(user),
        timeout=WAIT,
    )
    meeting_id: str = response.meeting.id
    return meeting_id


async def upload(mesh: Mesh, user: str, meeting_id: str, data: bytes) -> None:
    async def requests() -> AsyncIterator[meeting_service_pb2.UploadAudioRequest]:
        yield meeting_service_pb2.UploadAudioRequest(
            metadata=meeting_service_pb2.UploadMetadata(
                meeting_id=meeting_id, content_type="audio/wav", total_size=len(data)
            )
        )
        yield meeting_service_pb2.UploadAudioRequest(chunk=data)

    response = await mesh.stub.UploadAudio(requests(), metadata=auth(user), timeout=WAIT)
    assert response.complete


async def until_status(mesh: Mesh, user: str, meeting_id: str, wanted: frozenset[int]) -> int:
    """Follows a meeting's events until its status is one of `wanted`; returns it."""
    call = mesh.stub.StreamTranscript(
        meeting_service_pb2.StreamTranscriptRequest(meeting_id=meeting_id),
        metadata=auth(user),
        timeout=WAIT,
    )
    try:
        async for response in call:
            event = response.event
            if event.HasField("status_change") and event.status_change.status in wanted:
                return int(event.status_change.status)
    finally:
        call.cancel()
    raise AssertionError(f"meeting {meeting_id} never reached {wanted}")


ENDED = frozenset({S.MEETING_STATUS_COMPLETED, S.MEETING_STATUS_FAILED})


async def test_a_job_over_the_concurrent_jobs_quota_waits_in_the_queue(
    db_url: str, pki: Pki, tmp_path: Path
) -> None:
    recognizer = PausingRecognizer()
    async with run_mesh(
        db_url,
        pki,
        tmp_path,
        engines=(pausing_engines(recognizer),),
        pipeline_workers=2,
        quota_concurrent_jobs=1,
    ) as mesh:
        alice, bob = f"alice-{uuid.uuid4().hex[:6]}", f"bob-{uuid.uuid4().hex[:6]}"
        audio = as_wav(dialogue(2))
        first = await create(mesh, alice)
        await upload(mesh, alice, first, audio)
        await asyncio.wait_for(recognizer.paused.wait(), WAIT)  # alice's one job runs
        second = await create(mesh, alice)
        await upload(mesh, alice, second, audio)  # queued before bob's...
        other = await create(mesh, bob)
        await upload(mesh, bob, other, audio)
        # ...yet bob's is processed while alice's second waits, untouched.
        assert await until_status(mesh, bob, other, ENDED) == S.MEETING_STATUS_COMPLETED
        services = mesh.service.services
        (waiting,) = await services.jobs.for_meeting(services.pool, uuid.UUID(second))
        assert (waiting.status, waiting.attempts) == (JobStatus.QUEUED, 0)
        recognizer.release.set()
        assert await until_status(mesh, alice, first, ENDED) == S.MEETING_STATUS_COMPLETED
        assert await until_status(mesh, alice, second, ENDED) == S.MEETING_STATUS_COMPLETED


async def first_status(call: Any) -> int:
    """The status of a live session's first event (LIVE once it started)."""
    response = await call.read()
    assert isinstance(response, meeting_service_pb2.LiveTranscribeResponse)
    return int(response.event.status_change.status)


async def test_a_live_session_over_the_quota_is_refused_at_its_start(
    db_url: str, pki: Pki, tmp_path: Path
) -> None:
    async with run_mesh(db_url, pki, tmp_path, quota_live_sessions=1) as mesh:
        user = f"carol-{uuid.uuid4().hex[:6]}"
        first, second = await create(mesh, user), await create(mesh, user)
        stop = asyncio.Event()

        async def live(meeting_id: str) -> AsyncIterator[meeting_service_pb2.LiveTranscribeRequest]:
            yield meeting_service_pb2.LiveTranscribeRequest(
                config=meeting_service_pb2.LiveAudioConfig(meeting_id=meeting_id)
            )
            yield meeting_service_pb2.LiveTranscribeRequest(audio=pcm16(silence(0.5)))
            await stop.wait()

        session = mesh.stub.LiveTranscribe(live(first), metadata=auth(user), timeout=WAIT)
        assert await first_status(session) == S.MEETING_STATUS_LIVE
        refused = mesh.stub.LiveTranscribe(live(second), metadata=auth(user), timeout=WAIT)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await refused.read()
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "live sessions" in str(caught.value.details())
        other_user = f"dave-{uuid.uuid4().hex[:6]}"  # the quota is per caller
        theirs = await create(mesh, other_user)
        their_session = mesh.stub.LiveTranscribe(live(theirs), metadata=auth(other_user))
        assert await first_status(their_session) == S.MEETING_STATUS_LIVE
        stop.set()  # the first session ends; its meeting leaves LIVE
        await until_status(mesh, user, first, frozenset({S.MEETING_STATUS_DIARIZING, *ENDED}))
        session.cancel()
        again = mesh.stub.LiveTranscribe(live(second), metadata=auth(user), timeout=WAIT)
        assert await first_status(again) == S.MEETING_STATUS_LIVE
        again.cancel()
        their_session.cancel()
