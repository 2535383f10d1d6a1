"""UploadAudio and GetUploadStatus against real PostgreSQL: resume, limits, checks, probe."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator

import grpc
import pytest
import pytest_asyncio

from gen.meeting.v1 import meeting_pb2, meeting_service_pb2, meeting_service_pb2_grpc
from meeting_service.db.database import Database
from meeting_service.jobs.repository import JobStatus
from meeting_service.recordings.probe import probe_audio
from meeting_service.recordings.repository import ROW_BYTES
from meeting_service.recordings.store import iter_spans, reader
from meeting_service.server import RunningMeetingService, run_meeting_service
from tests.meeting_service.helpers import (
    CHUNK,
    Stub,
    chunks_of,
    create,
    make_wav,
    requests,
    sha256,
    upload,
    user,
    wait_for,
)
from tests.support.meeting import auth, error_reason, meeting_settings

LIMIT = 2 * 1024 * 1024


@pytest_asyncio.fixture(scope="module")
async def small_limit_service(
    database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[RunningMeetingService]:
    """A second service over the same database with a 2 MiB upload limit."""
    settings = meeting_settings(
        database_url, tmp_path_factory.mktemp("limited"), upload_limit_bytes=LIMIT
    )
    async with run_meeting_service(settings, database=Database(database_url)) as running:
        yield running


async def _stored(running: RunningMeetingService, meeting_id: str) -> bytes:
    spans = iter_spans(reader(running.services.recordings, uuid.UUID(meeting_id)))
    return b"".join([span async for span in spans])


async def _status(
    stub: Stub, owner: str, meeting_id: str
) -> meeting_service_pb2.GetUploadStatusResponse:
    response: meeting_service_pb2.GetUploadStatusResponse = await stub.GetUploadStatus(
        meeting_service_pb2.GetUploadStatusRequest(meeting_id=meeting_id), metadata=auth(owner)
    )
    return response


async def _get(stub: Stub, owner: str, meeting_id: str) -> meeting_pb2.Meeting:
    response = await stub.GetMeeting(
        meeting_service_pb2.GetMeetingRequest(meeting_id=meeting_id), metadata=auth(owner)
    )
    meeting: meeting_pb2.Meeting = response.meeting
    return meeting


async def _fails(call: object) -> tuple[grpc.StatusCode, str, dict[str, str]]:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call  # type: ignore[misc]
    return error_reason(caught.value)


async def test_good_audio_gets_its_duration_and_a_queued_job(
    meeting_stub: Stub, meeting_service: RunningMeetingService
) -> None:
    owner = user()
    meeting = await create(meeting_stub, owner)
    audio = make_wav(2.5)
    response = await upload(
        meeting_stub, owner, meeting.id, audio, sha=sha256(audio), total_size=len(audio)
    )
    assert response.complete
    assert response.stored_size == len(audio)
    assert response.duration.ToMilliseconds() == 2500
    assert response.meeting.status == meeting_pb2.MEETING_STATUS_QUEUED
    assert response.meeting.duration == response.duration
    assert (response.meeting.content_type, response.meeting.audio_size_bytes) == (
        "audio/wav",
        len(audio),
    )
    status = await _status(meeting_stub, owner, meeting.id)
    assert (status.stored_size, status.total_size, status.complete) == (
        len(audio),
        len(audio),
        True,
    )
    jobs = await meeting_service.services.jobs.for_meeting(
        meeting_service.services.pool, uuid.UUID(meeting.id)
    )
    assert [j.status for j in jobs] == [JobStatus.QUEUED]
    assert await _stored(meeting_service, meeting.id) == audio


async def test_upload_without_total_size_completes_at_end_of_stream(meeting_stub: Stub) -> None:
    owner = user()
    meeting = await create(meeting_stub, owner)
    response = await upload(meeting_stub, owner, meeting.id, make_wav(1.0))
    assert response.complete
    assert response.meeting.status == meeting_pb2.MEETING_STATUS_QUEUED


async def test_a_complete_recording_accepts_no_second_upload(meeting_stub: Stub) -> None:
    owner = user()
    meeting = await create(meeting_stub, owner)
    audio = make_wav(0.5)
    await upload(meeting_stub, owner, meeting.id, audio)
    code, reason, metadata = await _fails(upload(meeting_stub, owner, meeting.id, audio))
    assert (code, reason, metadata["status"]) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "WRONG_STATE",
        "MEETING_STATUS_QUEUED",
    )


async def test_dropped_upload_resumes_to_a_byte_identical_recording(
    meeting_stub: Stub, meeting_service: RunningMeetingService
) -> None:
    owner = user()
    meeting = await create(meeting_stub, owner)
    audio = make_wav(10.0)  # ~320 KB: five 64 KiB chunks
    parts = chunks_of(audio)
    sent_first = 3
    hold = asyncio.Event()

    async def first_attempt() -> AsyncIterator[meeting_service_pb2.UploadAudioRequest]:
        async for request in requests(meeting.id, parts[:sent_first], total_size=len(audio)):
            yield request
        await hold.wait()  # the connection "drops" while the client still has bytes

    call = meeting_stub.UploadAudio(first_attempt(), metadata=auth(owner))
    status = await wait_for(
        lambda: _status(meeting_stub, owner, meeting.id),
        lambda s: s.stored_size == sent_first * CHUNK,
    )
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert (
        await _get(meeting_stub, owner, meeting.id)
    ).status == meeting_pb2.MEETING_STATUS_UPLOADING
    status = await _status(meeting_stub, owner, meeting.id)
    assert (status.stored_size, status.complete, status.total_size) == (
        sent_first * CHUNK,
        False,
        len(audio),
    )

    response = await meeting_stub.UploadAudio(
        requests(meeting.id, parts[sent_first:], offset=status.stored_size, sha=sha256(audio)),
        metadata=auth(owner),
    )
    assert response.complete
    assert await _stored(meeting_service, meeting.id) == audio


async def test_an_upload_is_accepted_before_any_byte_of_it_arrives(meeting_stub: Stub) -> None:
    # Its initial metadata tells the gateway's channel that this replica started the call,
    # so a later failure is never replayed on another one (gateway/channel.py).
    owner = user()
    meeting = await create(meeting_stub, owner)
    audio = make_wav(1.0)
    go = asyncio.Event()

    async def held() -> AsyncIterator[meeting_service_pb2.UploadAudioRequest]:
        await go.wait()
        async for request in requests(meeting.id, chunks_of(audio)):
            yield request

    call = meeting_stub.UploadAudio(held(), metadata=auth(owner))
    async with asyncio.timeout(10):
        await call.initial_metadata()
    assert (await _status(meeting_stub, owner, meeting.id)).stored_size == 0
    go.set()
    response = await call
    assert (response.complete, response.stored_size) == (True, len(audio))


async def test_stream_ending_early_with_total_size_is_resumable(meeting_stub: Stub) -> None:
    owner = user()
    meeting = await create(meeting_stub, owner)
    audio = make_wav(5.0)
    half = len(audio) // 2
    response = await meeting_stub.UploadAudio(
        requests(meeting.id, [audio[:half]], total_size=len(audio)), metadata=auth(owner)
    )
    assert (response.complete, response.stored_size) == (False, half)
    assert response.meeting.status == meeting_pb2.MEETING_STATUS_UPLOADING
    response = await meeting_stub.UploadAudio(
        requests(meeting.id, [audio[half:]], offset=half), metadata=auth(owner)
    )
    assert response.complete


@pytest.mark.parametrize("offset", [0, 100, 10_000_000])
async def test_wrong_resume_offset_is_refused_and_changes_nothing(
    meeting_stub: Stub, meeting_service: RunningMeetingService, offset: int
) -> None:
    owner = user()
    meeting = await create(meeting_stub, owner)
    audio = make_wav(10.0)
    stored = 2 * CHUNK
    await meeting_stub.UploadAudio(
        requests(meeting.id, chunks_of(audio)[:2], total_size=len(audio)), metadata=auth(owner)
    )
    code, reason, metadata = await _fails(
        meeting_stub.UploadAudio(
            requests(meeting.id, [b"x" * 10], offset=offset), metadata=auth(owner)
        )
    )
    assert (code, reason, metadata["stored_size"]) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "UPLOAD_OFFSET_MISMATCH",
        str(stored),
    )
    assert (await _status(meeting_stub, owner, meeting.id)).stored_size == stored
    assert await _stored(meeting_service, meeting.id) == audio[:stored]


async def test_upload_over_the_limit_is_refused_and_discarded(
    small_limit_service: RunningMeetingService,
) -> None:
    owner = user()
    async with grpc.aio.insecure_channel(small_limit_service.address) as channel:
        stub = meeting_service_pb2_grpc.MeetingServiceStub(channel)
        # Declared too large: refused before a byte is stored.
        meeting = await create(stub, owner)
        code, reason, metadata = await _fails(
            upload(stub, owner, meeting.id, b"", total_size=LIMIT + 1)
        )
        assert (code, reason, metadata["limit_bytes"]) == (
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "UPLOAD_TOO_LARGE",
            str(LIMIT),
        )
        # Undeclared and too large: stopped at the limit, the stored part discarded.
        code, reason, _ = await _fails(upload(stub, owner, meeting.id, os.urandom(LIMIT + CHUNK)))
        assert reason == "UPLOAD_TOO_LARGE"
        after = await _get(stub, owner, meeting.id)
        assert after.status == meeting_pb2.MEETING_STATUS_AWAITING_AUDIO
        assert "limit" in after.failure_reason
        assert (await _status(stub, owner, meeting.id)).stored_size == 0
        assert await _stored(small_limit_service, meeting.id) == b""
        # The meeting takes a good recording afterwards.
        response = await upload(stub, owner, meeting.id, make_wav(1.0))
        assert response.complete
        assert response.meeting.failure_reason == ""


async def test_checksum_mismatch_discards_the_recording(
    meeting_stub: Stub, meeting_service: RunningMeetingService
) -> None:
    owner = user()
    meeting = await create(meeting_stub, owner)
    audio = make_wav(1.0)
    code, reason, _ = await _fails(
        upload(meeting_stub, owner, meeting.id, audio, sha=sha256(b"other"))
    )
    assert (code, reason) == (grpc.StatusCode.DATA_LOSS, "UPLOAD_CHECKSUM_MISMATCH")
    after = await _get(meeting_stub, owner, meeting.id)
    assert after.status == meeting_pb2.MEETING_STATUS_AWAITING_AUDIO
    assert "SHA-256" in after.failure_reason
    assert await _stored(meeting_service, meeting.id) == b""
    assert not await meeting_service.services.jobs.for_meeting(
        meeting_service.services.pool, uuid.UUID(meeting.id)
    )


@pytest.mark.parametrize(
    "data", [b"this is a text file, not a recording\n" * 2000, os.urandom(300_000), b""]
)
async def test_non_audio_is_invalid_and_the_meeting_stays_ready(
    meeting_stub: Stub, meeting_service: RunningMeetingService, data: bytes
) -> None:
    owner = user()
    meeting = await create(meeting_stub, owner)
    code, reason, _ = await _fails(upload(meeting_stub, owner, meeting.id, data))
    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "NOT_AUDIO")
    after = await _get(meeting_stub, owner, meeting.id)
    assert after.status == meeting_pb2.MEETING_STATUS_AWAITING_AUDIO
    assert after.failure_reason.startswith("the recording is not audio")
    assert not await meeting_service.services.jobs.for_meeting(
        meeting_service.services.pool, uuid.UUID(meeting.id)
    )
    assert (await upload(meeting_stub, owner, meeting.id, make_wav(0.5))).complete


async def test_bad_upload_requests_are_invalid(meeting_stub: Stub) -> None:
    owner = user()
    meeting = await create(meeting_stub, owner)

    async def chunk_first() -> AsyncIterator[meeting_service_pb2.UploadAudioRequest]:
        yield meeting_service_pb2.UploadAudioRequest(chunk=b"abc")

    cases = {
        "metadata": meeting_stub.UploadAudio(chunk_first(), metadata=auth(owner)),
        "metadata.content_type": meeting_stub.UploadAudio(
            requests(meeting.id, [], content_type=""), metadata=auth(owner)
        ),
        "sha256": meeting_stub.UploadAudio(
            requests(meeting.id, [], sha="ABC"), metadata=auth(owner)
        ),
        "metadata.meeting_id": meeting_stub.UploadAudio(requests("nope", []), metadata=auth(owner)),
    }
    for field, call in cases.items():
        code, reason, metadata = await _fails(call)
        assert (code, reason, metadata["field"]) == (
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_FIELD",
            field,
        )
    assert (
        await _get(meeting_stub, owner, meeting.id)
    ).status == meeting_pb2.MEETING_STATUS_AWAITING_AUDIO


async def test_bytes_beyond_the_declared_total_are_refused(meeting_stub: Stub) -> None:
    owner = user()
    meeting = await create(meeting_stub, owner)
    code, _reason, metadata = await _fails(
        meeting_stub.UploadAudio(
            requests(meeting.id, [b"x" * 100], total_size=10), metadata=auth(owner)
        )
    )
    assert (code, metadata["field"]) == (grpc.StatusCode.INVALID_ARGUMENT, "chunk")
    assert (await _status(meeting_stub, owner, meeting.id)).stored_size == 0


def _assert_span_reads(audio: bytes, span: tuple[int, bytes] | None, offset: int) -> None:
    assert span is not None
    start, data = span
    assert start <= offset < start + len(data)
    assert data == audio[start : start + len(data)]


async def test_recording_is_stored_in_page_sized_rows_that_read_back_at_any_offset(
    meeting_stub: Stub, meeting_service: RunningMeetingService
) -> None:
    owner = user()
    meeting = await create(meeting_stub, owner)
    audio = make_wav(20.0)  # ~640 KB in 64 KiB chunks
    await upload(meeting_stub, owner, meeting.id, audio, sha=sha256(audio))
    mid = uuid.UUID(meeting.id)
    pool = meeting_service.services.pool
    longest = await pool.fetchval(
        "SELECT max(length(data)) FROM audio_chunks WHERE meeting_id = $1", mid
    )
    assert longest <= ROW_BYTES  # inline rows, no TOAST
    repo = meeting_service.services.processing.uploads
    for offset in (0, 1, ROW_BYTES - 1, ROW_BYTES, 300_001, len(audio) - 1):
        _assert_span_reads(audio, await repo.read_at(pool, mid, offset), offset)
    assert await repo.read_at(pool, mid, len(audio)) is None
    assert await _stored(meeting_service, meeting.id) == audio


async def test_a_recording_stored_before_page_sized_rows_still_reads_and_probes(
    meeting_stub: Stub, meeting_service: RunningMeetingService
) -> None:
    """Rows written before migration 0002: one TOASTed row per received chunk."""
    owner = user()
    meeting = await create(meeting_stub, owner)
    mid = uuid.UUID(meeting.id)
    audio = make_wav(30.0)  # ~960 KB
    old_rows = [(mid, start, audio[start : start + 400_000]) for start in (0, 400_000, 800_000)]
    pool = meeting_service.services.pool
    async with pool.acquire() as conn, conn.transaction():
        # The old layout needs the old storage; both ALTERs commit together.
        await conn.execute("ALTER TABLE audio_chunks ALTER COLUMN data SET STORAGE EXTERNAL")
        await conn.executemany("INSERT INTO audio_chunks VALUES ($1, $2, $3)", old_rows)
        await conn.execute("ALTER TABLE audio_chunks ALTER COLUMN data SET STORAGE PLAIN")
    repo = meeting_service.services.processing.uploads
    for offset in (0, 399_999, 400_000, 900_000):
        _assert_span_reads(audio, await repo.read_at(pool, mid, offset), offset)
    assert await _stored(meeting_service, meeting.id) == audio

    async def read_at(offset: int) -> tuple[int, bytes] | None:
        return await repo.read_at(pool, mid, offset)

    info = await probe_audio(read_at, len(audio))
    assert (info.duration_us, info.codec) == (30_000_000, "pcm_s16le")


async def test_a_seal_whose_process_died_is_taken_over_by_the_next_stream(
    meeting_stub: Stub, meeting_service: RunningMeetingService
) -> None:
    owner = user()
    meeting = await create(meeting_stub, owner)
    audio = make_wav(2.0)
    half = len(audio) // 2
    await meeting_stub.UploadAudio(
        requests(meeting.id, [audio[:half]], total_size=len(audio)), metadata=auth(owner)
    )
    mid = uuid.UUID(meeting.id)
    repo = meeting_service.services.processing.uploads
    async with meeting_service.services.pool.acquire() as sealer:
        await repo.seal(sealer, mid)
        # The sealer is alive: the recording is being checked.
        await repo.hold_seal(sealer, mid)
        code, reason, _ = await _fails(
            meeting_stub.UploadAudio(
                requests(meeting.id, [audio[half:]], offset=half), metadata=auth(owner)
            )
        )
        assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "WRONG_STATE")
        # Its session ends as a dead process's would: the next stream takes over.
        await repo.release_seal(sealer, mid)
    response = await meeting_stub.UploadAudio(
        requests(meeting.id, [audio[half:]], offset=half, sha=sha256(audio)), metadata=auth(owner)
    )
    assert response.complete
    assert await _stored(meeting_service, meeting.id) == audio


async def test_a_chunk_nobody_was_told_about_commits_without_waiting_for_the_disk(
    meeting_stub: Stub, meeting_service: RunningMeetingService
) -> None:
    # An upload's chunks commit without waiting for the disk (the answer's commit makes
    # them durable); the statement that counts a chunk sets that, so the setting must
    # hold for its transaction, and only when asked.
    owner = user()
    meeting = await create(meeting_stub, owner)
    mid = uuid.UUID(meeting.id)
    repo = meeting_service.services.processing.uploads
    pool = meeting_service.services.pool
    async with pool.acquire() as conn:
        # The test server does not wait for the disk at all: this session does, as a
        # deployed server would, so the chunk's own setting shows.
        await conn.execute("SET synchronous_commit TO on")
        try:
            await repo.begin(conn, mid, content_type="audio/wav", total_size=None, sha256="")
            async with conn.transaction():
                stored = await repo.append_chunk(conn, mid, 0, b"a" * 10, wait_for_disk=False)
                assert stored == 10
                assert await conn.fetchval("SHOW synchronous_commit") == "off"
            assert await conn.fetchval("SHOW synchronous_commit") == "on"  # SET LOCAL: gone
            async with conn.transaction():
                assert await repo.append_chunk(conn, mid, 10, b"b" * 10) == 20
                assert await conn.fetchval("SHOW synchronous_commit") == "on"
            # A chunk at a stale offset stores nothing, whatever it asked for.
            async with conn.transaction():
                assert await repo.append_chunk(conn, mid, 10, b"c", wait_for_disk=False) is None
        finally:
            await conn.execute("RESET synchronous_commit")
    assert await _stored(meeting_service, meeting.id) == b"a" * 10 + b"b" * 10
