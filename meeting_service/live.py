"""LiveTranscribe: live audio in, transcript events out, then a job for speakers and summary.

The call, in order:

1. The first message is the config. The meeting must be the caller's and await audio;
   only 16 kHz is accepted (UNSUPPORTED_AUDIO otherwise). The meeting goes LIVE.
2. Audio is bridged to gpu_proxy's `Recognize` in live mode with interim results. Every
   segment version the recognizer sends, partial or final, is stored as an event and
   returned; partials are stored too (the contract stores them "like any others"), so
   followers on StreamTranscript see them and a final replaces its partial by index.
   The audio is also stored, in chunks, as the meeting's recording: a WAV file whose
   header is written once the length is known, so the recording can be processed again.
3. When the client half-closes (or leaves), recognition finishes, the recording is sealed
   and a job is queued with the meeting in DIARIZING; the job labels speakers and writes
   the summary (see `meeting_service.pipeline.job`). The call returns those events too,
   up to `pipeline_live_follow_s`, and ends when the meeting is COMPLETED or FAILED.

If recognition fails mid-way, the audio received so far is kept and a job that transcribes
the recording from the start is queued; the caller gets UNAVAILABLE.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass

import asyncpg
import grpc

from gen.gpu.v1 import gpu_pb2
from gen.meeting.v1 import meeting_pb2, meeting_service_pb2
from gpu_proxy.client import GpuStubs
from meeting_service.db.database import CONNECTION_ERRORS
from meeting_service.domain import validation
from meeting_service.domain.event_log import EventLog
from meeting_service.domain.transcript import TranscriptService, TranscriptWriter
from meeting_service.errors import MeetingError, invalid_field, not_found, wrong_state
from meeting_service.pipeline import segments as convert
from meeting_service.pipeline.gpu import GpuConnection, GpuNotConfigured, recognize
from meeting_service.pipeline.store import PipelineStore
from meeting_service.repositories.jobs import JobsRepository
from meeting_service.repositories.meetings import MeetingsRepository
from meeting_service.repositories.uploads import UploadsRepository
from mesh_common.errors import MeshError
from mesh_common.logging import logger
from mesh_common.streams import DRAIN_SECONDS, drain

SAMPLE_RATE = 16_000
CONTENT_TYPE = "audio/wav"
WAV_HEADER_BYTES = 44
RECORDING_CHUNK_BYTES = 64 * 1024  # 2 s of audio per stored chunk
AUDIO_QUEUE_MESSAGES = 64
_SEAL_ERRORS: tuple[type[BaseException], ...] = (MeshError, *CONNECTION_ERRORS)
_ENDED = frozenset({meeting_pb2.MEETING_STATUS_COMPLETED, meeting_pb2.MEETING_STATUS_FAILED})


def wav_header(data_bytes: int) -> bytes:
    """The 44-byte header of a 16 kHz mono 16-bit PCM WAV file with that much audio."""
    return (
        b"RIFF"
        + struct.pack("<I", 36 + data_bytes)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, 1, SAMPLE_RATE, SAMPLE_RATE * 2, 2, 16)
        + b"data"
        + struct.pack("<I", data_bytes)
    )


@dataclass(frozen=True)
class LiveDependencies:
    """What live sessions use (wired once by `build_services`).

    Attributes:
        pool: The pool.
        meetings: SQL for meetings.
        uploads: SQL for recordings.
        jobs: SQL for jobs.
        log: Event writes inside a transaction.
        writer: Event writes in their own transaction.
        transcripts: Live event streams (to follow the job).
        gpu: The connection to gpu_proxy.
        max_seconds: Longest session (the recognition stream's deadline).
        follow_seconds: How long the call returns the job's events after the audio.
    """

    pool: asyncpg.Pool
    meetings: MeetingsRepository
    uploads: UploadsRepository
    jobs: JobsRepository
    log: EventLog
    writer: TranscriptWriter
    transcripts: TranscriptService
    gpu: GpuConnection
    max_seconds: float
    follow_seconds: float


class LiveTranscriber:
    """Serves live sessions; a session's recognition outlives a client that leaves.

    Args:
        deps: The dependencies.
    """

    def __init__(self, deps: LiveDependencies) -> None:
        self._deps = deps
        self._sessions: set[asyncio.Task[None]] = set()

    async def close(self) -> None:
        """Cancels the sessions still running (server shutdown); each queues its job."""
        for task in list(self._sessions):
            task.cancel()
        await asyncio.gather(*self._sessions, return_exceptions=True)

    async def transcribe(
        self,
        owner: str,
        requests: AsyncIterator[meeting_service_pb2.LiveTranscribeRequest],
        *,
        trace_context: str = "",
    ) -> AsyncGenerator[meeting_pb2.TranscriptEvent]:
        """Runs one live session (see the module docstring).

        Args:
            owner: The caller.
            requests: The client's stream: config first, then audio.
            trace_context: W3C traceparent of the call, for the job it queues.

        Yields:
            Every event the session and its job store, in sequence order.

        Raises:
            MeshError: INVALID_FIELD, UNSUPPORTED_AUDIO, MEETING_NOT_FOUND, WRONG_STATE;
                BACKEND_UNAVAILABLE when recognition fails.
        """
        try:
            config = await self._read_config(requests)
            mid = validation.meeting_id(config.meeting_id, "config.meeting_id")
            language = validation.language(config.language) if config.language else ""
            gpu = self._deps.gpu.stubs()
            meeting_language, started = await self._start(owner, mid)
        except GpuNotConfigured as error:
            await drain(requests, DRAIN_SECONDS)
            logger.bind(error=str(error)).error("LiveTranscribe cannot reach the GPU service")
            raise MeetingError(
                meeting_pb2.ERROR_REASON_BACKEND_UNAVAILABLE,
                "live transcription is unavailable on this server",
                retry_after=30.0,
            ) from None
        except MeshError:
            await drain(requests, DRAIN_SECONDS)
            raise
        yield started
        session = _Session(
            self._deps,
            mid,
            gpu_pb2.RecognitionConfig(
                encoding=gpu_pb2.AUDIO_ENCODING_LINEAR16,
                sample_rate_hertz=SAMPLE_RATE,
                language=language or meeting_language,
                mode=gpu_pb2.RECOGNITION_MODE_LIVE,
                interim_results=True,
            ),
            trace_context,
        )
        task = asyncio.create_task(session.run(gpu, requests), name=f"live-{mid}")
        self._sessions.add(task)
        task.add_done_callback(self._sessions.discard)
        last = started.sequence
        try:
            while (event := await session.events.get()) is not None:
                last = event.sequence
                yield event
        finally:
            # Half-closed or gone, the client sends nothing more that matters.
            session.stop_reading()
        await asyncio.shield(task)  # raises the session's error, if it failed
        async for event in self._follow(owner, mid, last):
            yield event

    async def _read_config(
        self, requests: AsyncIterator[meeting_service_pb2.LiveTranscribeRequest]
    ) -> meeting_service_pb2.LiveAudioConfig:
        first = await anext(requests, None)
        if first is None or not first.HasField("config"):
            raise invalid_field("config", "the first message must carry the config")
        config = first.config
        if config.sample_rate_hertz not in (0, SAMPLE_RATE):
            raise MeetingError(
                meeting_pb2.ERROR_REASON_UNSUPPORTED_AUDIO,
                f"live audio must be 16-bit mono PCM at {SAMPLE_RATE} Hz, "
                f"not {config.sample_rate_hertz} Hz",
                {"field": "config.sample_rate_hertz", "supported": str(SAMPLE_RATE)},
            )
        return config

    async def _start(self, owner: str, mid: uuid.UUID) -> tuple[str, meeting_pb2.TranscriptEvent]:
        """Moves the caller's meeting from AWAITING_AUDIO to LIVE and starts its recording.

        Returns:
            The meeting's language and the LIVE event.
        """
        deps = self._deps
        async with deps.pool.acquire() as conn, conn.transaction():
            row = await deps.meetings.get(conn, mid, owner=owner, for_update=True)
            if row is None:
                raise not_found(mid)
            status = meeting_pb2.MeetingStatus.Name(row.status)  # type: ignore[arg-type]
            if row.status != meeting_pb2.MEETING_STATUS_AWAITING_AUDIO:
                raise wrong_state(
                    status, f"live audio needs a meeting awaiting audio; this one is {status}"
                )
            await deps.uploads.begin(
                conn, mid, content_type=CONTENT_TYPE, total_size=None, sha256=""
            )
            if await deps.uploads.append_chunk(conn, mid, 0, wav_header(0)) is None:
                raise wrong_state(status, "the meeting already holds part of an uploaded recording")
            event = await deps.log.change_status(conn, mid, meeting_pb2.MEETING_STATUS_LIVE)
        logger.bind(meeting_id=str(mid)).info("live session started")
        return row.language, event

    async def _follow(
        self, owner: str, mid: uuid.UUID, after: int
    ) -> AsyncGenerator[meeting_pb2.TranscriptEvent]:
        """Yields the job's events until the meeting ends or the follow time is up."""
        loop = asyncio.get_running_loop()
        until = loop.time() + self._deps.follow_seconds
        events = self._deps.transcripts.stream(owner, str(mid), after)
        async with contextlib.aclosing(events):
            while (left := until - loop.time()) > 0:
                try:
                    event = await asyncio.wait_for(anext(events), left)
                except (TimeoutError, StopAsyncIteration):
                    return
                yield event
                if event.HasField("deleted") or (
                    event.HasField("status_change") and event.status_change.status in _ENDED
                ):
                    return


class _Session:
    """One session's work: audio to the recognizer and into the recording, events out.

    The client's messages are read by their own task (`_read`), which the call's end
    cancels; recognition then finishes on the audio already read, the recording is
    sealed and the job queued, whether or not anyone still listens.
    """

    def __init__(
        self,
        deps: LiveDependencies,
        mid: uuid.UUID,
        config: gpu_pb2.RecognitionConfig,
        trace_context: str,
    ) -> None:
        self._deps = deps
        self._store = PipelineStore()
        self._mid = mid
        self._config = config
        self._trace_context = trace_context
        self.events: asyncio.Queue[meeting_pb2.TranscriptEvent | None] = asyncio.Queue()
        self._audio: asyncio.Queue[bytes | None] = asyncio.Queue(AUDIO_QUEUE_MESSAGES)
        self._reader: asyncio.Task[None] | None = None
        self._stopped = False
        self._pending = bytearray()
        self._stored = WAV_HEADER_BYTES
        self._log = logger.bind(meeting_id=str(mid))

    def stop_reading(self) -> None:
        """Stops reading the client's audio; what was read is still recognized."""
        self._stopped = True
        if self._reader is not None:
            self._reader.cancel()

    async def run(
        self, gpu: GpuStubs, requests: AsyncIterator[meeting_service_pb2.LiveTranscribeRequest]
    ) -> None:
        """Recognizes until the audio ends, then seals the recording and queues the job.

        Raises:
            MeshError: Why the session failed (after the recording was sealed).
        """
        self._reader = asyncio.create_task(self._read(requests))
        if self._stopped:
            self._reader.cancel()
        failure: MeshError | None = None
        try:
            segments = recognize(
                gpu,
                self._config,
                self._audio_blocks(),
                deadline=self._deps.max_seconds,
            )
            async with contextlib.aclosing(segments):
                async for recognized in segments:
                    segment = convert.from_recognized(recognized)
                    self.events.put_nowait(
                        await self._deps.writer.append_segment(self._mid, segment)
                    )
            await self._reader
        except grpc.aio.AioRpcError as error:
            self._log.bind(code=error.code().name, details=error.details()).warning(
                "live recognition failed"
            )
            failure = MeetingError(
                meeting_pb2.ERROR_REASON_BACKEND_UNAVAILABLE,
                "live recognition failed: the GPU service is unavailable; the audio received "
                "so far is kept and will be transcribed",
                retry_after=1.0,
            )
        except MeshError as error:
            failure = error
        except asyncio.CancelledError:
            failure = MeetingError(
                meeting_pb2.ERROR_REASON_BACKEND_UNAVAILABLE,
                "the server stopped during the live session; the audio received so far is "
                "kept and will be transcribed",
                retry_after=1.0,
            )
            raise
        finally:
            await self._stop_reader()
            try:
                self.events.put_nowait(await self._finish(failure))
            except _SEAL_ERRORS as error:
                self._log.bind(error=repr(error)).warning("could not seal the live recording")
            finally:
                # Whatever happened, the call must end: the caller waits for this marker,
                # then gets the session's error from the task.
                self.events.put_nowait(None)
        if failure is not None:
            raise failure

    async def _read(
        self, requests: AsyncIterator[meeting_service_pb2.LiveTranscribeRequest]
    ) -> None:
        try:
            async for request in requests:
                if request.HasField("config"):
                    raise invalid_field("config", "only the first message may carry the config")
                if request.audio:
                    await self._audio.put(request.audio)
        except asyncio.CancelledError:
            if not self._stopped:
                raise
        finally:
            await self._audio.put(None)

    async def _stop_reader(self) -> None:
        reader = self._reader
        if reader is None or reader.done():
            return
        self._stopped = True
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
        # The reader may not have had room for its end marker.
        reader.cancel()

    async def _audio_blocks(self) -> AsyncIterator[bytes]:
        """The audio for the recognizer, stored in the recording as it passes."""
        while (block := await self._audio.get()) is not None:
            self._pending += block
            if len(self._pending) >= RECORDING_CHUNK_BYTES:
                await self._flush()
            yield block

    async def _flush(self) -> None:
        if not self._pending:
            return
        data = bytes(self._pending)
        async with self._deps.pool.acquire() as conn, conn.transaction():
            size = await self._deps.uploads.append_chunk(conn, self._mid, self._stored, data)
        if size is None:
            raise not_found(self._mid)
        self._stored = size
        self._pending.clear()

    async def _finish(self, failure: MeshError | None) -> meeting_pb2.TranscriptEvent:
        """Seals the recording and queues its job, in one transaction.

        A clean end leaves the meeting DIARIZING (recognition is done); a failed one
        QUEUED with the reason, so the job transcribes the recording from the start.
        """
        if (self._stored + len(self._pending) - WAV_HEADER_BYTES) % 2:
            self._pending += b"\0"  # whole samples only
        await self._flush()
        data_bytes = self._stored - WAV_HEADER_BYTES
        deps = self._deps
        async with deps.pool.acquire() as conn, conn.transaction():
            if await deps.meetings.get(conn, self._mid, for_update=True) is None:
                raise not_found(self._mid)
            await self._store.rewrite_chunk(conn, self._mid, 0, wav_header(data_bytes))
            await deps.uploads.mark_complete(conn, self._mid)
            await deps.meetings.set_recording(
                conn,
                self._mid,
                duration_us=data_bytes * 1_000_000 // (2 * SAMPLE_RATE),
                content_type=CONTENT_TYPE,
            )
            if failure is None:
                event = await deps.log.change_status(
                    conn, self._mid, meeting_pb2.MEETING_STATUS_DIARIZING
                )
            else:
                event = await deps.log.change_status(
                    conn, self._mid, meeting_pb2.MEETING_STATUS_QUEUED, failure.message
                )
            await deps.jobs.create(conn, self._mid, trace_context=self._trace_context)
        self._log.bind(audio_bytes=data_bytes, failed=failure is not None).info(
            "live session ended; job queued"
        )
        return event
