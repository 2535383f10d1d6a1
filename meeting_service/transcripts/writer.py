"""Writing segments by group commit, for the processing pipeline and live sessions."""

from __future__ import annotations

import asyncio
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import asyncpg

from contract_errors.meeting import invalid_field, not_found
from gen.meeting.v1 import meeting_pb2
from meeting_service.meetings.messages import timestamp
from meeting_service.transcripts.repository import EventsRepository, SearchFields


class _Refused(Exception):
    """A fence refused part of a group commit; the transaction is rolled back."""


def _fail(item: _Append, error: BaseException) -> None:
    if not item.done.done():
        item.done.set_exception(error)


Fence = Callable[[asyncpg.Connection], Awaitable[None]]
"""A check run inside the writing transaction, after the meetings' rows are locked.

It raises to refuse the write (e.g. `jobs.lease.Lease`: the job is no longer this
worker's). Fences are compared by equality, so a batch runs each distinct one once: give
them value semantics (a frozen dataclass).
"""

# Most segments, and most payload bytes, one group commit writes.
MAX_BATCH_SEGMENTS = 1000
MAX_BATCH_BYTES = 4 << 20


@dataclass(eq=False)
class _Append:
    """Segments of one meeting that must be stored together, and who waits for them.

    `payloads` are the segments serialized with their `segment_id`, less the sequence:
    the sequence's bytes are appended once it is allocated (a field serialized again
    later in a message overrides the earlier value, so this is the stored segment).
    `fields` are what search reads of each.
    """

    meeting_id: uuid.UUID
    indexes: list[int]
    payloads: list[bytes]
    fields: list[SearchFields]
    fence: Fence | None
    done: asyncio.Future[list[meeting_pb2.TranscriptEvent]]
    size: int


class TranscriptWriter:
    """Stores segments, each as an event with its own sequence.

    Segments are stored by group commit: a call hands its segments to the writer's queue
    and waits; one task writes whatever is queued in one transaction (one multi-row
    statement per table, one NOTIFY per meeting, one durable commit), and segments that
    arrive while that commit is in flight go together into the next one. A lone caller
    is written at once, as before; many callers (several jobs or live sessions, or a
    caller that does not wait for each segment before handing over the next) share
    commits. Each segment still becomes its own event with its own sequence, in the
    order the calls were made, and each call returns only once its segments are
    durable. Status changes and summaries go through `EventLog` in their writer's own
    transaction.

    These calls are internal (the pipeline runs in this process): they are not scoped to
    an owner. A segment of a deleted meeting fails with MeetingError(MEETING_NOT_FOUND),
    which is the pipeline's signal to stop.

    Args:
        pool: The pool.
        events: The event SQL.
        max_batch_segments: Most segments per group commit.
        max_batch_bytes: Most serialized segment bytes per group commit.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        events: EventsRepository,
        *,
        max_batch_segments: int = MAX_BATCH_SEGMENTS,
        max_batch_bytes: int = MAX_BATCH_BYTES,
    ) -> None:
        self._pool = pool
        self._events = events
        self._max_segments = max_batch_segments
        self._max_bytes = max_batch_bytes
        self._queue: deque[_Append] = deque()
        self._flusher: asyncio.Task[None] | None = None
        self.commits = 0  # group commits made (for tests and the benchmarks)
        # Scratch messages whose bytes are appended to a serialized segment.
        self._id_field = meeting_pb2.Segment()
        self._sequence_field = meeting_pb2.Segment()

    def submit(
        self,
        meeting_id: uuid.UUID,
        segments: Sequence[meeting_pb2.Segment],
        *,
        fence: Fence | None = None,
    ) -> asyncio.Future[list[meeting_pb2.TranscriptEvent]]:
        """Queues segments for the next group commit, without waiting for it.

        The order of `submit` calls is the order of the events' sequences. A caller that
        receives segments faster than one commit takes (the pipeline reading a GPU
        stream) submits each as it arrives and awaits the futures later, so its segments
        share commits; `append_segment` is `submit` of one segment awaited at once.

        Args:
            meeting_id: The meeting.
            segments: The segments, stored in one transaction; `index` says which,
                `segment_id` and `sequence` are filled in (the caller's messages are not
                changed).
            fence: Checked inside the transaction; when it raises, nothing of this call
                is stored and the future gets its exception.

        Returns:
            A future of the stored events, one per segment, in order, set once they are
            durable. Cancelling it before its commit starts withdraws the segments.

        Raises:
            MeetingError: INVALID_FIELD for a negative index (nothing is queued).
        """
        for segment in segments:
            if segment.index < 0:
                raise invalid_field("segment.index", "segment index must be 0 or more")
        future: asyncio.Future[list[meeting_pb2.TranscriptEvent]]
        future = asyncio.get_running_loop().create_future()
        if not segments:
            future.set_result([])
            return future
        # Serialized now, in the caller's turn, while an earlier commit may be in flight.
        self._queue.append(self._serialize(meeting_id, segments, fence, future))
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush(), name="transcript-group-commit")
        return future

    async def append_segment(
        self,
        meeting_id: uuid.UUID,
        segment: meeting_pb2.Segment,
        *,
        fence: Fence | None = None,
    ) -> meeting_pb2.TranscriptEvent:
        """Stores one segment as an event, once it is durable (see `submit`).

        Raises:
            MeetingError: MEETING_NOT_FOUND when the meeting is gone; INVALID_FIELD for a
                negative index.
        """
        (event,) = await self.submit(meeting_id, [segment], fence=fence)
        return event

    async def store(
        self,
        conn: asyncpg.Connection,
        meeting_id: uuid.UUID,
        segments: Sequence[meeting_pb2.Segment],
    ) -> list[meeting_pb2.TranscriptEvent]:
        """Stores segments as events inside the caller's transaction, outside group commit.

        For a write that must commit together with other changes of the meeting (a
        speaker's new name and the segments that show it).

        Args:
            conn: The connection, inside the caller's transaction.
            meeting_id: The meeting.
            segments: The segments, as for `submit`.

        Returns:
            The stored events, one per segment, in order.

        Raises:
            MeshError: MEETING_NOT_FOUND when the meeting is gone.
        """
        if not segments:
            return []
        done: asyncio.Future[list[meeting_pb2.TranscriptEvent]]
        done = asyncio.get_running_loop().create_future()
        item = self._serialize(meeting_id, segments, None, done)
        refused: dict[_Append, BaseException] = {}
        stored = await self._write(conn, [item], refused)
        if item in refused:
            raise refused[item]
        return stored[item]

    def _serialize(
        self,
        meeting_id: uuid.UUID,
        segments: Sequence[meeting_pb2.Segment],
        fence: Fence | None,
        done: asyncio.Future[list[meeting_pb2.TranscriptEvent]],
    ) -> _Append:
        prefix = f"{meeting_id}:"
        field = self._id_field
        indexes: list[int] = []
        payloads: list[bytes] = []
        fields: list[SearchFields] = []
        size = 0
        for segment in segments:
            field.segment_id = prefix + str(segment.index)
            payload = segment.SerializeToString() + field.SerializeToString()
            indexes.append(segment.index)
            payloads.append(payload)
            fields.append(SearchFields.of(segment))
            size += len(payload)
        return _Append(meeting_id, indexes, payloads, fields, fence, done, size)

    async def _flush(self) -> None:
        batch: list[_Append] = []
        try:
            while self._queue:
                batch = self._take()
                if batch:
                    await self._commit(batch)
                batch = []
        except BaseException as error:
            # Only cancellation (the loop shutting down) gets here: `_commit` hands
            # every other error to the callers it concerns.
            for item in [*batch, *self._queue]:
                if not item.done.done():
                    item.done.cancel()
            self._queue.clear()
            if not isinstance(error, asyncio.CancelledError):  # pragma: no cover
                raise
        finally:
            self._flusher = None

    def _take(self) -> list[_Append]:
        batch: list[_Append] = []
        segments = size = 0
        while self._queue:
            item = self._queue[0]
            if item.done.done():  # withdrawn by its caller
                self._queue.popleft()
                continue
            if batch and (
                segments + len(item.payloads) > self._max_segments
                or size + item.size > self._max_bytes
            ):
                break
            batch.append(self._queue.popleft())
            segments += len(item.payloads)
            size += item.size
        return batch

    async def _commit(self, batch: list[_Append]) -> None:
        """Writes a batch in one transaction; each caller gets its events or its error."""
        while batch:
            refused: dict[_Append, BaseException] = {}
            try:
                async with self._pool.acquire() as conn, conn.transaction():
                    results = await self._write(conn, batch, refused)
            except _Refused:
                # A fence refused: nothing was stored; write the others without them.
                for item, error in refused.items():
                    _fail(item, error)
                batch = [item for item in batch if item not in refused]
                continue
            except Exception as error:
                for item in batch:
                    _fail(item, error)
                return
            self.commits += 1
            for item in batch:
                if item in refused:
                    _fail(item, refused[item])
                elif not item.done.done():
                    item.done.set_result(results[item])
            return

    async def _write(
        self,
        conn: asyncpg.Connection,
        batch: list[_Append],
        refused: dict[_Append, BaseException],
    ) -> dict[_Append, list[meeting_pb2.TranscriptEvent]]:
        """The statements of one group commit (see `EventsRepository.append_segments`).

        Raises:
            _Refused: A fence raised (its items are in `refused`); roll back.
        """
        last = await self._events.lock_meetings(conn, sorted({i.meeting_id for i in batch}))
        for item in batch:
            if item.meeting_id not in last:
                refused[item] = not_found(item.meeting_id)
        fences: dict[Fence, list[_Append]] = {}
        for item in batch:
            if item.fence is not None and item not in refused:
                fences.setdefault(item.fence, []).append(item)
        fence_failed = False
        for fence, items in fences.items():
            try:
                await fence(conn)
            except Exception as error:
                fence_failed = True
                for item in items:
                    refused[item] = error
        if fence_failed:
            raise _Refused
        written = [item for item in batch if item not in refused]
        by_meeting: dict[uuid.UUID, list[_Append]] = {}
        for item in written:
            by_meeting.setdefault(item.meeting_id, []).append(item)
        stored: dict[_Append, list[meeting_pb2.TranscriptEvent]] = {}
        sequence_field = self._sequence_field
        for mid in sorted(by_meeting):
            items = by_meeting[mid]
            after = last[mid]
            indexes: list[int] = []
            payloads: list[bytes] = []
            fields: list[SearchFields] = []
            sequence = after
            for item in items:
                indexes += item.indexes
                fields += item.fields
                for payload in item.payloads:
                    sequence += 1
                    sequence_field.sequence = sequence
                    payloads.append(payload + sequence_field.SerializeToString())
            created = await self._events.append_segments(
                conn, mid, after, indexes, payloads, fields
            )
            # What every event of the statement shares, copied into each.
            common = meeting_pb2.TranscriptEvent(
                meeting_id=str(mid), create_time=timestamp(created)
            )
            sequence = after
            position = 0
            for item in items:
                made: list[meeting_pb2.TranscriptEvent] = []
                for _ in item.payloads:
                    sequence += 1
                    event = meeting_pb2.TranscriptEvent()
                    event.CopyFrom(common)
                    event.sequence = sequence
                    event.segment.ParseFromString(payloads[position])
                    position += 1
                    made.append(event)
                stored[item] = made
        return stored
