"""Uploads against each recording store: PostgreSQL rows and a real S3 server (SeaweedFS).

The same client-visible rules hold for both: a complete upload is probed and reads back
byte for byte, a dropped upload resumes from the durable stored size it is told (in S3
that is whole parts only), a bad checksum or non-audio is discarded, a deleted meeting
takes its recording with it. S3 alone: abandoned multipart uploads are aborted.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator

import grpc
import pytest
import pytest_asyncio

from gen.meeting.v1 import meeting_pb2, meeting_service_pb2, meeting_service_pb2_grpc
from meeting_mesh.seaweedfs import SeaweedFS
from meeting_service.db.database import Database
from meeting_service.recordings.s3_store import S3Store
from meeting_service.recordings.store import iter_spans, reader
from meeting_service.server import RunningMeetingService, run_meeting_service
from tests.meeting_service.helpers import (
    Stub,
    chunks_of,
    create,
    make_wav,
    meeting_status,
    requests,
    sha256,
    stored_size,
    upload,
    user,
    wait_for,
)
from tests.support.meeting import auth, error_reason, meeting_settings
from tests.support.s3 import s3_settings

PART = 5 * 1024 * 1024
MIB = 1024 * 1024


@pytest_asyncio.fixture(scope="module", params=["postgres", "s3"])
async def service(
    request: pytest.FixtureRequest,
    database_url: str,
    s3_server: SeaweedFS,
    s3_bucket: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[RunningMeetingService]:
    """A meeting_service storing recordings in the parameter's store."""
    store = s3_settings(s3_server, s3_bucket) if request.param == "s3" else {}
    settings = meeting_settings(database_url, tmp_path_factory.mktemp("stores"), **store)
    async with run_meeting_service(settings, database=Database(database_url)) as running:
        yield running


@pytest_asyncio.fixture(scope="module")
async def stub(service: RunningMeetingService) -> AsyncIterator[Stub]:
    async with grpc.aio.insecure_channel(service.address) as channel:
        yield meeting_service_pb2_grpc.MeetingServiceStub(channel)


async def _stored(service: RunningMeetingService, meeting_id: str) -> bytes:
    spans = iter_spans(reader(service.services.recordings, uuid.UUID(meeting_id)))
    return b"".join([span async for span in spans])


async def _multipart_uploads(store: S3Store, meeting_id: str) -> list[str]:
    client = await store.client()
    listing = await client.list_multipart_uploads(
        Bucket=store.options.bucket, Prefix=store.key(uuid.UUID(meeting_id))
    )
    return [u["UploadId"] for u in listing.get("Uploads", []) if "UploadId" in u]


async def _start_dropped_upload(
    stub: Stub, owner: str, meeting_id: str, audio: bytes, sent: int, durable: int
) -> None:
    """Sends `sent` bytes, waits until `durable` are stored, then drops the stream."""
    hold = asyncio.Event()

    async def attempt() -> AsyncIterator[meeting_service_pb2.UploadAudioRequest]:
        async for request in requests(
            meeting_id, chunks_of(audio[:sent], MIB), total_size=len(audio)
        ):
            yield request
        await hold.wait()  # the connection "drops" while the client still has bytes

    call = stub.UploadAudio(attempt(), metadata=auth(owner))
    await wait_for(lambda: stored_size(stub, owner, meeting_id), lambda s: s == durable)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call


def _is_s3(service: RunningMeetingService) -> bool:
    return isinstance(service.services.recordings, S3Store)


async def test_a_complete_upload_is_probed_and_reads_back_byte_for_byte(
    stub: Stub, service: RunningMeetingService
) -> None:
    owner = user()
    meeting = await create(stub, owner)
    audio = make_wav(2.5)
    response = await upload(stub, owner, meeting.id, audio, sha=sha256(audio))
    assert (response.complete, response.stored_size) == (True, len(audio))
    assert response.duration.ToMilliseconds() == 2500
    assert await _stored(service, meeting.id) == audio


@pytest.mark.parametrize(
    "seconds",
    [
        400.0,  # ~12.8 MB: two whole parts and a shorter last one
        (2 * PART - 44) / 2 / 16_000,  # the 44-byte header and samples: two parts exactly
    ],
    ids=["parts_and_a_rest", "whole_parts_only"],
)
async def test_a_recording_of_several_parts_reads_back_byte_for_byte(
    stub: Stub, service: RunningMeetingService, seconds: float
) -> None:
    # In S3, all from one stream's writer. With whole parts only, completion has no bytes
    # left to store, and the last part, stored as the stream ended, is counted before the
    # recording is sealed (a sealed recording takes no more parts).
    owner = user()
    meeting = await create(stub, owner)
    audio = make_wav(seconds)
    assert 2 * PART <= len(audio) < 3 * PART
    response = await stub.UploadAudio(
        requests(meeting.id, chunks_of(audio, MIB), sha=sha256(audio)), metadata=auth(owner)
    )
    assert (response.complete, response.stored_size) == (True, len(audio))
    assert await _stored(service, meeting.id) == audio


async def test_a_dropped_upload_resumes_after_the_durable_bytes(
    stub: Stub, service: RunningMeetingService
) -> None:
    owner = user()
    meeting = await create(stub, owner)
    audio = make_wav(200.0)  # ~6.4 MB: more than one 5 MiB part
    sent = 6 * MIB
    # PostgreSQL keeps every chunk; S3 only whole parts (the rest was in memory).
    durable = PART if _is_s3(service) else sent
    await _start_dropped_upload(stub, owner, meeting.id, audio, sent, durable)
    assert await stored_size(stub, owner, meeting.id) == durable
    assert await meeting_status(stub, owner, meeting.id) == meeting_pb2.MEETING_STATUS_UPLOADING

    response = await stub.UploadAudio(
        requests(meeting.id, chunks_of(audio[durable:], MIB), offset=durable, sha=sha256(audio)),
        metadata=auth(owner),
    )
    assert (response.complete, response.stored_size) == (True, len(audio))
    assert response.duration.ToMilliseconds() == 200_000
    assert await _stored(service, meeting.id) == audio


async def test_a_stream_that_stops_after_a_whole_part_is_told_it_is_stored(
    stub: Stub, service: RunningMeetingService
) -> None:
    # In S3 a part is counted while the stream goes on to the next one: a stream that
    # ends right after a part still hears of that part, and resumes after it.
    owner = user()
    meeting = await create(stub, owner)
    audio = make_wav(200.0)
    response = await stub.UploadAudio(
        requests(meeting.id, chunks_of(audio[:PART], MIB), total_size=len(audio)),
        metadata=auth(owner),
    )
    assert (response.complete, response.stored_size) == (False, PART)
    assert await stored_size(stub, owner, meeting.id) == PART

    response = await stub.UploadAudio(
        requests(meeting.id, chunks_of(audio[PART:], MIB), offset=PART, sha=sha256(audio)),
        metadata=auth(owner),
    )
    assert (response.complete, response.stored_size) == (True, len(audio))
    assert await _stored(service, meeting.id) == audio


async def test_a_checksum_mismatch_discards_the_recording(
    stub: Stub, service: RunningMeetingService
) -> None:
    owner = user()
    meeting = await create(stub, owner)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await upload(stub, owner, meeting.id, make_wav(1.0), sha=sha256(b"other"))
    assert error_reason(caught.value)[:2] == (
        grpc.StatusCode.DATA_LOSS,
        "UPLOAD_CHECKSUM_MISMATCH",
    )
    now = await meeting_status(stub, owner, meeting.id)
    assert now == meeting_pb2.MEETING_STATUS_AWAITING_AUDIO
    assert await _stored(service, meeting.id) == b""


async def test_an_upload_past_its_size_limit_after_a_whole_part_leaves_nothing_behind(
    stub: Stub, service: RunningMeetingService
) -> None:
    # In S3 the limit is passed while the stored part is being counted: the discard
    # comes after that count, and the next upload starts from nothing.
    owner = user()
    meeting = await create(stub, owner)
    audio = make_wav(200.0)  # ~6.4 MB
    too_much = requests(meeting.id, chunks_of(audio, MIB), size_limit=PART + MIB // 2)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.UploadAudio(too_much, metadata=auth(owner))
    assert error_reason(caught.value)[:2] == (
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "UPLOAD_TOO_LARGE",
    )
    assert await stored_size(stub, owner, meeting.id) == 0
    assert await _stored(service, meeting.id) == b""
    if isinstance(store := service.services.recordings, S3Store):
        assert await _multipart_uploads(store, meeting.id) == []

    response = await upload(stub, owner, meeting.id, audio, sha=sha256(audio))
    assert (response.complete, response.stored_size) == (True, len(audio))
    assert await _stored(service, meeting.id) == audio


async def test_non_audio_is_discarded_and_the_meeting_takes_audio_again(
    stub: Stub, service: RunningMeetingService
) -> None:
    owner = user()
    meeting = await create(stub, owner)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await upload(stub, owner, meeting.id, b"not a recording\n" * 10_000)
    assert error_reason(caught.value)[:2] == (grpc.StatusCode.INVALID_ARGUMENT, "NOT_AUDIO")
    assert await _stored(service, meeting.id) == b""
    audio = make_wav(0.5)
    assert (await upload(stub, owner, meeting.id, audio)).complete
    assert await _stored(service, meeting.id) == audio


async def test_deleting_a_meeting_deletes_its_recording_and_its_unfinished_upload(
    stub: Stub, service: RunningMeetingService
) -> None:
    owner = user()
    done, receiving = await create(stub, owner), await create(stub, owner)
    await upload(stub, owner, done.id, make_wav(1.0))
    audio = make_wav(200.0)
    durable = PART if _is_s3(service) else 6 * MIB
    await _start_dropped_upload(stub, owner, receiving.id, audio, 6 * MIB, durable)
    store = service.services.recordings
    if isinstance(store, S3Store):
        assert len(await _multipart_uploads(store, receiving.id)) == 1
    for meeting in (done, receiving):
        await stub.DeleteMeeting(
            meeting_service_pb2.DeleteMeetingRequest(meeting_id=meeting.id), metadata=auth(owner)
        )
        assert await _stored(service, meeting.id) == b""
    if isinstance(store, S3Store):
        assert await _multipart_uploads(store, receiving.id) == []


# PostgreSQL keeps every chunk of an unfinished upload: only S3 has uploads to abandon.
@pytest.mark.parametrize("service", ["s3"], indirect=True)
async def test_an_abandoned_multipart_upload_is_aborted_and_the_upload_restarts(
    stub: Stub, service: RunningMeetingService
) -> None:
    store = service.services.recordings
    assert isinstance(store, S3Store)
    owner = user()
    meeting = await create(stub, owner)
    audio = make_wav(200.0)
    await _start_dropped_upload(stub, owner, meeting.id, audio, 6 * MIB, PART)
    active = S3Store(store.pool, store.uploads, store.options)
    assert await active.sweep() == 0  # a day's grace by default
    await active.close()
    impatient = S3Store(
        store.pool, store.uploads, dataclasses.replace(store.options, abandoned_after_s=1e-3)
    )
    try:
        assert await impatient.sweep() >= 1
    finally:
        await impatient.close()
    assert await _multipart_uploads(store, meeting.id) == []
    assert await stored_size(stub, owner, meeting.id) == 0
    response = await upload(stub, owner, meeting.id, audio, sha=sha256(audio))
    assert response.complete
    assert await _stored(service, meeting.id) == audio
