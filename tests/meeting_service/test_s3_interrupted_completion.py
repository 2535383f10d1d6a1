"""An S3 upload whose completion is cut off half way is finished, by the sweep or a resume.

The client sends every byte, the meeting service counts every part, then S3 stops
answering while the recording is being completed (the multipart upload's completion is
held in the network and reaches S3 later) and the client gives up: what a process killed
between completing the object in S3 and recording the completion in PostgreSQL leaves.
Nothing may be lost and nothing may stay stuck: the seal sweep finishes the recording
without its client, and a client that resumes instead (offset = stored size, no more
bytes) completes it without a conflict.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import grpc
import pytest

from gen.meeting.v1 import (
    meeting_pb2,
    meeting_service_pb2,
    meeting_service_pb2_grpc,
    upload_end_pb2,
)
from meeting_mesh.seaweedfs import SeaweedFS
from meeting_service.db.database import Database
from meeting_service.recordings import pcm
from meeting_service.recordings.repository import UploadRow
from meeting_service.recordings.s3_store import HELD_PARTS, S3_ERRORS, S3Store
from meeting_service.recordings.store import iter_spans, reader
from meeting_service.server import RunningMeetingService, run_meeting_service
from mesh_common.errors import view_rpc_error
from tests.meeting_service.helpers import (
    Stub,
    chunks_of,
    create,
    meeting_status,
    sha256,
    stored_size,
    user,
    wait_for,
)
from tests.support.fault_proxy import FaultProxy
from tests.support.meeting import auth, meeting_settings
from tests.support.s3 import s3_behind_a_proxy, s3_settings

PART = 5 * 1024 * 1024
MIB = 1024 * 1024
S3_TIMEOUT_S = 1.0


def _recording(size: int) -> bytes:
    """A WAV of exactly `size` bytes (whole parts, so every byte is counted before the end)."""
    data = size - pcm.WAV_HEADER_BYTES
    return pcm.wav_header(data) + (bytes(range(256)) * (data // 256 + 1))[:data]


def _metadata(meeting_id: str, audio: bytes, offset: int) -> meeting_service_pb2.UploadMetadata:
    return meeting_service_pb2.UploadMetadata(
        meeting_id=meeting_id,
        content_type="audio/wav",
        offset=offset,
        total_size=len(audio),
        sha256=sha256(audio),
        explicit_end=True,
    )


async def _cut_off_while_completing(
    stub: Stub, proxy: FaultProxy, owner: str, meeting_id: str, audio: bytes
) -> None:
    """Uploads `audio` whole, cuts S3 off once every part is counted, then gives up."""
    every_part_counted = asyncio.Event()

    async def stream() -> AsyncIterator[meeting_service_pb2.UploadAudioRequest]:
        yield meeting_service_pb2.UploadAudioRequest(metadata=_metadata(meeting_id, audio, 0))
        for chunk in chunks_of(audio, MIB):
            yield meeting_service_pb2.UploadAudioRequest(chunk=chunk)
        await every_part_counted.wait()
        end = upload_end_pb2.UploadEnd(total_size=len(audio))
        yield meeting_service_pb2.UploadAudioRequest(end=end)

    call = stub.UploadAudio(stream(), metadata=auth(owner))
    await wait_for(lambda: stored_size(stub, owner, meeting_id), lambda s: s == len(audio))
    proxy.blackhole()
    every_part_counted.set()
    await wait_for(lambda: asyncio.sleep(0, proxy.held), lambda held: held > 0)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    proxy.heal()


async def _stored(service: RunningMeetingService, meeting_id: str) -> bytes:
    spans = iter_spans(reader(service.services.recordings, uuid.UUID(meeting_id)))
    return b"".join([span async for span in spans])


@asynccontextmanager
async def _service_with_s3_behind_a_proxy(
    database_url: str, tmp_path: Path, s3_server: SeaweedFS, bucket: str, **extra: Any
) -> AsyncIterator[tuple[FaultProxy, RunningMeetingService, Stub]]:
    """A meeting service storing recordings in S3 through a fault proxy, and its stub."""
    async with s3_behind_a_proxy(s3_server, bucket) as (proxy, through):
        settings = meeting_settings(database_url, tmp_path, **through, **extra)
        async with (
            run_meeting_service(settings, database=Database(database_url)) as service,
            grpc.aio.insecure_channel(service.address) as channel,
        ):
            yield proxy, service, meeting_service_pb2_grpc.MeetingServiceStub(channel)


@pytest.mark.parametrize("finisher", ["seal sweep", "resumed client"])
async def test_an_upload_cut_off_from_s3_while_completing_is_finished(
    finisher: str, database_url: str, s3_server: SeaweedFS, s3_bucket: str, tmp_path: Path
) -> None:
    # The sweep runs often only where it is what finishes the recording.
    sweep_s = 0.2 if finisher == "seal sweep" else 3600.0
    async with _service_with_s3_behind_a_proxy(
        database_url, tmp_path, s3_server, s3_bucket, seal_sweep_interval_s=sweep_s
    ) as (proxy, service, stub):
        owner = user()
        meeting = await create(stub, owner)
        audio = _recording(2 * PART)
        await _cut_off_while_completing(stub, proxy, owner, meeting.id, audio)

        if finisher == "resumed client":
            assert await stored_size(stub, owner, meeting.id) == len(audio)
            end = upload_end_pb2.UploadEnd(total_size=len(audio))
            resumed = [
                meeting_service_pb2.UploadAudioRequest(
                    metadata=_metadata(meeting.id, audio, len(audio))
                ),
                meeting_service_pb2.UploadAudioRequest(end=end),
            ]
            response = await stub.UploadAudio(iter(resumed), metadata=auth(owner))
            assert (response.complete, response.stored_size) == (True, len(audio))

        status = await wait_for(
            lambda: meeting_status(stub, owner, meeting.id),
            lambda s: s != meeting_pb2.MEETING_STATUS_UPLOADING,
        )
        assert status == meeting_pb2.MEETING_STATUS_QUEUED
        assert await _stored(service, meeting.id) == audio


async def _started_upload(
    service: RunningMeetingService, stub: Stub
) -> tuple[str, S3Store, UploadRow]:
    """A new meeting with its upload begun, for a test that drives the S3 writer itself."""
    meeting = await create(stub, user())
    store = service.services.recordings
    assert isinstance(store, S3Store)
    async with store.pool.acquire() as conn:
        row = await store.uploads.begin(
            conn, uuid.UUID(meeting.id), content_type="audio/wav", total_size=None, sha256=""
        )
    return meeting.id, store, row


async def test_a_part_whose_store_was_cut_off_is_stored_once_when_its_bytes_come_again(
    database_url: str, s3_server: SeaweedFS, s3_bucket: str, tmp_path: Path
) -> None:
    # What a live recording does when storing a part fails or is cancelled: it keeps the
    # bytes and hands them to the writer again with its next flush.
    async with _service_with_s3_behind_a_proxy(database_url, tmp_path, s3_server, s3_bucket) as (
        proxy,
        service,
        stub,
    ):
        meeting_id, store, row = await _started_upload(service, stub)
        writer = store.writer(row)
        first = _recording(PART)
        second = bytes(reversed(first))
        assert await writer.append(first) == PART

        proxy.blackhole()
        storing = asyncio.create_task(writer.append(second))
        # Cut off while sending the second part.
        await wait_for(lambda: asyncio.sleep(0, proxy.held), lambda held: held > 0)
        storing.cancel()
        with pytest.raises(asyncio.CancelledError):
            await storing
        proxy.heal()
        await proxy.reset()

        assert await writer.append(second) == 2 * PART
        assert await writer.complete() == 2 * PART
        assert await _stored(service, meeting_id) == first + second


async def test_a_header_longer_than_what_a_writer_holds_is_the_whole_recording(
    database_url: str, s3_server: SeaweedFS, s3_bucket: str, tmp_path: Path
) -> None:
    # A live recording dropped before its first part was stored, completed by the sweep:
    # its writer holds nothing, and the recording is its header.
    settings = meeting_settings(database_url, tmp_path, **s3_settings(s3_server, s3_bucket))
    async with (
        run_meeting_service(settings, database=Database(database_url)) as service,
        grpc.aio.insecure_channel(service.address) as channel,
    ):
        stub = meeting_service_pb2_grpc.MeetingServiceStub(channel)
        meeting_id, store, row = await _started_upload(service, stub)
        header = pcm.wav_header(0)
        writer = store.writer(row, keeps_start=True)
        assert await writer.complete(header) == len(header)
        assert await _stored(service, meeting_id) == header


def _sending(
    meeting_id: str, audio: bytes, start: int, stop: int
) -> Iterator[meeting_service_pb2.UploadAudioRequest]:
    """A stream that sends `audio[start:stop]`, and ends the upload if `stop` is its end."""
    yield meeting_service_pb2.UploadAudioRequest(metadata=_metadata(meeting_id, audio, start))
    for chunk in chunks_of(audio[start:stop], MIB):
        yield meeting_service_pb2.UploadAudioRequest(chunk=chunk)
    if stop == len(audio):
        end = upload_end_pb2.UploadEnd(total_size=len(audio))
        yield meeting_service_pb2.UploadAudioRequest(end=end)


@pytest.mark.parametrize("down", ["refusing", "silent"])
async def test_an_upload_while_s3_is_down_is_told_to_retry_and_resumes_losing_nothing(
    down: str, database_url: str, s3_server: SeaweedFS, s3_bucket: str, tmp_path: Path
) -> None:
    async with _service_with_s3_behind_a_proxy(
        database_url, tmp_path, s3_server, s3_bucket, s3_timeout_s=S3_TIMEOUT_S
    ) as (proxy, service, stub):
        owner = user()
        meeting = await create(stub, owner)
        audio = _recording(2 * PART)
        sent = await stub.UploadAudio(_sending(meeting.id, audio, 0, PART), metadata=auth(owner))
        assert (sent.complete, sent.stored_size) == (False, PART)

        if down == "refusing":
            proxy.refuse()
        else:
            proxy.blackhole()  # connections are taken, nothing is ever answered
        await proxy.reset()
        began = time.monotonic()
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.UploadAudio(
                _sending(meeting.id, audio, PART, len(audio)), metadata=auth(owner)
            )
        # Three tries of S3_TIMEOUT_S and backoff between them: about 8 s. A silent
        # server held the call forever before (a send that stopped moving, a wait for
        # "100 Continue").
        assert time.monotonic() - began < 60 * S3_TIMEOUT_S
        view = view_rpc_error(refused.value, (meeting_pb2.ErrorReason,))
        assert view.grpc_code is grpc.StatusCode.UNAVAILABLE
        assert view.http_status == 503 and view.retryable
        assert [d.get("reason") for d in view.details] == ["BACKEND_UNAVAILABLE"]
        assert view.retry_after is not None and view.retry_after > 0
        assert "object storage" in view.message
        assert await stored_size(stub, owner, meeting.id) == PART

        proxy.heal()
        await proxy.reset()  # what the silent server was sent is dropped
        done = await stub.UploadAudio(
            _sending(meeting.id, audio, PART, len(audio)), metadata=auth(owner)
        )
        assert (done.complete, done.stored_size) == (True, len(audio))
        assert await _stored(service, meeting.id) == audio


async def test_a_live_writer_holds_a_few_parts_while_s3_is_down_then_refuses_more(
    database_url: str, s3_server: SeaweedFS, s3_bucket: str, tmp_path: Path
) -> None:
    async with _service_with_s3_behind_a_proxy(
        database_url, tmp_path, s3_server, s3_bucket, s3_timeout_s=S3_TIMEOUT_S
    ) as (proxy, service, stub):
        meeting_id, store, row = await _started_upload(service, stub)
        writer = store.writer(row, keeps_start=True, sends_once=True)
        chunks = chunks_of(_recording((HELD_PARTS + 1) * PART), MIB)
        proxy.refuse()
        await proxy.reset()
        taken = 0
        with pytest.raises(S3_ERRORS):
            for chunk in chunks:
                await writer.append(chunk)
                taken += len(chunk)
                assert await writer.keep_held() == taken  # durable, though S3 has none of it
        assert taken == HELD_PARTS * PART

        proxy.heal()
        for chunk in chunks[taken // MIB :]:
            await writer.append(chunk)  # the first stores the parts held
        assert await writer.complete() == len(b"".join(chunks))
        assert await _stored(service, meeting_id) == b"".join(chunks)
