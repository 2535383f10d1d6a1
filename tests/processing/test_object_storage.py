"""Recordings in a real S3 server (SeaweedFS): probed, decoded and rewritten by ranges.

An MP4 (M4A) upload makes the decoder seek, so its ranged reads are exercised; a live
session longer than one part makes the WAV header's rewrite store the first part again;
a live session that stopped between storing its recording whole and ending its meeting
is ended by the next call to resume it, or by the sweep.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from gen.meeting.v1 import meeting_pb2, meeting_service_pb2, meeting_service_pb2_grpc
from meeting_mesh.seaweedfs import SeaweedFS
from meeting_service.live.repository import LiveLeasesRepository
from meeting_service.recordings import pcm
from meeting_service.recordings.live_recording import CHUNK_BYTES
from meeting_service.recordings.probe import probe_audio
from meeting_service.recordings.s3_store import S3Store, tail_piece
from meeting_service.recordings.store import iter_spans, reader
from mesh_common.ports import free_port
from tests.meeting_service.helpers import stored_size, wait_for
from tests.support.gpu import Pki, pcm16
from tests.support.meeting import auth, error_reason
from tests.support.mesh import (
    USER,
    Mesh,
    create_meeting,
    dialogue,
    follow,
    m4a_bytes,
    meeting_service_process,
    run_mesh,
    statuses,
    upload,
)
from tests.support.s3 import s3_behind_a_proxy, s3_settings

LIVE_SECONDS = 180  # 5.5 MiB of PCM: more than one 5 MiB part


async def test_an_m4a_upload_in_s3_is_processed_to_completed(
    db_url: str, pki: Pki, tmp_path: Path, s3_server: SeaweedFS, s3_bucket: str
) -> None:
    async with run_mesh(db_url, pki, tmp_path, **s3_settings(s3_server, s3_bucket)) as mesh:
        meeting = await create_meeting(mesh, title="in s3", expected_speakers=2)
        await upload(mesh, meeting.id, m4a_bytes(dialogue(4)), content_type="audio/mp4")
        events = await follow(mesh, meeting.id)
        assert statuses(events)[-1] == "COMPLETED"
        segments = [e.segment for e in events if e.HasField("segment") and e.segment.final]
        assert segments


async def test_a_live_recording_in_s3_gets_its_real_header(
    db_url: str, pki: Pki, tmp_path: Path, s3_server: SeaweedFS, s3_bucket: str
) -> None:
    async with run_mesh(db_url, pki, tmp_path, **s3_settings(s3_server, s3_bucket)) as mesh:
        meeting = await create_meeting(mesh, title="live in s3")
        block = bytes(pcm.BYTES_PER_SECOND)  # one second of silence

        async def live() -> AsyncIterator[meeting_service_pb2.LiveTranscribeRequest]:
            yield meeting_service_pb2.LiveTranscribeRequest(
                config=meeting_service_pb2.LiveAudioConfig(meeting_id=meeting.id)
            )
            for _ in range(LIVE_SECONDS):
                yield meeting_service_pb2.LiveTranscribeRequest(audio=block)
            yield meeting_service_pb2.LiveTranscribeRequest(end=True)

        async for _ in mesh.stub.LiveTranscribe(live(), metadata=auth(USER), timeout=120):
            pass
        status = await mesh.stub.GetUploadStatus(
            meeting_service_pb2.GetUploadStatusRequest(meeting_id=meeting.id),
            metadata=auth(USER),
        )
        assert status.stored_size == pcm.WAV_HEADER_BYTES + LIVE_SECONDS * pcm.BYTES_PER_SECOND
        recording = reader(mesh.service.services.recordings, uuid.UUID(meeting.id))
        first = await recording(0)
        assert first is not None
        header = pcm.wav_header(LIVE_SECONDS * pcm.BYTES_PER_SECOND)
        assert first[1][: len(header)] == header
        info = await probe_audio(recording, status.stored_size)
        assert info.duration_us == LIVE_SECONDS * 1_000_000


async def _objects(store: S3Store, meeting_id: str) -> list[str]:
    """The keys of the meeting's recording and of every piece kept beside it."""
    client = await store.client()
    key = store.key(uuid.UUID(meeting_id))
    listing = await client.list_objects_v2(Bucket=store.options.bucket, Prefix=key)
    return sorted(o.get("Key", "") for o in listing.get("Contents", []))


async def _recording(store: S3Store, meeting_id: str) -> bytes:
    spans = iter_spans(reader(store, uuid.UUID(meeting_id)))
    return b"".join([span async for span in spans])


async def _live_requests(
    meeting_id: str,
    audio: bytes,
    *,
    resume: bool = False,
    end: bool = False,
    until: asyncio.Event | None = None,
    then: bytes = b"",
) -> AsyncIterator[meeting_service_pb2.LiveTranscribeRequest]:
    """A live stream that sends `audio` in 1 s messages, then the end marker or nothing
    (a drop). With `until`, the client stays after `audio` until it is set, then sends
    `then` before the end marker."""
    yield meeting_service_pb2.LiveTranscribeRequest(
        config=meeting_service_pb2.LiveAudioConfig(meeting_id=meeting_id, resume=resume)
    )
    for block in _blocks(audio):
        yield block
    if until is not None:
        await until.wait()
        for block in _blocks(then):
            yield block
    if end:
        yield meeting_service_pb2.LiveTranscribeRequest(end=True)


def _blocks(audio: bytes) -> Iterator[meeting_service_pb2.LiveTranscribeRequest]:
    for start in range(0, len(audio), pcm.BYTES_PER_SECOND):
        block = audio[start : start + pcm.BYTES_PER_SECOND]
        yield meeting_service_pb2.LiveTranscribeRequest(audio=block)


async def _live_session(
    mesh: Mesh, meeting_id: str, audio: bytes, *, resume: bool = False, end: bool = False
) -> None:
    """One live session that sends `audio`, read until it closes (ended, or dropped)."""
    requests = _live_requests(meeting_id, audio, resume=resume, end=end)
    await _read_all(mesh.stub.LiveTranscribe(requests, metadata=auth(USER), timeout=120))


async def _read_all(call: Any) -> None:
    """Reads a call's answers until it closes (raising its error, if any)."""
    async for _ in call:
        pass


def _s3(mesh: Mesh) -> S3Store:
    store = mesh.service.services.recordings
    assert isinstance(store, S3Store)
    return store


@pytest.mark.parametrize(
    ("first_s", "resumed"),
    [(3, True), (LIVE_SECONDS, True), (3, False)],
    ids=["resumed within one part", "resumed past one part", "swept within one part"],
)
async def test_a_live_meeting_in_s3_that_dropped_keeps_all_of_its_audio(
    first_s: int,
    resumed: bool,
    db_url: str,
    pki: Pki,
    tmp_path: Path,
    s3_server: SeaweedFS,
    s3_bucket: str,
) -> None:
    # S3 takes a part below 5 MiB only as the last one: what the dropped session held
    # below a part waits beside the upload for the session that resumes it, or the sweep
    # that ends it, and a first part stored by the dropped session still gets the real
    # header.
    settings = {**s3_settings(s3_server, s3_bucket), "live_resume_grace_s": 30 if resumed else 0}
    async with run_mesh(db_url, pki, tmp_path, live_lease_s=1.0, **settings) as mesh:
        meeting = await create_meeting(mesh, title="dropped in s3")
        noise = random.Random(first_s).randbytes
        first = noise(first_s * pcm.BYTES_PER_SECOND)
        second = noise(3 * pcm.BYTES_PER_SECOND) if resumed else b""
        sessions = [(first, False), (second, True)] if resumed else [(first, False)]
        for audio, resume in sessions:
            await _live_session(mesh, meeting.id, audio, resume=resume, end=resume)

        events = await follow(mesh, meeting.id)
        assert statuses(events)[-1] == "COMPLETED"
        store = _s3(mesh)
        audio = first + second
        assert await _recording(store, meeting.id) == pcm.wav_header(len(audio)) + audio
        assert await _objects(store, meeting.id) == [store.key(uuid.UUID(meeting.id))]


async def test_a_live_meeting_in_s3_goes_on_while_s3_is_down_and_loses_nothing(
    db_url: str, pki: Pki, tmp_path: Path, s3_server: SeaweedFS, s3_bucket: str
) -> None:
    # Past one part while S3 refuses every connection: the session goes on (the part
    # waits staged in PostgreSQL), and the meeting ends whole once S3 is back.
    async with (
        s3_behind_a_proxy(s3_server, s3_bucket) as (proxy, settings),
        run_mesh(db_url, pki, tmp_path, s3_timeout_s=1.0, **settings) as mesh,
    ):
        meeting = await create_meeting(mesh, title="S3 down while live")
        noise = random.Random(5).randbytes
        first = noise((LIVE_SECONDS + 10) * pcm.BYTES_PER_SECOND)
        second = noise(3 * pcm.BYTES_PER_SECOND)
        healed = asyncio.Event()
        requests = _live_requests(meeting.id, first, until=healed, then=second, end=True)
        proxy.refuse()
        await proxy.reset()  # the connections the store keeps open too
        call = mesh.stub.LiveTranscribe(requests, metadata=auth(USER), timeout=120)
        session = asyncio.create_task(_read_all(call))
        await wait_for(
            lambda: stored_size(mesh.stub, USER, meeting.id),
            lambda size: size > pcm.WAV_HEADER_BYTES + len(first) - CHUNK_BYTES,
        )
        assert not session.done()  # still live, more than a part held
        store = _s3(mesh)
        row = await store.uploads.get(store.pool, uuid.UUID(meeting.id))
        assert row is not None and not row.part_etags and row.staged_size == row.stored_size
        proxy.heal()
        healed.set()
        await session

        events = await follow(mesh, meeting.id)
        assert statuses(events)[-1] == "COMPLETED"
        audio = first + second
        assert await _recording(store, meeting.id) == pcm.wav_header(len(audio)) + audio
        assert await _objects(store, meeting.id) == [store.key(uuid.UUID(meeting.id))]


async def test_a_live_meeting_staged_in_s3_by_an_older_version_keeps_all_of_its_audio(
    db_url: str, pki: Pki, tmp_path: Path, s3_server: SeaweedFS, s3_bucket: str
) -> None:
    # An older version staged the audio below a part as one piece in S3
    # (`<key>.tail-<stored size>`) rather than in rows; a session that resumes such a
    # meeting after an upgrade reads it from there.
    settings = {**s3_settings(s3_server, s3_bucket), "live_resume_grace_s": 3600}
    async with run_mesh(db_url, pki, tmp_path, live_lease_s=1.0, **settings) as mesh:
        meeting = await create_meeting(mesh, title="staged by an older version")
        mid = uuid.UUID(meeting.id)
        first = random.Random(3).randbytes(4 * pcm.BYTES_PER_SECOND)
        second = random.Random(4).randbytes(2 * pcm.BYTES_PER_SECOND)
        await _live_session(mesh, meeting.id, first)
        store = _s3(mesh)
        row = await store.uploads.get(store.pool, mid)
        assert row is not None and row.staged_size == row.stored_size > 0
        client = await store.client()
        await client.put_object(
            Bucket=s3_bucket,
            Key=store.key(mid, tail_piece(row.stored_size)),
            Body=await store.uploads.read_staged(store.pool, mid, 0),
        )
        await store.pool.execute("DELETE FROM audio_chunks WHERE meeting_id = $1", mid)

        await _live_session(mesh, meeting.id, second, resume=True, end=True)
        events = await follow(mesh, meeting.id)
        assert statuses(events)[-1] == "COMPLETED"
        audio = first + second
        assert await _recording(store, meeting.id) == pcm.wav_header(len(audio)) + audio
        assert await _objects(store, meeting.id) == [store.key(mid)]


async def test_a_live_meeting_in_s3_whose_server_was_killed_keeps_the_audio_it_stored(
    db_url: str, pki: Pki, tmp_path: Path, s3_server: SeaweedFS, s3_bucket: str
) -> None:
    # Below one part, S3 holds nothing of a live recording: the audio must be somewhere
    # a SIGKILL does not reach. What the killed server had not stored yet (less than one
    # chunk) is all that may be lost; the client cannot know it, and sends on after it.
    settings = {**s3_settings(s3_server, s3_bucket), "live_resume_grace_s": 3600}
    async with run_mesh(db_url, pki, tmp_path / "b", live_lease_s=1.0, **settings) as mesh:
        meeting = await create_meeting(mesh, title="its server killed")
        first = random.Random(7).randbytes(20 * pcm.BYTES_PER_SECOND)
        # Less than a chunk: staged by the ending, under the meeting's lock.
        second = random.Random(8).randbytes(2 * pcm.BYTES_PER_SECOND)
        port = free_port()
        async with (
            meeting_service_process(
                mesh,
                db_url,
                tmp_path / "a",
                port=port,
                **s3_server.settings(s3_bucket),
                MESH_S3_PART_BYTES=str(5 * 1024 * 1024),
                MESH_LIVE_LEASE_S="1",
                MESH_PIPELINE_WORKERS="0",
            ) as pid,
            grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel,
        ):
            # The client is still there when its server dies.
            requests = _live_requests(meeting.id, first, until=asyncio.Event())
            call = meeting_service_pb2_grpc.MeetingServiceStub(channel).LiveTranscribe(
                requests, metadata=auth(USER), timeout=60
            )
            stored = await wait_for(
                lambda: stored_size(mesh.stub, USER, meeting.id),
                lambda size: size > pcm.WAV_HEADER_BYTES + len(first) - CHUNK_BYTES,
            )
            os.kill(pid, signal.SIGKILL)
            with pytest.raises(grpc.aio.AioRpcError):
                await _read_all(call)
        assert await _objects(_s3(mesh), meeting.id) == []  # all of it staged in PostgreSQL

        await _live_session(mesh, meeting.id, second, resume=True, end=True)
        events = await follow(mesh, meeting.id)
        assert statuses(events)[-1] == "COMPLETED"
        audio = first[: stored - pcm.WAV_HEADER_BYTES] + second
        assert await _recording(_s3(mesh), meeting.id) == pcm.wav_header(len(audio)) + audio


@pytest.mark.parametrize(
    ("stopped", "finisher"),
    [
        ("after its size was recorded", "resumed session"),
        ("after S3 completed the object", "resumed session"),
        ("after S3 completed the object, its pieces gone", "resumed session"),
        ("after the object was recorded", "resumed session"),
        ("after S3 completed the object", "sweep"),
    ],
)
async def test_a_live_meeting_whose_session_stopped_while_ending_is_ended_by(
    stopped: str,
    finisher: str,
    db_url: str,
    pki: Pki,
    tmp_path: Path,
    s3_server: SeaweedFS,
    s3_bucket: str,
) -> None:
    # Ending a live session commits the recording's size, then S3's completion, then the
    # object in the row, then the meeting's status. A session stopped in between (its
    # process killed, its database gone) leaves a LIVE meeting that a dead session
    # holds, whose recording is complete or half way there: a resume must not stream
    # into it, and whoever comes next ends it with the recording intact.
    grace_s = 3600.0 if finisher == "resumed session" else 0.5
    settings = {**s3_settings(s3_server, s3_bucket), "live_resume_grace_s": grace_s}
    async with run_mesh(db_url, pki, tmp_path, live_lease_s=1.0, **settings) as mesh:
        meeting = await create_meeting(mesh, title="stopped while ending")
        mid = uuid.UUID(meeting.id)
        # More than a part: the first part is in the multipart upload, the rest staged.
        audio = random.Random(2).randbytes((LIVE_SECONDS + 3) * pcm.BYTES_PER_SECOND)
        await _live_session(mesh, meeting.id, audio)
        store = _s3(mesh)
        recording = pcm.wav_header(len(audio)) + audio
        async with store.pool.acquire() as conn:
            # The ending session's lease, run out.
            await LiveLeasesRepository().take(conn, mid, uuid.uuid4(), 0.0)
        await store.uploads.set_total_size(store.pool, mid, len(recording))
        row = await store.uploads.get(store.pool, mid)
        assert row is not None and row.object_upload_id is not None
        if stopped != "after its size was recorded":
            writer = store.writer(row, keeps_start=True)
            assert await writer.complete(pcm.wav_header(len(audio))) == len(recording)
        if stopped.startswith("after S3 completed the object"):
            await store.pool.execute(
                "UPDATE uploads SET object_upload_id = $2 WHERE meeting_id = $1",
                mid,
                row.object_upload_id,
            )
        if stopped == "after S3 completed the object":
            # What the completion deleted after it recorded the object, back again.
            first_part = (pcm.wav_header(0) + audio)[: 5 * 1024 * 1024]
            client = await store.client()
            await client.put_object(Bucket=s3_bucket, Key=store.key(mid, ".head"), Body=first_part)

        if finisher == "resumed session":
            call = mesh.stub.LiveTranscribe(
                _live_requests(meeting.id, pcm16(dialogue(1)), resume=True),
                metadata=auth(USER),
                timeout=60,
            )
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                async for _ in call:
                    pass
            code, reason, details = error_reason(refused.value)
            assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "WRONG_STATE")
            assert details["status"] == "MEETING_STATUS_QUEUED"
            assert "live audio had ended" in str(refused.value.details())

        events = await follow(mesh, meeting.id)
        assert statuses(events)[-1] == "COMPLETED"
        assert await _recording(store, meeting.id) == recording
        got = await mesh.stub.GetMeeting(
            meeting_service_pb2.GetMeetingRequest(meeting_id=meeting.id), metadata=auth(USER)
        )
        assert got.meeting.status == meeting_pb2.MEETING_STATUS_COMPLETED
        assert got.meeting.duration.ToMicroseconds() == pcm.duration_us(len(audio))
        assert await _objects(store, meeting.id) == [store.key(mid)]


async def test_deleting_a_dropped_live_meeting_in_s3_deletes_what_it_kept_beside_it(
    db_url: str, pki: Pki, tmp_path: Path, s3_server: SeaweedFS, s3_bucket: str
) -> None:
    async with run_mesh(db_url, pki, tmp_path, **s3_settings(s3_server, s3_bucket)) as mesh:
        meeting = await create_meeting(mesh, title="dropped, then deleted")
        audio = random.Random(1).randbytes((LIVE_SECONDS + 1) * pcm.BYTES_PER_SECOND)
        await _live_session(mesh, meeting.id, audio)
        store = _s3(mesh)
        mid = uuid.UUID(meeting.id)
        key = store.key(mid)
        assert await _objects(store, meeting.id) == [key + ".head"]
        # The audio past the first part is staged in PostgreSQL.
        row = await store.uploads.get(store.pool, mid)
        assert row is not None and 0 < row.staged_size < store.options.part_bytes
        assert row.stored_size == pcm.WAV_HEADER_BYTES + len(audio)
        parts = row.stored_size - row.staged_size
        staged = await store.uploads.read_staged(store.pool, mid, parts)
        assert staged == audio[-row.staged_size :]
        await mesh.stub.DeleteMeeting(
            meeting_service_pb2.DeleteMeetingRequest(meeting_id=meeting.id), metadata=auth(USER)
        )
        assert await _objects(store, meeting.id) == []
        assert await store.uploads.read_staged(store.pool, mid, 0) == b""


async def test_a_live_meeting_deleted_while_streaming_leaves_nothing_in_s3(
    db_url: str, pki: Pki, tmp_path: Path, s3_server: SeaweedFS, s3_bucket: str
) -> None:
    # The session only notices when its stream stops, and stores what it held then.
    async with run_mesh(db_url, pki, tmp_path, **s3_settings(s3_server, s3_bucket)) as mesh:
        meeting = await create_meeting(mesh, title="deleted while live")
        stop = asyncio.Event()

        async def requests() -> AsyncIterator[meeting_service_pb2.LiveTranscribeRequest]:
            async for request in _live_requests(meeting.id, bytes(3 * pcm.BYTES_PER_SECOND)):
                yield request
            await stop.wait()

        call = mesh.stub.LiveTranscribe(requests(), metadata=auth(USER), timeout=60)
        started = await call.read()
        assert isinstance(started, meeting_service_pb2.LiveTranscribeResponse)
        assert started.event.status_change.status == meeting_pb2.MEETING_STATUS_LIVE
        await mesh.stub.DeleteMeeting(
            meeting_service_pb2.DeleteMeetingRequest(meeting_id=meeting.id), metadata=auth(USER)
        )
        stop.set()
        with contextlib.suppress(grpc.aio.AioRpcError):
            while await call.read() is not grpc.aio.EOF:
                pass
        assert await _objects(_s3(mesh), meeting.id) == []
