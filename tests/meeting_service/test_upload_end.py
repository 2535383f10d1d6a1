"""The end of a recording: an explicit `end`, and seals whose sealer is gone."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterable

import grpc
import pytest

from gen.meeting.v1 import (
    meeting_pb2,
    meeting_service_pb2,
    meeting_service_pb2_grpc,
    upload_end_pb2,
)
from meeting_service.db.database import Database
from meeting_service.server import run_meeting_service
from tests.meeting_service.helpers import (
    Stub,
    create,
    make_wav,
    meeting_status,
    requests,
    user,
    wait_for,
)
from tests.support.meeting import auth, error_reason, meeting_settings


async def _explicit(
    meeting_id: str, chunks: Iterable[bytes], *, offset: int = 0, end: int | None = None
) -> AsyncIterator[meeting_service_pb2.UploadAudioRequest]:
    metadata = meeting_service_pb2.UploadMetadata(
        meeting_id=meeting_id, content_type="audio/wav", offset=offset, explicit_end=True
    )
    yield meeting_service_pb2.UploadAudioRequest(metadata=metadata)
    for chunk in chunks:
        yield meeting_service_pb2.UploadAudioRequest(chunk=chunk)
    if end is not None:
        yield meeting_service_pb2.UploadAudioRequest(end=upload_end_pb2.UploadEnd(total_size=end))


async def test_a_stream_without_its_end_keeps_its_bytes_and_completes_nothing(
    meeting_stub: Stub,
) -> None:
    owner = user()
    meeting = await create(meeting_stub, owner)
    audio = make_wav(2.0)
    half = len(audio) // 2
    cut = await meeting_stub.UploadAudio(
        _explicit(meeting.id, [audio[:half]]), metadata=auth(owner)
    )
    assert (cut.complete, cut.stored_size) == (False, half)
    now = await meeting_status(meeting_stub, owner, meeting.id)
    assert now == meeting_pb2.MEETING_STATUS_UPLOADING
    # An end that is not where the bytes end completes nothing either.
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await meeting_stub.UploadAudio(
            _explicit(meeting.id, [audio[half:]], offset=half, end=len(audio) + 1),
            metadata=auth(owner),
        )
    code, reason, _ = error_reason(refused.value)
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "UPLOAD_OFFSET_MISMATCH")
    now = await meeting_status(meeting_stub, owner, meeting.id)
    assert now == meeting_pb2.MEETING_STATUS_UPLOADING
    status = await meeting_stub.GetUploadStatus(
        meeting_service_pb2.GetUploadStatusRequest(meeting_id=meeting.id), metadata=auth(owner)
    )
    done = await meeting_stub.UploadAudio(
        _explicit(
            meeting.id, [audio[status.stored_size :]], offset=status.stored_size, end=len(audio)
        ),
        metadata=auth(owner),
    )
    assert (done.complete, done.stored_size) == (True, len(audio))
    assert done.duration.seconds == 2


async def test_without_explicit_end_the_end_of_the_stream_ends_the_recording(
    meeting_stub: Stub,
) -> None:
    owner = user()
    meeting = await create(meeting_stub, owner)
    audio = make_wav(1.0)
    response = await meeting_stub.UploadAudio(requests(meeting.id, [audio]), metadata=auth(owner))
    assert response.complete


async def test_a_seal_left_by_a_dead_sealer_is_completed_without_a_client(
    database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    settings = meeting_settings(
        database_url, tmp_path_factory.mktemp("seals"), seal_sweep_interval_s=0.2
    )
    async with (
        run_meeting_service(settings, database=Database(database_url)) as running,
        grpc.aio.insecure_channel(running.address) as channel,
    ):
        stub = meeting_service_pb2_grpc.MeetingServiceStub(channel)
        owner = user()
        meeting = await create(stub, owner)
        audio = make_wav(2.0)
        await stub.UploadAudio(_explicit(meeting.id, [audio]), metadata=auth(owner))
        mid = uuid.UUID(meeting.id)
        repo = running.services.processing.uploads
        # A sealer that stored every byte and sealed, then died before completing.
        async with running.services.pool.acquire() as sealer:
            await repo.hold_seal(sealer, mid)
            await repo.seal(sealer, mid)
            await repo.release_seal(sealer, mid)

        await wait_for(
            lambda: meeting_status(stub, owner, meeting.id),
            lambda status: status == meeting_pb2.MEETING_STATUS_QUEUED,
        )
        row = await repo.get(running.services.pool, mid)
        assert row is not None and row.complete
