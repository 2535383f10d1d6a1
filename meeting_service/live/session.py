"""LiveTranscribe: live audio in, transcript events out, then a job for speakers and summary.

The call, in order (docs/live.md tells the client's side):

1. The first message is the config. Its audio format must be supported
   (`meeting_service.live.audio_input`; UNSUPPORTED_AUDIO otherwise). The meeting must be
   the caller's and either await audio (it goes LIVE) or be LIVE after a dropped stream
   (the call resumes it). The session holds the meeting by a lease (`live_leases`) that it
   renews while it runs; a resuming call waits for the previous session to let go, at
   most `live_lease_s` (the previous session's replica may have died).
2. Audio is converted to 16 kHz mono PCM and bridged to gpu_proxy's `Recognize` in live
   mode with interim results. Every segment version the recognizer sends, partial or
   final, is stored as an event and returned; partials are stored too (the contract stores
   them "like any others"), so followers on StreamTranscript see them and a final replaces
   its partial by index. The audio is also stored as the meeting's recording
   (`recordings.LiveRecording`). A resumed meeting gets a new recognition stream whose
   segment indexes and times continue after the stored ones, and its recording goes on
   after the stored bytes.
3. How the stream stops decides what becomes of the meeting:
   - The client's `end`: recognition finishes, the recording is sealed and a job is
     queued with the meeting in DIARIZING; the job labels speakers and writes the summary
     (see `meeting_service.processing.job`). The call returns those events too, up to
     `pipeline_live_follow_s`, and ends when the meeting is COMPLETED or FAILED.
   - The request stream ends without it (half-closed or cancelled): recognition finishes
     on the audio received, the recording is stored and the lease released. The meeting
     stays LIVE for `live_resume_grace_s`; if no call resumes it by then, `LiveSweeper`
     (on any replica) seals the recording and queues the job.
   - This server stops: as a drop, except that recognition was cut short, so the job
     transcribes the whole recording again.
   - Another call took the meeting over (this session's lease ran out unrenewed): the
     session stops and writes nothing more.
   - Recognition fails: the audio received so far is kept and a job that transcribes the
     recording from the start is queued; the caller gets UNAVAILABLE.
   - The audio cannot be decoded: the caller gets UNSUPPORTED_AUDIO and the meeting waits
     to be resumed, as after a drop.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
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
from gpu_client import GpuConnection, GpuNotConfigured, GpuStubs, GpuUnreachable, recognize
from meeting_service import validation
from meeting_service.db.database import CONNECTION_ERRORS
from meeting_service.live import audio_input
from meeting_service.live.repository import LiveLeasesRepository
from meeting_service.meetings.repository import MeetingRow, MeetingsRepository
from meeting_service.quotas.limits import Quotas
from meeting_service.recordings import pcm
from meeting_service.recordings.completion import RecordingCompletion
from meeting_service.recordings.live_recording import LiveRecording
from meeting_service.recordings.repository import UploadsRepository
from meeting_service.recordings.store import RecordingStore
from meeting_service.transcripts import gpu_results
from meeting_service.transcripts.event_log import EventLog
from meeting_service.transcripts.reader import TranscriptReader
from meeting_service.transcripts.repository import EventsRepository
from meeting_service.transcripts.writer import TranscriptWriter
from mesh_common.logging import logger
from mesh_common.streams import DRAIN_SECONDS, drain

AUDIO_QUEUE_MESSAGES = 64
TAKEOVER_POLL_S = 0.2  # how often a resuming call looks whether the previous session let go
_SEAL_ERRORS: tuple[type[BaseException], ...] = (MeetingError, *CONNECTION_ERRORS)
_UNSUPPORTED_AUDIO = meeting_pb2.ERROR_REASON_UNSUPPORTED_AUDIO
_RETRANSCRIBE = (
    "part of the live audio was not transcribed before its server stopped; the recording is "
    "transcribed again"
)
_LOST = (
    "the live stream's server stopped before all of its audio was transcribed; the recording "
    "is transcribed again"
)


@dataclass(frozen=True)
class LiveParts:
    """What live sessions use (wired once by `meeting_service.wiring`).

    Attributes:
        pool: The pool.
        meetings: SQL for meetings.
        uploads: SQL for recordings.
        store: Where recordings' bytes are kept.
        events: SQL for transcript events (where a resumed transcript continues).
        leases: SQL for the sessions' leases on their meetings.
        completion: Completes a recording and queues its job.
        log: Event writes inside a transaction.
        writer: Segments, by group commit.
        transcripts: Live event streams (to follow the job).
        gpu: The connection to gpu_proxy.
        max_s: Longest session (the recognition stream's deadline).
        follow_s: How long the call returns the job's events after the audio.
        lease_s: How long a session's lease lasts unrenewed.
        grace_s: How long a dropped meeting waits for a call to resume it.
        quotas: The per-caller limits (live sessions, stored bytes).
    """

    pool: asyncpg.Pool
    meetings: MeetingsRepository
    uploads: UploadsRepository
    store: RecordingStore
    events: EventsRepository
    leases: LiveLeasesRepository
    completion: RecordingCompletion
    log: EventLog
    writer: TranscriptWriter
    transcripts: TranscriptReader
    gpu: GpuConnection
    max_s: float
    follow_s: float
    lease_s: float
    grace_s: float
    quotas: Quotas


class _Stop(enum.Enum):
    """How a session's audio stopped."""

    ENDED = "ended"  # the client ended the audio
    DROPPED = "dropped"  # the client went away without ending it
    STOPPED = "stopped"  # this server is stopping
    LOST = "lost"  # another call took the meeting over


@dataclass(frozen=True)
class _Started:
    meeting: MeetingRow  # its language and vocabulary steer recognition
    event: meeting_pb2.TranscriptEvent | None  # the LIVE event; None when resumed
    next_index: int


@dataclass(frozen=True)
class _HoldsLease:
    """A writer fence: segments are stored only while the session holds its meeting."""

    leases: LiveLeasesRepository
    meeting_id: uuid.UUID
    session_id: uuid.UUID

    async def __call__(self, conn: asyncpg.Connection) -> None:
        lease = await self.leases.get(conn, self.meeting_id)
        if lease is None or lease.session_id != self.session_id:
            raise _taken_over()


def _taken_over() -> MeetingError:
    return wrong_state("LIVE", "another live stream took this meeting over")


async def finalise_released(
    parts: LiveParts, conn: asyncpg.Connection, mid: uuid.UUID, recording: LiveRecording
) -> meeting_pb2.TranscriptEvent:
    """Completes the recording of a LIVE meeting no session holds and queues its job.

    The lease says whether the last session recognized all the audio it stored (released
    cleanly: the job starts at diarization) or not (its replica stopped or died, or it
    stopped while ending: the job transcribes the recording again). Call
    `parts.completion.queued()` once the transaction commits.

    Args:
        parts: What live sessions use.
        conn: The connection, in a transaction that locked the meeting.
        mid: The meeting.
        recording: Its recording, resumed (`LiveRecording.resume`).

    Returns:
        The status event (DIARIZING or QUEUED).
    """
    lease = await parts.leases.get(conn, mid)
    if lease is not None and lease.session_id is None and lease.clean:
        event = await recording.complete_stored(conn, meeting_pb2.MEETING_STATUS_DIARIZING)
    else:
        event = await recording.complete_stored(conn, meeting_pb2.MEETING_STATUS_QUEUED, _LOST)
    await parts.leases.delete(conn, mid)
    return event


class LiveTranscriber:
    """Serves live sessions; a session's recognition outlives a client that leaves.

    Args:
        parts: What sessions use.
    """

    def __init__(self, parts: LiveParts) -> None:
        self._parts = parts
        self._sessions: set[asyncio.Task[None]] = set()

    async def close(self) -> None:
        """Cancels the sessions still running (server shutdown); each releases its meeting."""
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
            requests: The client's stream: config first, then audio, then `end`.
            trace_context: W3C traceparent of the call, for the job it queues.

        Yields:
            Every event the session and its job store, in sequence order.

        Raises:
            MeetingError: INVALID_FIELD, UNSUPPORTED_AUDIO, MEETING_NOT_FOUND, WRONG_STATE,
                QUOTA_EXCEEDED; BACKEND_UNAVAILABLE when recognition fails.
        """
        session_id = uuid.uuid4()
        try:
            config = await self._read_config(requests)
            mid = validation.meeting_id(config.meeting_id, "config.meeting_id")
            language = validation.language(config.language) if config.language else ""
            convert = audio_input.converter(config)
            gpu = await self._parts.gpu.connected_stubs()
            recording = LiveRecording(
                self._parts.pool,
                self._parts.uploads,
                self._parts.store,
                self._parts.completion,
                mid,
            )
            started = await self._start(owner, mid, session_id, recording, resume=config.resume)
        except GpuNotConfigured as error:
            await drain(requests, DRAIN_SECONDS)
            logger.bind(error=str(error)).error("LiveTranscribe cannot reach the GPU service")
            raise unavailable(
                "live transcription is unavailable on this server", retry_after=30.0
            ) from None
        except GpuUnreachable as error:
            await drain(requests, DRAIN_SECONDS)
            logger.bind(error=str(error)).warning("LiveTranscribe cannot reach the GPU service")
            raise unavailable(
                "the GPU service is unreachable; retry shortly", retry_after=5.0
            ) from None
        except MeetingError:
            await drain(requests, DRAIN_SECONDS)
            raise
        last = 0
        if started.event is not None:
            last = started.event.sequence
            yield started.event
        recognition = gpu_pb2.RecognitionConfig(
            encoding=gpu_pb2.AUDIO_ENCODING_LINEAR16,
            sample_rate_hertz=pcm.SAMPLE_RATE_HZ,
            language=language or started.meeting.language,
            mode=gpu_pb2.RECOGNITION_MODE_LIVE,
            interim_results=True,
            vocabulary=started.meeting.vocabulary,
        )
        recognition.start_offset.FromMicroseconds(pcm.duration_us(recording.stored_bytes))
        session = _Session(
            self._parts,
            mid,
            session_id,
            recording,
            convert,
            recognition,
            started.next_index,
            trace_context,
        )
        task = asyncio.create_task(session.run(gpu, requests), name=f"live-{mid}")
        self._sessions.add(task)
        task.add_done_callback(self._sessions.discard)
        try:
            while (event := await session.events.get()) is not None:
                last = event.sequence
                yield event
        finally:
            # Ended, gone or half-closed, the client sends nothing more that matters.
            session.stop_reading()
        try:
            await asyncio.shield(task)  # raises the session's error, if it failed
        except asyncio.CancelledError:
            if session.lost:
                raise _taken_over() from None
            raise
        if session.ended:
            async for event in self._follow(owner, mid, last):
                yield event

    async def _read_config(
        self, requests: AsyncIterator[meeting_service_pb2.LiveTranscribeRequest]
    ) -> meeting_service_pb2.LiveAudioConfig:
        first = await anext(requests, None)
        if first is None or not first.HasField("config"):
            raise invalid_field("config", "the first message must carry the config")
        return first.config

    async def _start(
        self,
        owner: str,
        mid: uuid.UUID,
        session_id: uuid.UUID,
        recording: LiveRecording,
        *,
        resume: bool,
    ) -> _Started:
        """Takes the caller's meeting: AWAITING_AUDIO goes LIVE; a LIVE one is resumed.

        A LIVE meeting whose session still holds its lease is waited for, at most one
        lease time, since that session lets go as soon as it notices its client left. A
        LIVE meeting whose recording was being completed when its session stopped (the
        recording's size and, with object storage, its completion are committed before
        the meeting's) is ended now, and the call refused.

        Raises:
            MeetingError: MEETING_NOT_FOUND; WRONG_STATE for a meeting in another status,
                for `resume` of a meeting that is not LIVE or whose live audio had ended,
                or when another session keeps streaming into it.
        """
        parts = self._parts
        loop = asyncio.get_running_loop()
        give_up = loop.time() + parts.lease_s + TAKEOVER_POLL_S
        while True:
            ended: meeting_pb2.TranscriptEvent | None = None
            async with parts.pool.acquire() as conn, conn.transaction():
                row = await parts.meetings.get(conn, mid, owner=owner, for_update=True)
                if row is None:
                    raise not_found(mid)
                status = status_name(row.status)
                if row.status == meeting_pb2.MEETING_STATUS_AWAITING_AUDIO and not resume:
                    # A resumed meeting is LIVE already: counted when it started.
                    await parts.quotas.check_live_start(conn, owner, mid)
                    await recording.start(conn, status)
                    await parts.leases.take(conn, mid, session_id, parts.lease_s)
                    event = await parts.log.change_status(
                        conn, mid, meeting_pb2.MEETING_STATUS_LIVE
                    )
                    logger.bind(meeting_id=str(mid)).info("live session started")
                    return _Started(row, event, 0)
                if row.status != meeting_pb2.MEETING_STATUS_LIVE:
                    want = "a LIVE meeting to resume" if resume else "a meeting awaiting audio"
                    raise wrong_state(status, f"live audio needs {want}; this one is {status}")
                lease = await parts.leases.get(conn, mid)
                if lease is None or lease.expired:
                    await recording.resume(conn)
                    if not recording.ending:
                        await parts.leases.take(conn, mid, session_id, parts.lease_s)
                        index = await parts.events.next_segment_index(conn, mid)
                        logger.bind(meeting_id=str(mid), audio_bytes=recording.stored_bytes).info(
                            "live session resumed"
                        )
                        return _Started(row, None, index)
                    ended = await finalise_released(parts, conn, mid, recording)
            if ended is not None:
                parts.completion.queued()
                logger.bind(meeting_id=str(mid)).info("live meeting ended on resume")
                raise wrong_state(
                    status_name(ended.status_change.status),
                    "this meeting's live audio had ended: its recording is stored and being "
                    "processed",
                )
            if loop.time() >= give_up:
                raise wrong_state(status, "another live stream is sending audio to this meeting")
            await asyncio.sleep(TAKEOVER_POLL_S)

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
    cancels; recognition then finishes on the audio already read, and the meeting is
    finalised or released (see the module docstring), whether or not anyone still listens.
    A second task renews the session's lease and stops the session when it was lost.
    """

    def __init__(
        self,
        parts: LiveParts,
        mid: uuid.UUID,
        session_id: uuid.UUID,
        recording: LiveRecording,
        convert: audio_input.Converter,
        config: gpu_pb2.RecognitionConfig,
        index_base: int,
        trace_context: str,
    ) -> None:
        self._parts = parts
        self._recording = recording
        self._mid = mid
        self._id = session_id
        self._convert = convert
        self._config = config
        self._index_base = index_base
        self._trace_context = trace_context
        self._fence = _HoldsLease(parts.leases, mid, session_id)
        self.events: asyncio.Queue[meeting_pb2.TranscriptEvent | None] = asyncio.Queue()
        self._audio: asyncio.Queue[bytes | None] = asyncio.Queue(AUDIO_QUEUE_MESSAGES)
        self._reader: asyncio.Task[None] | None = None
        self._stopped = False  # the caller stopped listening
        self.ended = False  # the client sent `end`
        self.lost = False
        self._log = logger.bind(meeting_id=str(mid))

    def stop_reading(self) -> None:
        """Stops reading the client's audio; what was read is still recognized."""
        self._stopped = True
        if self._reader is not None:
            self._reader.cancel()

    async def run(
        self, gpu: GpuStubs, requests: AsyncIterator[meeting_service_pb2.LiveTranscribeRequest]
    ) -> None:
        """Recognizes until the audio stops, then finalises or releases the meeting.

        Raises:
            MeetingError: Why the session failed (after the recording was sealed).
        """
        self._reader = asyncio.create_task(self._read(requests))
        if self._stopped:
            self._reader.cancel()
        run = asyncio.current_task()
        assert run is not None
        heartbeat = asyncio.create_task(self._heartbeat(run))
        failure: MeetingError | None = None
        stop: _Stop | None = None
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
                    segment.index += self._index_base
                    self.events.put_nowait(
                        await self._parts.writer.append_segment(
                            self._mid, segment, fence=self._fence
                        )
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
            stop = _Stop.LOST if self.lost else _Stop.STOPPED
            raise
        finally:
            heartbeat.cancel()
            await self._stop_reader()
            try:
                if stop is None:
                    stop = _Stop.ENDED if self.ended else _Stop.DROPPED
                event = await self._conclude(stop, failure)
                if event is not None:
                    self.events.put_nowait(event)
            except _SEAL_ERRORS as error:
                self._log.bind(error=repr(error)).warning("could not store the live recording")
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
                part = request.WhichOneof("part")
                if part == "config":
                    raise invalid_field("config", "only the first message may carry the config")
                if part == "end":
                    self.ended = True
                    break
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

    async def _raw_audio(self) -> AsyncIterator[bytes]:
        while (block := await self._audio.get()) is not None:
            yield block

    async def _audio_blocks(self) -> AsyncIterator[bytes]:
        """The converted audio for the recognizer, stored in the recording as it passes."""
        async for block in self._convert(self._raw_audio()):
            self._recording.add(block)
            yield block
            # Once the recognizer has the block: a chunk's store (a transaction) never
            # holds up the audio that may end an utterance. What waits is stored at the end.
            await self._recording.store_chunk()

    async def _heartbeat(self, run: asyncio.Task[None]) -> None:
        """Renews the lease; a lease found taken stops the session (`run`)."""
        while True:
            await asyncio.sleep(self._parts.lease_s / 3)
            try:
                held = await self._parts.leases.renew(
                    self._parts.pool, self._mid, self._id, self._parts.lease_s
                )
            except CONNECTION_ERRORS as error:
                self._log.bind(error=repr(error)).warning("could not renew the live lease")
                continue
            if not held:
                self._log.warning("another live stream took this meeting over; stopping")
                self.lost = True
                run.cancel()
                return

    async def _conclude(
        self, stop: _Stop, failure: MeetingError | None
    ) -> meeting_pb2.TranscriptEvent | None:
        """Finalises the meeting (its status event returned) or releases it for a resume."""
        parts = self._parts
        if stop is _Stop.LOST:
            return None
        # Audio that cannot be decoded stops the stream, not the meeting: the client may
        # resume it with audio that can.
        bad_audio = failure is not None and failure.reason == _UNSUPPORTED_AUDIO
        if bad_audio or (failure is None and stop is not _Stop.ENDED):
            kept = False
            try:
                await self._recording.keep()
                kept = True
            except Exception as error:
                # The stream's own outcome (a drop, bad audio) is what the caller gets; a
                # resume continues after what is stored, transcribed again (not clean).
                self._log.bind(error=repr(error)).warning("could not keep the audio held")
            await parts.leases.release(
                parts.pool, self._mid, self._id, clean=kept and stop is _Stop.DROPPED
            )
            how = "bad audio" if bad_audio else stop.value
            self._log.bind(audio_bytes=self._recording.audio_bytes, how=how).info(
                "live stream stopped; the meeting waits to be resumed"
            )
            return None
        await self._recording.store()
        async with parts.pool.acquire() as conn, conn.transaction():
            await parts.completion.lock(conn, self._mid)
            lease = await parts.leases.get(conn, self._mid)
            if lease is not None and lease.session_id != self._id:
                self.lost = True
                return None
            if failure is not None:
                status, reason = meeting_pb2.MEETING_STATUS_QUEUED, failure.message
            elif lease is not None and not lease.clean:
                status, reason = meeting_pb2.MEETING_STATUS_QUEUED, _RETRANSCRIBE
            else:
                status, reason = meeting_pb2.MEETING_STATUS_DIARIZING, ""
            event = await self._recording.complete_stored(conn, status, reason, self._trace_context)
            await parts.leases.delete(conn, self._mid)
        parts.completion.queued()
        self._log.bind(audio_bytes=self._recording.audio_bytes, failed=failure is not None).info(
            "live session ended; job queued"
        )
        return event
