"""LiveTranscribe: live audio in, transcript events out, then a job for speakers and summary.

The call, in order:

1. The first message is the config. The meeting must be the caller's and await audio;
   only 16 kHz is accepted (UNSUPPORTED_AUDIO otherwise). The meeting goes LIVE.
2. Audio is bridged to gpu_proxy's `Recognize` in live mode with interim results. Every
   segment version the recognizer sends, partial or final, is stored as an event and
   returned; partials are stored too (the contract stores them "like any others"), so
   followers on StreamTranscript see them and a final replaces its partial by index.
   The audio is also stored as the meeting's recording (`recordings.LiveRecording`).
3. When the client half-closes (or leaves), recognition finishes, the recording is sealed
   and a job is queued with the meeting in DIARIZING; the job labels speakers and writes
   the summary (see `meeting_service.processing.job`). The call returns those events too,
   up to `pipeline_live_follow_s`, and ends when the meeting is COMPLETED or FAILED.

If recognition fails mid-way, the audio received so far is kept and a job that transcribes
the recording from the start is queued; the caller gets UNAVAILABLE.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass

import asyncpg
import grpc

from contract_errors.meeting import (
    MeetingError,
    invalid_field,
    not_found,
    status_name,
    unavailable,
    wrong_state,
)
from gen.gpu.v1 import gpu_pb2
from gen.meeting.v1 import meeting_pb2, meeting_service_pb2
from gpu_client import GpuConnection, GpuNotConfigured, GpuStubs, recognize
from meeting_service import validation
from meeting_service.db.database import CONNECTION_ERRORS
from meeting_service.meetings.repository import MeetingsRepository
from meeting_service.quotas.limits import Quotas
from meeting_service.recordings import pcm
from meeting_service.recordings.completion import RecordingCompletion
from meeting_service.recordings.live_recording import LiveRecording
from meeting_service.recordings.repository import UploadsRepository
from meeting_service.recordings.store import RecordingStore
from meeting_service.transcripts import gpu_results
from meeting_service.transcripts.event_log import EventLog
from meeting_service.transcripts.reader import TranscriptReader
from meeting_service.transcripts.writer import TranscriptWriter
from mesh_common.logging import logger
from mesh_common.streams import DRAIN_SECONDS, drain

AUDIO_QUEUE_MESSAGES = 64
_SEAL_ERRORS: tuple[type[BaseException], ...] = (MeetingError, *CONNECTION_ERRORS)


@dataclass(frozen=True)
class LiveParts:
    """What live sessions use (wired once by `meeting_service.wiring`).

    Attributes:
        pool: The pool.
        meetings: SQL for meetings.
        uploads: SQL for recordings.
        store: Where recordings' bytes are kept.
        completion: Completes a recording and queues its job.
        log: Event writes inside a transaction.
        writer: Segments, by group commit.
        transcripts: Live event streams (to follow the job).
        gpu: The connection to gpu_proxy.
        max_s: Longest session (the recognition stream's deadline).
        follow_s: How long the call returns the job's events after the audio.
        quotas: The per-caller limits (live sessions, stored bytes).
    """

    pool: asyncpg.Pool
    meetings: MeetingsRepository
    uploads: UploadsRepository
    store: RecordingStore
    completion: RecordingCompletion
    log: EventLog
    writer: TranscriptWriter
    transcripts: TranscriptReader
    gpu: GpuConnection
    max_s: float
    follow_s: float
    quotas: Quotas


class LiveTranscriber:
    """Serves live sessions; a session's recognition outlives a client that leaves.

    Args:
        parts: What sessions use.
    """

    def __init__(self, parts: LiveParts) -> None:
        self._parts = parts
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
            MeetingError: INVALID_FIELD, UNSUPPORTED_AUDIO, MEETING_NOT_FOUND, WRONG_STATE,
                QUOTA_EXCEEDED;
                BACKEND_UNAVAILABLE when recognition fails.
        """
        try:
            config = await self._read_config(requests)
            mid = validation.meeting_id(config.meeting_id, "config.meeting_id")
            language = validation.language(config.language) if config.language else ""
            gpu = self._parts.gpu.stubs()
            recording = LiveRecording(
                self._parts.pool,
                self._parts.uploads,
                self._parts.store,
                self._parts.completion,
                mid,
            )
            meeting_language, started = await self._start(owner, mid, recording)
        except GpuNotConfigured as error:
            await drain(requests, DRAIN_SECONDS)
            logger.bind(error=str(error)).error("LiveTranscribe cannot reach the GPU service")
            raise unavailable(
                "live transcription is unavailable on this server", retry_after=30.0
            ) from None
        except MeetingError:
            await drain(requests, DRAIN_SECONDS)
            raise
        yield started
        session = _Session(
            self._parts,
            mid,
            recording,
            gpu_pb2.RecognitionConfig(
                encoding=gpu_pb2.AUDIO_ENCODING_LINEAR16,
                sample_rate_hertz=pcm.SAMPLE_RATE_HZ,
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
        if config.sample_rate_hertz not in (0, pcm.SAMPLE_RATE_HZ):
            raise MeetingError(
                meeting_pb2.ERROR_REASON_UNSUPPORTED_AUDIO,
                f"live audio must be 16-bit mono PCM at {pcm.SAMPLE_RATE_HZ} Hz, "
                f"not {config.sample_rate_hertz} Hz",
                {"field": "config.sample_rate_hertz", "supported": str(pcm.SAMPLE_RATE_HZ)},
            )
        return config

    async def _start(
        self, owner: str, mid: uuid.UUID, recording: LiveRecording
    ) -> tuple[str, meeting_pb2.TranscriptEvent]:
        """Moves the caller's meeting from AWAITING_AUDIO to LIVE and starts its recording.

        Returns:
            The meeting's language and the LIVE event.
        """
        parts = self._parts
        async with parts.pool.acquire() as conn, conn.transaction():
            row = await parts.meetings.get(conn, mid, owner=owner, for_update=True)
            if row is None:
                raise not_found(mid)
            status = status_name(row.status)
            if row.status != meeting_pb2.MEETING_STATUS_AWAITING_AUDIO:
                raise wrong_state(
                    status, f"live audio needs a meeting awaiting audio; this one is {status}"
                )
            await parts.quotas.check_live_start(conn, owner, mid)
            await recording.start(conn, status)
            event = await parts.log.change_status(conn, mid, meeting_pb2.MEETING_STATUS_LIVE)
        logger.bind(meeting_id=str(mid)).info("live session started")
        return row.language, event

    async def _follow(
        self, owner: str, mid: uuid.UUID, after: int
    ) -> AsyncGenerator[meeting_pb2.TranscriptEvent]:
        """Yields the job's events until the meeting ends or the follow time is up."""
        loop = asyncio.get_running_loop()
        until = loop.time() + self._parts.follow_s
        events = self._parts.transcripts.stream(owner, str(mid), after)
        async with contextlib.aclosing(events):
            while (left := until - loop.time()) > 0:
                try:
                    event = await asyncio.wait_for(anext(events), left)
                except (TimeoutError, StopAsyncIteration):
                    return
                yield event


class _Session:
    """One session's work: audio to the recognizer and into the recording, events out.

    The client's messages are read by their own task (`_read`), which the call's end
    cancels; recognition then finishes on the audio already read, the recording is
    sealed and the job queued, whether or not anyone still listens.
    """

    def __init__(
        self,
        parts: LiveParts,
        mid: uuid.UUID,
        recording: LiveRecording,
        config: gpu_pb2.RecognitionConfig,
        trace_context: str,
    ) -> None:
        self._parts = parts
        self._recording = recording
        self._mid = mid
        self._config = config
        self._trace_context = trace_context
        self.events: asyncio.Queue[meeting_pb2.TranscriptEvent | None] = asyncio.Queue()
        self._audio: asyncio.Queue[bytes | None] = asyncio.Queue(AUDIO_QUEUE_MESSAGES)
        self._reader: asyncio.Task[None] | None = None
        self._stopped = False
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
            MeetingError: Why the session failed (after the recording was sealed).
        """
        self._reader = asyncio.create_task(self._read(requests))
        if self._stopped:
            self._reader.cancel()
        failure: MeetingError | None = None
        try:
            segments = recognize(
                gpu,
                self._config,
                self._audio_blocks(),
                deadline=self._parts.max_s,
            )
            async with contextlib.aclosing(segments):
                async for recognized in segments:
                    segment = gpu_results.from_recognized(recognized)
                    self.events.put_nowait(
                        await self._parts.writer.append_segment(self._mid, segment)
                    )
            await self._reader
        except grpc.aio.AioRpcError as error:
            self._log.bind(code=error.code().name, details=error.details()).warning(
                "live recognition failed"
            )
            failure = unavailable(
                "live recognition failed: the GPU service is unavailable; the audio received "
                "so far is kept and will be transcribed"
            )
        except MeetingError as error:
            failure = error
        except asyncio.CancelledError:
            failure = unavailable(
                "the server stopped during the live session; the audio received so far is "
                "kept and will be transcribed"
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
            await self._recording.write(block)
            yield block

    async def _finish(self, failure: MeetingError | None) -> meeting_pb2.TranscriptEvent:
        """Completes the recording and queues its job.

        A clean end leaves the meeting DIARIZING (recognition is done); a failed one
        QUEUED with the reason, so the job transcribes the recording from the start.
        """
        if failure is None:
            event = await self._recording.finish(
                meeting_pb2.MEETING_STATUS_DIARIZING, trace_context=self._trace_context
            )
        else:
            event = await self._recording.finish(
                meeting_pb2.MEETING_STATUS_QUEUED, failure.message, self._trace_context
            )
        self._log.bind(audio_bytes=self._recording.audio_bytes, failed=failure is not None).info(
            "live session ended; job queued"
        )
        return event
