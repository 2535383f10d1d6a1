"""One processing job: recognition, diarization and summary of a stored recording.

A job resumes where the meeting's status history says it stopped: each stage is entered
(and announced) only once the previous stage's results are all stored, so

- the last stage entered was TRANSCRIBING or LIVE (or none): recognize the recording
  (again); a redone segment replaces the stored one with the same index;
- DIARIZING: every final segment is stored; label speakers;
- SUMMARIZING: speakers are stored; write the summary.

A live session that ended cleanly enters DIARIZING itself, so its job does not recognize
the audio a second time. Every write happens in a transaction that also checks the job's
lease (`jobs.Lease`), so a worker that lost its job cannot write after
another took it over.

Each attempt is a span ("process meeting") in the trace of the upload that queued the job
(its `traceparent` is stored with the job), after a "queue wait" span from when the job was
due to when it was claimed; each stage is a child span, and the GPU calls inside it carry
it on to gpu_proxy and the node.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import deque
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TypeAlias, TypeVar

import asyncpg
from opentelemetry import trace

from contract_errors.meeting import MeetingError
from gen.gpu.v1 import gpu_pb2
from gen.meeting.v1 import meeting_pb2
from gpu_client import GpuConnection, diarize, recognize
from meeting_service.jobs.lease import Lease
from meeting_service.jobs.repository import Job, JobLost, JobsRepository
from meeting_service.meetings.repository import MeetingRow, MeetingsRepository
from meeting_service.recordings.decode import decode_pcm
from meeting_service.recordings.pcm import BYTES_PER_SECOND, SAMPLE_RATE_HZ
from meeting_service.recordings.repository import UploadsRepository
from meeting_service.recordings.store import RecordingStore, reader
from meeting_service.transcripts import gpu_results
from meeting_service.transcripts.event_log import EventLog
from meeting_service.transcripts.reader import TranscriptReader
from meeting_service.transcripts.speakers import SpeakerNaming
from meeting_service.transcripts.writer import TranscriptWriter
from meeting_service.voices.matching import names_for
from meeting_service.voices.repository import Voice, VoicesRepository
from mesh_common.logging import logger
from mesh_common.telemetry import context_from_traceparent

Status: TypeAlias = meeting_pb2.MeetingStatus.ValueType  # noqa: UP040
T = TypeVar("T")
type Stored = asyncio.Future[list[meeting_pb2.TranscriptEvent]]
# Final segments handed to the writer and not yet known to be durable; past this many,
# recognition waits for the oldest (bounds memory when the database is slower).
MAX_UNSTORED = 1000

TRANSCRIBING = meeting_pb2.MEETING_STATUS_TRANSCRIBING
DIARIZING = meeting_pb2.MEETING_STATUS_DIARIZING
SUMMARIZING = meeting_pb2.MEETING_STATUS_SUMMARIZING
COMPLETED = meeting_pb2.MEETING_STATUS_COMPLETED

# What a status in the history means for where a job resumes.
_RESUME_AT: dict[int, Status] = {
    meeting_pb2.MEETING_STATUS_LIVE: TRANSCRIBING,
    TRANSCRIBING: TRANSCRIBING,
    DIARIZING: DIARIZING,
    SUMMARIZING: SUMMARIZING,
    # A completed meeting processed again (not done today) would start over.
    COMPLETED: TRANSCRIBING,
}

STEP_NAMES: dict[int, str] = {
    TRANSCRIBING: "speech recognition",
    DIARIZING: "speaker identification",
    SUMMARIZING: "summarization",
}


def resume_stage(history: Sequence[int]) -> Status:
    """Returns the stage a job starts at, from the statuses the meeting entered.

    Args:
        history: Every status the meeting entered, oldest first.

    Returns:
        TRANSCRIBING, DIARIZING or SUMMARIZING.
    """
    stage: Status = TRANSCRIBING
    for status in history:
        stage = _RESUME_AT.get(status, stage)
    return stage


class StageFailed(Exception):
    """An attempt failed in a stage; `error` is why.

    Attributes:
        stage: The stage (TRANSCRIBING, DIARIZING or SUMMARIZING).
        error: What was raised.
    """

    def __init__(self, stage: Status, error: Exception) -> None:
        super().__init__(f"{STEP_NAMES[stage]}: {error!r}")
        self.stage = stage
        self.error = error

    @property
    def step(self) -> str:
        """The stage in words ("speech recognition")."""
        return STEP_NAMES[self.stage]


@dataclass(frozen=True)
class Deadlines:
    """Deadlines of GPU calls: a fixed part plus a part per second of audio.

    Attributes:
        base_s: Seconds every call gets.
        per_audio_s: Seconds added per second of audio.
    """

    base_s: float
    per_audio_s: float

    def for_audio(self, audio_s: float) -> float:
        """Returns the deadline, in seconds from now, of a call over that much audio."""
        return self.base_s + self.per_audio_s * max(0.0, audio_s)


@dataclass(frozen=True)
class JobParts:
    """What running jobs uses (wired once by `meeting_service.wiring`).

    Attributes:
        pool: The pool.
        meetings: SQL for meetings (a job's meeting).
        uploads: SQL for recordings (the size of the audio to decode).
        store: Where the audio to decode is kept.
        jobs: SQL for jobs.
        log: Status changes and the summary, inside the job's transactions.
        transcripts: The stored segments and status history.
        writer: Segments, by group commit.
        gpu: The connection to gpu_proxy.
        voices: Each meeting's speaker voices, and the voice profiles they are matched to.
        speakers: The speaker names a match gives.
        deadlines: Deadlines of the GPU calls.
        tracer: The spans of jobs and their stages.
        voice_match_threshold: Lowest cosine similarity that names a speaker after a
            profile.
    """

    pool: asyncpg.Pool
    meetings: MeetingsRepository
    uploads: UploadsRepository
    store: RecordingStore
    jobs: JobsRepository
    log: EventLog
    transcripts: TranscriptReader
    writer: TranscriptWriter
    gpu: GpuConnection
    voices: VoicesRepository
    speakers: SpeakerNaming
    deadlines: Deadlines
    tracer: trace.Tracer
    voice_match_threshold: float


class JobRunner:
    """Runs claimed jobs against the database and gpu_proxy.

    Args:
        parts: What it uses.
    """

    def __init__(self, parts: JobParts) -> None:
        self._parts = parts
        self._tracer = parts.tracer

    async def run(self, job: Job, lease: Lease) -> None:
        """Runs a job to COMPLETED (and the job to SUCCEEDED).

        Args:
            job: The claimed job.
            lease: This worker's lease on it.

        Raises:
            JobLost: The meeting was deleted or another worker holds the job.
            StageFailed: The attempt failed (the caller classifies it and retries or fails).
        """
        parent = context_from_traceparent(job.trace_context)
        claimed_ns = time.time_ns()
        due_ns = min(int(job.next_attempt_at.timestamp() * 1e9), claimed_ns)
        self._tracer.start_span("queue wait", parent, start_time=due_ns).end(claimed_ns)
        attributes: dict[str, str | int] = {
            "meeting.id": str(job.meeting_id),
            "job.id": str(job.id),
            "job.attempt": job.attempts,
        }
        with self._tracer.start_as_current_span("process meeting", parent, attributes=attributes):
            await self._run(job, lease)

    async def _run(self, job: Job, lease: Lease) -> None:
        parts = self._parts
        mid = job.meeting_id
        row = await parts.meetings.get(parts.pool, mid)
        if row is None:
            raise JobLost(f"meeting {mid} was deleted")
        run = _Run(parts, job, lease, row)
        upload = await parts.uploads.get(parts.pool, mid)
        size = upload.stored_size if upload is not None else 0
        audio_s = row.duration_us / 1e6 if row.duration_us else size / BYTES_PER_SECOND
        run.deadline = parts.deadlines.for_audio(audio_s)
        run.size = size
        stage = resume_stage(await parts.transcripts.status_history(mid))
        log = logger.bind(meeting_id=str(mid), job_id=str(job.id), attempt=job.attempts)
        log.bind(stage=meeting_pb2.MeetingStatus.Name(stage)).info("job started")
        steps: list[tuple[Status, Callable[[], Awaitable[None]]]] = [
            (TRANSCRIBING, run.transcribe),
            (DIARIZING, run.diarize),
            (SUMMARIZING, run.summarize),
        ]
        for step_stage, step in steps:
            if step_stage < stage:  # the stages' enum values are in pipeline order
                continue
            try:
                with self._tracer.start_as_current_span(STEP_NAMES[step_stage]):
                    await step()
            except (JobLost, StageFailed):
                raise
            except Exception as error:
                raise StageFailed(step_stage, error) from error
        log.info("job completed")


class _Run:
    """The state of one attempt."""

    def __init__(
        self,
        parts: JobParts,
        job: Job,
        lease: Lease,
        meeting: MeetingRow,
    ) -> None:
        self._parts = parts
        self._pool = parts.pool
        self._gpu = parts.gpu
        self._job = job
        self._lease = lease
        self._status = meeting.status
        self._language = meeting.language
        self._expected_speakers = meeting.expected_speakers
        self._vocabulary = meeting.vocabulary
        self._owner = meeting.owner
        self.deadline = 0.0
        self.size = 0

    @property
    def _mid(self) -> uuid.UUID:
        return self._job.meeting_id

    def _pcm(self) -> AsyncGenerator[bytes]:
        return decode_pcm(reader(self._parts.store, self._mid), self.size)

    async def transcribe(self) -> None:
        await self._enter(TRANSCRIBING)
        config = gpu_pb2.RecognitionConfig(
            encoding=gpu_pb2.AUDIO_ENCODING_LINEAR16,
            sample_rate_hertz=SAMPLE_RATE_HZ,
            language=self._language,
            mode=gpu_pb2.RECOGNITION_MODE_BATCH,
            vocabulary=self._vocabulary,
        )
        # Each final segment is handed to the writer as it arrives and awaited later, so
        # the segments of a fast stream share group commits instead of paying one durable
        # commit each; what was recognized before a failure is still stored.
        unstored: deque[Stored] = deque()
        try:
            async with contextlib.aclosing(self._pcm()) as pcm:
                segments = recognize(
                    await self._gpu.connected_stubs(), config, pcm, deadline=self.deadline
                )
                async with contextlib.aclosing(segments):
                    async for recognized in segments:
                        if not recognized.is_final:
                            continue
                        unstored.append(self._submit([gpu_results.from_recognized(recognized)]))
                        while unstored and (unstored[0].done() or len(unstored) > MAX_UNSTORED):
                            await self._stored(unstored.popleft())
        finally:
            await self._stored(*unstored)

    async def diarize(self) -> None:
        stored = await self._parts.transcripts.final_segments(self._mid)
        heard = gpu_results.language_heard(stored) if stored else None

        async def detected(conn: asyncpg.Connection) -> None:
            if heard is not None:
                await self._parts.meetings.set_detected_language(conn, self._mid, heard)

        # Every final segment is stored before this stage is entered, so the language
        # heard is written with the stage's status, in one commit.
        await self._enter(DIARIZING, detected)
        if not stored:
            return
        config = gpu_pb2.DiarizationConfig(
            encoding=gpu_pb2.AUDIO_ENCODING_LINEAR16,
            sample_rate_hertz=SAMPLE_RATE_HZ,
            num_speakers=self._expected_speakers,
            spans=[gpu_results.span(s) for s in stored],
        )
        async with contextlib.aclosing(self._pcm()) as pcm:
            diarized = await diarize(
                await self._gpu.connected_stubs(), config, pcm, deadline=self.deadline
            )
        voices = [
            Voice(v.speaker, v.encoder, list(v.embedding), v.speech_seconds)
            for v in diarized.voices
        ]

        async def keep_voices(conn: asyncpg.Connection) -> dict[str, str]:
            # The voices are kept for profiles made later; known voices name their speakers.
            await self._parts.voices.put_meeting_voices(conn, self._mid, voices)
            known = await self._parts.voices.samples(
                conn, self._owner, voices[0].encoder if voices else ""
            )
            return await self._parts.speakers.name_unnamed(
                conn, self._mid, names_for(voices, known, self._parts.voice_match_threshold)
            )

        names = await self._write(keep_voices)
        await self._store_segments(gpu_results.with_speakers(stored, diarized, names))

    async def summarize(self) -> None:
        await self._enter(SUMMARIZING)
        stored = await self._parts.transcripts.final_segments(self._mid)
        language = self._language or next((s.language for s in stored if s.language), "")
        request = gpu_pb2.SummarizeRequest(
            lines=gpu_results.transcript_lines(stored), language=language
        )
        gpu = await self._gpu.connected_stubs()
        response = await gpu.summarization.Summarize(request, timeout=self.deadline)
        summary = gpu_results.summary(response, stored)

        # The summary, COMPLETED and the job's end commit together: the meeting never shows
        # a summary without being completed, and the job ends in one commit.
        async def finish(conn: asyncpg.Connection) -> None:
            await self._parts.log.put_summary(conn, self._mid, summary)
            await self._parts.log.change_status(conn, self._mid, COMPLETED)
            await self._parts.jobs.complete(conn, self._job.id, self._lease.worker)

        await self._write(finish, fenced=False)  # `complete` checks the lease itself

    async def _enter(
        self,
        stage: Status,
        also: Callable[[asyncpg.Connection], Awaitable[None]] | None = None,
    ) -> None:
        """Announces the stage (with `also` written in the same transaction), once."""
        if self._status == stage:
            # Resumed after a worker died in this stage: nothing new to announce.
            if also is not None:
                await self._write(also)
            return

        async def enter(conn: asyncpg.Connection) -> None:
            if also is not None:
                await also(conn)
            await self._parts.log.change_status(conn, self._mid, stage)

        await self._write(enter)
        self._status = stage

    async def _store_segments(self, segments: Sequence[meeting_pb2.Segment]) -> None:
        if segments:
            await self._stored(self._submit(segments))

    def _submit(self, segments: Sequence[meeting_pb2.Segment]) -> Stored:
        """Queues segments for the writer's next group commit, fenced by the lease."""
        return self._parts.writer.submit(self._mid, segments, fence=self._lease)

    async def _stored(self, *unstored: Stored) -> None:
        """Waits until submitted segments are durable.

        Raises:
            JobLost: The meeting was deleted or another worker holds the job.
        """
        with self._deletion_is_job_lost():
            await asyncio.gather(*unstored)

    async def _write(
        self, write: Callable[[asyncpg.Connection], Awaitable[T]], *, fenced: bool = True
    ) -> T:
        """Runs `write` and the lease check in one transaction."""
        with self._deletion_is_job_lost():
            async with self._pool.acquire() as conn, conn.transaction():
                result = await write(conn)
                if fenced:
                    await self._lease(conn)
                return result

    @contextlib.contextmanager
    def _deletion_is_job_lost(self) -> Iterator[None]:
        """Turns a write's MEETING_NOT_FOUND into JobLost: the job's cancellation signal."""
        try:
            yield
        except MeetingError as error:
            if error.reason == meeting_pb2.ERROR_REASON_MEETING_NOT_FOUND:
                raise JobLost(f"meeting {self._mid} was deleted") from None
            raise
