"""An uploaded recording becomes a transcript with speakers and a summary, streamed live."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest

from gen.meeting.v1 import meeting_pb2, meeting_service_pb2
from meeting_service.processing.job import resume_stage
from tests.support.gpu import Pki, as_wav
from tests.support.meeting import auth
from tests.support.mesh import (
    USER,
    WAIT,
    assert_gapless,
    create_meeting,
    dialogue,
    final_segment_events,
    follow,
    m4a_bytes,
    run_mesh,
    statuses,
    transcript,
    upload,
)

S = meeting_pb2.MeetingStatus


@pytest.mark.parametrize("encode", [as_wav, m4a_bytes], ids=["wav", "m4a"])
async def test_upload_is_processed_to_completed_and_streamed_in_order(
    db_url: str, pki: Pki, tmp_path: Path, encode: object
) -> None:
    async with run_mesh(db_url, pki, tmp_path) as mesh:
        meeting = await create_meeting(mesh, title="standup", expected_speakers=2)
        await upload(mesh, meeting.id, encode(dialogue(4)))  # type: ignore[operator]
        events = await follow(mesh, meeting.id)

        assert_gapless(events)
        assert statuses(events) == [
            "AWAITING_AUDIO",
            "UPLOADING",
            "QUEUED",
            "TRANSCRIBING",
            "DIARIZING",
            "SUMMARIZING",
            "COMPLETED",
        ]
        kinds = [e.WhichOneof("kind") for e in events]
        transcribing = kinds.index("status_change", 3)
        # Each segment is announced as recognized (no speaker yet), then again with its
        # speaker after diarization: the same segment ids, newer sequences.
        recognized = [e.segment for e in events if e.HasField("segment") and not e.segment.speaker]
        labelled = [e.segment for e in events if e.HasField("segment") and e.segment.speaker]
        assert [s.index for s in recognized] == [0, 1, 2, 3]
        assert [s.segment_id for s in labelled] == [s.segment_id for s in recognized]
        assert transcribing < kinds.index("segment")
        assert [s.speaker for s in labelled] == ["SPEAKER_1", "SPEAKER_2"] * 2
        summary_events = [e for e in events if e.HasField("summary")]
        assert len(summary_events) == 1 and summary_events[0].summary.backend == "mock"

        stored = await transcript(mesh, meeting.id)
        assert stored.status == S.MEETING_STATUS_COMPLETED
        assert [s.index for s in stored.segments] == [0, 1, 2, 3]
        assert all(s.final and s.text for s in stored.segments)
        assert list(stored.speakers) == ["SPEAKER_1", "SPEAKER_2"]
        assert stored.last_sequence == events[-1].sequence
        assert [s.sequence for s in stored.segments] == [s.sequence for s in labelled]
        summary = await mesh.stub.GetSummary(
            meeting_service_pb2.GetSummaryRequest(meeting_id=meeting.id),
            metadata=auth(USER),
            timeout=WAIT,
        )
        assert summary.summary == summary_events[0].summary


async def test_silence_completes_with_an_empty_transcript(
    db_url: str, pki: Pki, tmp_path: Path
) -> None:
    import numpy as np

    async with run_mesh(db_url, pki, tmp_path) as mesh:
        meeting = await create_meeting(mesh)
        await upload(mesh, meeting.id, as_wav(np.zeros(16_000 * 2, dtype=np.float32)))
        events = await follow(mesh, meeting.id)
        assert statuses(events)[-1] == "COMPLETED"
        assert final_segment_events(events) == []
        assert list((await transcript(mesh, meeting.id)).segments) == []


async def test_an_upload_wakes_the_workers_rather_than_waiting_for_their_next_poll(
    db_url: str, pki: Pki, tmp_path: Path
) -> None:
    # Workers that would look for a job only once an hour: the upload's own wake-up is
    # what starts its job.
    async with run_mesh(db_url, pki, tmp_path, pipeline_poll_interval_s=3600.0) as mesh:
        meeting = await create_meeting(mesh)
        await upload(mesh, meeting.id, as_wav(dialogue(2)))
        events = await follow(mesh, meeting.id)
        assert statuses(events)[-1] == "COMPLETED"


async def test_a_recording_that_breaks_after_upload_fails_with_a_readable_reason(
    db_url: str, pki: Pki, tmp_path: Path
) -> None:
    # The probe accepted the file at upload; its bytes are damaged before processing
    # (a bad disk, a bad restore). Decoding cannot succeed on a retry, so it fails at once.
    async with run_mesh(db_url, pki, tmp_path, pipeline_workers=0) as mesh:
        meeting = await create_meeting(mesh)
        await upload(mesh, meeting.id, m4a_bytes(dialogue(2)))
        connection = await asyncpg.connect(db_url)
        try:
            await connection.execute(
                "UPDATE audio_chunks SET data = decode(repeat('ff', length(data)), 'hex')"
                " WHERE meeting_id = $1",
                __import__("uuid").UUID(meeting.id),
            )
        finally:
            await connection.close()
        mesh.workers()
        events = await follow(mesh, meeting.id)
        assert statuses(events)[-2:] == ["TRANSCRIBING", "FAILED"]
        failed = await mesh.stub.GetMeeting(
            meeting_service_pb2.GetMeetingRequest(meeting_id=meeting.id),
            metadata=auth(USER),
            timeout=WAIT,
        )
        assert failed.meeting.failure_reason.startswith("the recording could not be decoded")
        jobs = await mesh.service.services.jobs.for_meeting(
            mesh.service.services.pool, __import__("uuid").UUID(meeting.id)
        )
        assert [(j.status.value, j.attempts) for j in jobs] == [("FAILED", 1)]


@pytest.mark.parametrize(
    ("history", "stage"),
    [
        ([], S.MEETING_STATUS_TRANSCRIBING),
        ([S.MEETING_STATUS_QUEUED], S.MEETING_STATUS_TRANSCRIBING),
        ([S.MEETING_STATUS_TRANSCRIBING, S.MEETING_STATUS_QUEUED], S.MEETING_STATUS_TRANSCRIBING),
        ([S.MEETING_STATUS_TRANSCRIBING, S.MEETING_STATUS_DIARIZING], S.MEETING_STATUS_DIARIZING),
        (
            [S.MEETING_STATUS_DIARIZING, S.MEETING_STATUS_QUEUED, S.MEETING_STATUS_SUMMARIZING],
            S.MEETING_STATUS_SUMMARIZING,
        ),
        ([S.MEETING_STATUS_LIVE, S.MEETING_STATUS_DIARIZING], S.MEETING_STATUS_DIARIZING),
        ([S.MEETING_STATUS_LIVE, S.MEETING_STATUS_QUEUED], S.MEETING_STATUS_TRANSCRIBING),
    ],
)
def test_a_job_resumes_at_the_last_stage_the_meeting_entered(
    history: list[int], stage: int
) -> None:
    assert resume_stage(history) == stage
