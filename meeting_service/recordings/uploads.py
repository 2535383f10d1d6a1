"""Uploads: a recording streamed into its store chunk by chunk, resumable, then probed.

The rules:
- A stream starts at the stored size (0 for a new upload); any other offset is
  FAILED_PRECONDITION and changes nothing.
- Bytes are stored as they arrive (`store.RecordingWriter`), so a dropped stream keeps
  what was stored of it: every chunk in PostgreSQL, every whole part in object storage.
  A client is only ever told the durable stored size. In PostgreSQL the chunk commits do
  not wait for the disk (`synchronous_commit` off): nobody has been told about a chunk
  yet, and PostgreSQL's log is ordered, so a crash can only lose the newest chunks
  together with the stored size that counted them, and a client resumes from the size it
  is then told. Whatever answers the client (the completion, the end of a partial
  stream, a rejection) is a durable commit, which makes every chunk before it durable.
- A stream whose metadata sets `explicit_end` completes the recording only with its
  `end` message, whose `total_size` must be the bytes received; a stream of it that ends
  without one was interrupted (a client gone, a proxy's call cancelled, which grpc.aio
  ends as a normal end of stream before it cancels the handler) and keeps its bytes for
  a resume. Otherwise the recording is complete when `total_size` bytes are stored, or,
  without a `total_size`, when the client ends the stream. It is then checked against
  its SHA-256 (hashed while the chunks were stored by a stream that started at offset 0;
  read back from the store, a span at a time, for a resumed upload) and probed where it
  lies in the store (`probe_audio` reads a few spans of most formats). A rejected
  recording (too large, wrong checksum, not audio) is discarded and the meeting awaits
  audio again, with the reason in `failure_reason`. Good audio gets its duration, the
  status QUEUED and a job, all in one transaction.
- Once its stream has ended, a recording is sealed (no chunk is accepted, its size is
  recorded) before its store completes it (the last part counted, an object store's
  multipart upload completed), and the sealing process holds a session lock in
  PostgreSQL until it is queued or rejected. A process that dies, or a call that is cut
  off, anywhere after the seal leaves it sealed and loses the lock with its connection;
  the next stream then takes the recording over and finishes its completion, and
  without one `finish_abandoned_seals` (called periodically by every replica) does, so a
  killed replica never leaves an upload stuck. Completing in the store is idempotent: an
  object whose multipart upload an earlier process completed is accepted once its size
  is the stored size, and its SHA-256 is checked as any resumed upload's is.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import NoReturn

import asyncpg

from contract_errors.meeting import (
    MeetingError,
    invalid_field,
    not_found,
    offset_mismatch,
    status_name,
    upload_too_large,
    written_by_another_stream,
    wrong_state,
)
from gen.meeting.v1 import meeting_pb2, meeting_service_pb2
from meeting_service import validation
from meeting_service.db.database import CONNECTION_ERRORS
from meeting_service.meetings.messages import meeting_message
from meeting_service.meetings.repository import MeetingRow, MeetingsRepository
from meeting_service.quotas.limits import Quotas
from meeting_service.recordings.completion import RecordingCompletion
from meeting_service.recordings.probe import AudioInfo, probe_audio
from meeting_service.recordings.repository import UploadRow, UploadsRepository
from meeting_service.recordings.store import RecordingStore, RecordingWriter, iter_spans, reader
from meeting_service.transcripts.event_log import EventLog
from mesh_common.logging import logger
from mesh_common.streams import DRAIN_SECONDS, drain, read_ahead

# Chunks received ahead of the one being stored: an object store takes a whole part at
# once (8 MiB by default, the gateway's chunks are 1 MiB), and the stream keeps flowing
# while it does. Bounded, so a stream holds at most this many chunks more in memory.
READ_AHEAD_CHUNKS = 8

_UPLOADABLE = frozenset(
    {meeting_pb2.MEETING_STATUS_AWAITING_AUDIO, meeting_pb2.MEETING_STATUS_UPLOADING}
)


@dataclass(frozen=True)
class UploadResult:
    """How an upload stream ended.

    Attributes:
        meeting: The meeting afterwards.
        stored_size: Bytes stored.
        complete: Whether the recording is complete and a job queued.
        duration_us: The recording's length when complete.
    """

    meeting: meeting_pb2.Meeting
    stored_size: int
    complete: bool
    duration_us: int | None


class UploadsService:
    """Stores recordings and queues their processing."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        meetings: MeetingsRepository,
        uploads: UploadsRepository,
        log: EventLog,
        completion: RecordingCompletion,
        store: RecordingStore,
        *,
        limit_bytes: int,
        quotas: Quotas,
    ) -> None:
        self._pool = pool
        self._quotas = quotas
        self._meetings = meetings
        self._uploads = uploads
        self._store = store
        self._log = log
        self._completion = completion
        self._limit = limit_bytes

    async def status(self, owner: str, meeting_id: str) -> UploadRow | None:
        """Tells how much of a caller's meeting's recording is stored (None: no upload yet).

        Raises:
            MeetingError: MEETING_NOT_FOUND.
        """
        mid = validation.meeting_id(meeting_id)
        await self._owned(self._pool, owner, mid)
        return await self._uploads.get(self._pool, mid)

    async def upload(
        self,
        owner: str,
        requests: AsyncIterator[meeting_service_pb2.UploadAudioRequest],
        *,
        trace_context: str = "",
        count_bytes: Callable[[int], object] = lambda _: None,
    ) -> UploadResult:
        """Stores one upload stream.

        Args:
            owner: The caller.
            requests: The stream: metadata first, then chunks.
            trace_context: W3C traceparent to hand to the processing job.
            count_bytes: Told the size of each chunk as it is taken from the stream (a
                metric; reading a chunk out of its message again would copy it).

        Returns:
            How it ended.

        Raises:
            MeetingError: INVALID_FIELD, MEETING_NOT_FOUND, WRONG_STATE,
                UPLOAD_OFFSET_MISMATCH, UPLOAD_TOO_LARGE, UPLOAD_CHECKSUM_MISMATCH, NOT_AUDIO,
                QUOTA_EXCEEDED (at the start, before any byte is stored).
        """
        # The next chunks arrive while this one is stored.
        async with contextlib.aclosing(read_ahead(requests, READ_AHEAD_CHUNKS)) as ahead:
            try:
                return await self._upload(owner, ahead, trace_context, count_bytes)
            except MeetingError:
                # Read on (bounded) before refusing: a status sent while the client is
                # still writing reaches it as INTERNAL instead (mesh_common.streams).
                await drain(ahead, DRAIN_SECONDS)
                raise

    async def finish_abandoned_seals(self) -> int:
        """Finishes the completion of sealed recordings whose sealer is gone.

        A sealer that died, or whose call was cancelled, before its recording was
        complete leaves it sealed with nobody to finish it: such a recording is verified
        and queued here (or rejected, as its own stream would have), without waiting for
        a client to resume it. One whose declared `total_size` is not all stored is
        unsealed instead, to be resumed.

        Returns:
            How many recordings were taken over.
        """
        taken = 0
        for mid in await self._uploads.sealed(self._pool):
            async with self._pool.acquire() as holder:
                if not await self._uploads.try_hold_seal(holder, mid):
                    continue  # its sealer is alive
                try:
                    taken += await self._finish_sealed(mid)
                except CONNECTION_ERRORS:
                    raise  # the database is gone: so is every other recording's finish
                except Exception:
                    # One recording that cannot be finished now (its object store is
                    # unreachable) must not keep the sweep from the ones after it.
                    logger.bind(meeting_id=str(mid)).exception(
                        "abandoned sealed upload not finished; the next sweep tries again"
                    )
                finally:
                    await self._uploads.release_seal(holder, mid)
        return taken

    async def _finish_sealed(self, mid: uuid.UUID) -> int:
        upload = await self._uploads.get(self._pool, mid)
        if upload is None or not upload.sealed or upload.complete:
            return 0  # finished meanwhile
        log = logger.bind(meeting_id=str(mid), stored_size=upload.stored_size)
        if upload.total_size is not None and upload.stored_size < upload.total_size:
            async with self._pool.acquire() as conn:
                await self._uploads.unseal(conn, mid)
            log.info("abandoned seal lifted: the recording is not all stored")
            return 1
        try:
            _, info = await self._verify_and_queue(mid, self._store.writer(upload), None, "", None)
        except MeetingError as error:
            log.bind(reason=error.message).info("abandoned sealed upload not completed")
            return 1
        log.bind(duration_us=info.duration_us).info("abandoned sealed upload completed")
        return 1

    async def _upload(
        self,
        owner: str,
        requests: AsyncIterator[meeting_service_pb2.UploadAudioRequest],
        trace_context: str,
        count_bytes: Callable[[int], object],
    ) -> UploadResult:
        first = await anext(requests, None)
        if first is None or not first.HasField("metadata"):
            raise invalid_field("metadata", "the first message must carry the metadata")
        metadata = first.metadata
        mid = validation.meeting_id(metadata.meeting_id, "metadata.meeting_id")
        limit = self._limit
        if metadata.HasField("size_limit"):
            validation.check(metadata, "size_limit", "metadata.size_limit")
            limit = min(limit, metadata.size_limit)
        upload = await self._begin(owner, mid, metadata, limit)
        log = logger.bind(meeting_id=str(mid), request_id=metadata.request_id)
        stored = upload.stored_size
        total = upload.total_size
        log.bind(offset=stored, total_size=total).info("upload stream started")
        # Hashing the bytes as they pass costs less than reading them back at the end, but
        # only a stream that carries the whole recording can.
        digest = hashlib.sha256() if stored == 0 else None
        writer = self._store.writer(upload, counts_behind=True)
        explicit = metadata.explicit_end
        received, end = stored, None
        if explicit or total is None or received < total:
            try:
                received, end = await self._receive(
                    mid, writer, requests, received, total, digest, limit, count_bytes, explicit
                )
            except BaseException:
                # A part S3 already holds is counted before the stream's error goes back.
                with contextlib.suppress(Exception):
                    await writer.end()
                raise
        if end is not None and (end != received or (total is not None and end != total)):
            # Nothing completes, nothing stored is lost: the client learns where to resume.
            stored = await self._end(mid, writer)
            await self._end_partial(mid)
            if end != received:
                raise offset_mismatch(
                    stored,
                    f"the stream ends the recording at {end} bytes but carried {received}; "
                    f"continue at offset {stored}",
                )
            raise invalid_field(
                "end.total_size", f"the end at {end} bytes differs from the total_size {total}"
            )
        ended = end is not None or (not explicit and (total is None or received == total))
        if not ended:
            stored = await self._end(mid, writer)
            await self._end_partial(mid)
            log.bind(stored_size=stored).info("upload stream ended before the recording did")
            row = await self._owned(self._pool, owner, mid)
            return UploadResult(meeting_message(row), stored, False, None)
        stored, info = await self._complete(mid, writer, received, trace_context, digest)
        log.bind(stored_size=stored, duration_us=info.duration_us).info("upload complete")
        row = await self._owned(self._pool, owner, mid)
        return UploadResult(meeting_message(row), stored, True, info.duration_us)

    async def _receive(
        self,
        mid: uuid.UUID,
        writer: RecordingWriter,
        requests: AsyncIterator[meeting_service_pb2.UploadAudioRequest],
        received: int,
        total: int | None,
        digest: hashlib._Hash | None,
        limit: int,
        count_bytes: Callable[[int], object],
        explicit_end: bool,
    ) -> tuple[int, int | None]:
        """Stores the stream's chunks from `received` on.

        Returns:
            The bytes received, and the `total_size` of the stream's `end` (None without
            one).
        """
        async for request in requests:
            if request.HasField("metadata"):
                raise invalid_field("metadata", "metadata is only allowed first")
            if request.HasField("end"):
                validation.check(request.end, "total_size", "end.total_size")
                return received, request.end.total_size
            chunk = request.chunk  # read once: each read of a bytes field copies it (upb)
            if not chunk:
                continue
            count_bytes(len(chunk))
            if received + len(chunk) > limit:
                await self._reject(mid, upload_too_large(limit), writer)
            if total is not None and received + len(chunk) > total:
                await self._reject(
                    mid,
                    invalid_field("chunk", f"more bytes were sent than total_size ({total})"),
                    writer,
                )
            if digest is None:
                await self._append(mid, writer, chunk)
            else:
                # hashlib lets go of the GIL: the hash runs beside the chunk's commit.
                await asyncio.gather(
                    self._append(mid, writer, chunk), asyncio.to_thread(digest.update, chunk)
                )
            received += len(chunk)
            if not explicit_end and total is not None and received == total:
                break
        return received, None

    async def _begin(
        self,
        owner: str,
        mid: uuid.UUID,
        metadata: meeting_service_pb2.UploadMetadata,
        limit: int,
    ) -> UploadRow:
        content_type = validation.content_type(metadata.content_type)
        validation.request_id(metadata.request_id)
        validation.check(metadata, "total_size", "metadata.total_size")
        total = metadata.total_size if metadata.HasField("total_size") else None
        if total is not None and total > limit:
            raise upload_too_large(limit)
        validation.check(metadata, "offset", "metadata.offset")
        sha256 = validation.sha256(metadata.sha256)
        async with self._pool.acquire() as conn, conn.transaction():
            row = await self._owned(conn, owner, mid, for_update=True)
            if row.status not in _UPLOADABLE:
                status = status_name(row.status)
                raise wrong_state(status, f"the meeting does not accept audio in status {status}")
            existing = await self._uploads.get(conn, mid, for_update=True)
            stored = existing.stored_size if existing else 0
            if existing is not None and existing.sealed:
                if not await self._uploads.seal_abandoned(conn, mid):
                    raise wrong_state(
                        status_name(row.status), "the recording is complete and being checked"
                    )
                # Its sealer died before it finished: this stream takes over.
                await self._uploads.unseal(conn, mid)
            if metadata.offset != stored:
                raise offset_mismatch(
                    stored, f"the upload must continue at offset {stored}, not {metadata.offset}"
                )
            declared = existing.total_size if existing else None
            if total is not None and declared is not None and total != declared:
                raise invalid_field(
                    "metadata.total_size",
                    f"total_size {total} differs from the {declared} declared earlier",
                )
            if total is not None and total < stored:
                raise invalid_field(
                    "metadata.total_size", f"total_size is below the {stored} bytes stored"
                )
            await self._quotas.check_upload_start(
                conn, owner, mid, stored=stored, total=declared if total is None else total
            )
            upload = await self._uploads.begin(
                conn, mid, content_type=content_type, total_size=total, sha256=sha256
            )
            if row.status == meeting_pb2.MEETING_STATUS_AWAITING_AUDIO:
                await self._log.change_status(conn, mid, meeting_pb2.MEETING_STATUS_UPLOADING)
            return upload

    async def _append(self, mid: uuid.UUID, writer: RecordingWriter, chunk: bytes) -> None:
        if await writer.append(chunk) is None:
            await self._moved_on(mid)

    async def _end(self, mid: uuid.UUID, writer: RecordingWriter) -> int:
        """Ends a stream that did not complete the recording: the size it resumes at."""
        stored = await writer.end()
        if stored is None:
            await self._moved_on(mid)
        return stored

    async def _moved_on(self, mid: uuid.UUID) -> NoReturn:
        """Raises why a writer could not store: another stream, or the meeting deleted."""
        current = await self._uploads.get(self._pool, mid)
        if current is None:
            raise not_found(mid)
        raise written_by_another_stream(current.stored_size)

    async def _end_partial(self, mid: uuid.UUID) -> None:
        """Records where a stream that did not complete the recording ended.

        Its commit is durable, and with it every chunk before it: the stored size the
        client is about to be told survives a crash.
        """
        async with self._pool.acquire() as conn:
            await self._uploads.touch(conn, mid)

    async def _complete(
        self,
        mid: uuid.UUID,
        writer: RecordingWriter,
        received: int,
        trace_context: str,
        digest: hashlib._Hash | None,
    ) -> tuple[int, AudioInfo]:
        # The seal stops counts (a sealed recording does not grow): what the writer
        # stored is counted first.
        if await writer.durable() is None:
            await self._moved_on(mid)
        # Held while sealed: if this process dies before the recording is complete, the
        # lock goes with its connection and a resumed stream (`_begin`) or the seal sweep
        # (`finish_abandoned_seals`) finishes the completion.
        async with self._pool.acquire() as holder:
            await self._uploads.hold_seal(holder, mid)
            try:
                return await self._verify_and_queue(mid, writer, received, trace_context, digest)
            finally:
                await self._uploads.release_seal(holder, mid)

    async def _verify_and_queue(
        self,
        mid: uuid.UUID,
        writer: RecordingWriter,
        received: int | None,
        trace_context: str,
        digest: hashlib._Hash | None,
    ) -> tuple[int, AudioInfo]:
        """Seals the recording, completes it in its store, verifies it and queues its job.

        The seal comes first: the store's completion (an object store's multipart
        completion, the last part) is then always inside it, so a completion cut off
        anywhere after the stream ended is left sealed, for whoever takes the seal over
        to finish. An error that is not the recording's rejection leaves it so.

        Args:
            mid: The meeting.
            writer: The writer holding the recording's last bytes (if any).
            received: The recording's size, when its stream has just ended (None when
                taking over a seal: the size was recorded with it).
            trace_context: W3C traceparent to hand to the job.
            digest: The SHA-256 of the whole recording as it was received, if one
                stream carried it all (None: read it back from the store).
        """
        async with self._pool.acquire() as conn, conn.transaction():
            upload = await self._uploads.get(conn, mid, for_update=True)
            if upload is None:
                raise not_found(mid)
            await self._uploads.seal(conn, mid, received)
        size = await writer.complete()
        actual = digest.hexdigest() if digest is not None else await self._hash(mid)
        if upload.sha256 and actual != upload.sha256:
            await self._reject(
                mid,
                MeetingError(
                    meeting_pb2.ERROR_REASON_UPLOAD_CHECKSUM_MISMATCH,
                    "the recording's SHA-256 does not match the one declared",
                    {"expected": upload.sha256, "actual": actual},
                ),
            )
        try:
            info = await probe_audio(reader(self._store, mid), size)
        except MeetingError as error:
            await self._reject(mid, error)
        async with self._pool.acquire() as conn, conn.transaction():
            await self._completion.complete(
                conn,
                mid,
                duration_us=info.duration_us,
                content_type=upload.content_type,
                status=meeting_pb2.MEETING_STATUS_QUEUED,
                trace_context=trace_context,
            )
        self._completion.queued()
        return size, info

    async def _hash(self, mid: uuid.UUID) -> str:
        digest = hashlib.sha256()
        async for span in iter_spans(reader(self._store, mid)):
            await asyncio.to_thread(digest.update, span)
        return digest.hexdigest()

    async def _reject(
        self, mid: uuid.UUID, error: MeetingError, writer: RecordingWriter | None = None
    ) -> None:
        """Discards the recording, returns the meeting to AWAITING_AUDIO, raises `error`.

        Args:
            mid: The meeting.
            error: Why.
            writer: The stream's writer, whose last count lands before the discard rather
                than after it (on a new upload's progress).
        """
        if writer is not None:
            with contextlib.suppress(Exception):
                await writer.durable()
        async with self._pool.acquire() as conn, conn.transaction():
            await self._uploads.discard(conn, mid)
            await self._meetings.set_recording(conn, mid, duration_us=None, content_type="")
            await self._log.change_status(
                conn, mid, meeting_pb2.MEETING_STATUS_AWAITING_AUDIO, error.message
            )
        await self._store.delete(mid)
        logger.bind(meeting_id=str(mid), reason=error.message).info("recording rejected")
        raise error

    async def _owned(
        self,
        conn: asyncpg.Connection | asyncpg.Pool,
        owner: str | None,
        mid: uuid.UUID,
        *,
        for_update: bool = False,
    ) -> MeetingRow:
        row = await self._meetings.get(conn, mid, owner=owner, for_update=for_update)
        if row is None:
            raise not_found(mid)
        return row
