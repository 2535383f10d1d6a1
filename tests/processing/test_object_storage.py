"""Recordings in a real S3 server (SeaweedFS): probed, decoded and rewritten by ranges.

An MP4 (M4A) upload makes the decoder seek, so its ranged reads are exercised; a live
session longer than one part makes the WAV header's rewrite store the first part again.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

from gen.meeting.v1 import meeting_service_pb2
from meeting_mesh.seaweedfs import SeaweedFS
from meeting_service.recordings import pcm
from meeting_service.recordings.probe import probe_audio
from meeting_service.recordings.store import reader
from tests.support.gpu import Pki
from tests.support.meeting import auth
from tests.support.mesh import (
    USER,
    create_meeting,
    dialogue,
    follow,
    m4a_bytes,
    run_mesh,
    statuses,
    upload,
)
from tests.support.s3 import s3_settings

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
