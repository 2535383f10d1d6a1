"""A live session's recording: PCM stored as a WAV file while it arrives.

The header goes first with a length of 0 and is rewritten once the length is known
(`RecordingWriter.complete(header=...)`), so the recording can be processed again like
any upload. Audio is handed to the store in chunks of `CHUNK_BYTES` as it passes. A
session that resumes a dropped one continues after the bytes stored (docs/live.md), so a
meeting has one recording however often its stream dropped.
"""

from __future__ import annotations

import uuid

import asyncpg

from contract_errors.meeting import not_found, wrong_state
from gen.meeting.v1 import meeting_pb2
from meeting_service.recordings import pcm
from meeting_service.recordings.completion import RecordingCompletion
from meeting_service.recordings.repository import UploadsRepository
from meeting_service.recordings.store import RecordingStore, RecordingWriter

CONTENT_TYPE = "audio/wav"
CHUNK_BYTES = 64 * 1024  # 2 s of audio per stored chunk


class LiveRecording:
    """One live session's recording.

    Args:
        pool: The pool.
        uploads: SQL for recordings.
        store: Where the bytes go.
        completion: Completes the recording and queues its job.
        meeting_id: The meeting.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        uploads: UploadsRepository,
        store: RecordingStore,
        completion: RecordingCompletion,
        meeting_id: uuid.UUID,
    ) -> None:
        self._pool = pool
        self._uploads = uploads
        self._store = store
        self._completion = completion
        self._mid = meeting_id
        self._writer: RecordingWriter | None = None
        self._pending = bytearray()
        self._stored = 0
        self._ending = False

    async def start(self, conn: asyncpg.Connection, status: str) -> None:
        """Starts the recording inside the caller's transaction (the meeting is locked).

        Args:
            conn: The connection, in the transaction that makes the meeting LIVE.
            status: The meeting's status name, for the error.

        Raises:
            MeetingError: WRONG_STATE when part of an uploaded recording is already stored.
        """
        upload = await self._uploads.begin(
            conn, self._mid, content_type=CONTENT_TYPE, total_size=None, sha256=""
        )
        if upload.stored_size != 0:
            raise wrong_state(status, "the meeting already holds part of an uploaded recording")
        self._writer = self._store.writer(upload, keeps_start=True, sends_once=True)
        self._pending = bytearray(pcm.wav_header(0))

    async def resume(self, conn: asyncpg.Connection) -> None:
        """Continues a stored recording: audio goes after the bytes already stored.

        Args:
            conn: The connection, in the transaction that locked the LIVE meeting.

        Raises:
            MeetingError: MEETING_NOT_FOUND when the meeting has no recording.
        """
        upload = await self._uploads.get(conn, self._mid)
        if upload is None:
            raise not_found(self._mid)
        self._writer = self._store.writer(upload, keeps_start=True, sends_once=True)
        self._stored = upload.stored_size
        # Or stored whole before the ending recorded the size first (an older version).
        self._ending = upload.total_size is not None or upload.stored_whole
        if not self._stored:
            # Its session's server died before storing anything (with S3, below a part).
            self._pending = bytearray(pcm.wav_header(0))

    def add(self, audio: bytes) -> None:
        """Adds audio to what waits to be stored (`store_chunk`, `store`).

        Args:
            audio: The next bytes of the recording.
        """
        self._pending += audio

    async def store_chunk(self) -> None:
        """Stores the audio waiting once it fills a chunk.

        The writer (`sends_once`: a live stream sends nothing twice) makes the chunk
        durable at once, whatever it holds back for its store (S3 takes parts of 5 MiB);
        `keep_held` then stores what it held back, when the store can take it.

        Raises:
            MeetingError: MEETING_NOT_FOUND when the meeting was deleted.
        """
        if len(self._pending) >= CHUNK_BYTES:
            await self._flush()
            await self._keep_held()

    async def store(self) -> None:
        """Hands the store the audio still waiting (`keep` also makes it durable).

        Raises:
            MeetingError: MEETING_NOT_FOUND when the meeting was deleted.
        """
        if self.audio_bytes % 2:
            self._pending += b"\0"  # whole samples only
        await self._flush()

    async def keep(self) -> None:
        """Stores the audio received, all of it durably, for the session that resumes this one.

        Raises:
            MeetingError: MEETING_NOT_FOUND when the meeting was deleted (or another
                stream moved its recording on).
        """
        await self.store()
        await self._keep_held()

    async def complete_stored(
        self,
        conn: asyncpg.Connection,
        status: meeting_pb2.MeetingStatus.ValueType,
        reason: str = "",
        trace_context: str = "",
    ) -> meeting_pb2.TranscriptEvent:
        """Writes the real header, completes the recording and queues its job.

        Call `store` first when audio may still be waiting. With `resume` first, this
        also finalises the recording of a live session that was dropped and never resumed,
        on whichever replica notices (nothing of it is in memory there).

        Args:
            conn: The connection, in a transaction that locked the meeting.
            status: DIARIZING after a clean end (recognition is done), QUEUED otherwise
                (the job transcribes the recording from the start).
            reason: Why, when QUEUED.
            trace_context: W3C traceparent the job's spans continue.

        Returns:
            The status event.

        Raises:
            MeetingError: MEETING_NOT_FOUND when the meeting was deleted.
        """
        data_bytes = self.stored_bytes
        if not self._ending:
            # Each in a commit of its own before the store completes the recording (with
            # S3, in commits of their own too): every byte durable (`keep`), then the
            # size, which says to whoever finds the meeting LIVE after a stop that it
            # was ending.
            await self._keep_held()
            await self._uploads.set_total_size(self._pool, self._mid, self._stored)
            self._ending = True
        await self._started().complete(header=pcm.wav_header(data_bytes))
        return await self._completion.complete(
            conn,
            self._mid,
            duration_us=pcm.duration_us(data_bytes),
            content_type=CONTENT_TYPE,
            status=status,
            reason=reason,
            trace_context=trace_context,
        )

    async def _keep_held(self) -> None:
        if await self._started().keep_held() is None:
            raise not_found(self._mid)

    @property
    def ending(self) -> bool:
        """Whether a resumed recording was being completed when its session stopped.

        Its size was recorded (`complete_stored`), and the store may hold it whole
        already: only `complete_stored` may follow.
        """
        return self._ending

    @property
    def audio_bytes(self) -> int:
        """Bytes of audio stored or waiting to be."""
        return max(0, self._stored + len(self._pending) - pcm.WAV_HEADER_BYTES)

    @property
    def stored_bytes(self) -> int:
        """Bytes of audio the store holds."""
        return max(0, self._stored - pcm.WAV_HEADER_BYTES)

    async def _flush(self) -> None:
        if not self._pending:
            return
        if await self._started().append(bytes(self._pending)) is None:
            raise not_found(self._mid)
        self._stored += len(self._pending)
        self._pending.clear()

    def _started(self) -> RecordingWriter:
        if self._writer is None:
            raise RuntimeError("the recording was not started")
        return self._writer
