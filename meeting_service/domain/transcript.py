"""Transcripts: reading them, following them live, and writing them (for the pipeline)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass

import asyncpg

from gen.meeting.v1 import meeting_pb2, meeting_service_pb2
from meeting_service.domain import convert
from meeting_service.domain.event_hub import EventHub, HubClosed, SubscriberLagged
from meeting_service.domain.event_log import EventLog
from meeting_service.domain.validation import meeting_id as parse_id
from meeting_service.errors import MeetingError, invalid_field, not_found
from meeting_service.repositories.events import EventsRepository
from meeting_service.repositories.meetings import MeetingsRepository
from mesh_common.errors import MeshError

_REPLAY_BATCH = 500
# Before any recording is processed there is no transcript to show.
_NOT_STARTED = frozenset(
    {
        meeting_pb2.MEETING_STATUS_AWAITING_AUDIO,
        meeting_pb2.MEETING_STATUS_UPLOADING,
        meeting_pb2.MEETING_STATUS_QUEUED,
    }
)


class _Refused(Exception):
    """A fence refused part of a group commit; the transaction is rolled back."""


def _fail(item: _Append, error: BaseException) -> None:
    if not item.done.done():
        item.done.set_exception(error)


class TranscriptService:
    """What callers read: the transcript, the summary, and the live event stream."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        meetings: MeetingsRepository,
        events: EventsRepository,
        hub: EventHub,
    ) -> None:
        self._pool = pool
        self._meetings = meetings
        self._events = events
        self._hub = hub

    async def get_transcript(
        self, owner: str, meeting_id: str
    ) -> meeting_service_pb2.GetTranscriptResponse:
        """Returns the latest version of every segment of a caller's meeting.

        Raises:
            MeshError: MEETING_NOT_FOUND; NOT_READY while no recording has been processed.
        """
        mid = parse_id(meeting_id)
        async with self._pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
            # One snapshot, so `last_sequence` matches the segments exactly.
            row = await self._meetings.get(conn, mid, owner=owner)
            if row is None:
                raise not_found(mid)
            segments = await self._events.segments(conn, mid)
        if not segments and row.status in _NOT_STARTED:
            raise MeetingError(
                meeting_pb2.ERROR_REASON_NOT_READY,
                "the transcript is not ready: the recording has not been processed yet",
                {"status": meeting_pb2.MeetingStatus.Name(row.status)},  # type: ignore[arg-type]
            )
        response = meeting_service_pb2.GetTranscriptResponse(
            last_sequence=row.last_sequence,
            status=meeting_pb2.MeetingStatus.ValueType(row.status),
        )
        speakers: dict[str, None] = {}
        for stored in segments:
            segment = response.segments.add()
            segment.ParseFromString(stored.payload)
            if segment.speaker:
                speakers.setdefault(segment.speaker)
        response.speakers.extend(speakers)
        return response

    async def get_summary(self, owner: str, meeting_id: str) -> meeting_pb2.Summary:
        """Returns the summary of a caller's meeting.

        Raises:
            MeshError: MEETING_NOT_FOUND; NOT_READY before the summary is written.
        """
        mid = parse_id(meeting_id)
        row = await self._meetings.get(self._pool, mid, owner=owner)
        if row is None:
            raise not_found(mid)
        if row.summary is None:
            raise MeetingError(
                meeting_pb2.ERROR_REASON_NOT_READY,
                "the summary is not written yet",
                {"status": meeting_pb2.MeetingStatus.Name(row.status)},  # type: ignore[arg-type]
            )
        return meeting_pb2.Summary.FromString(row.summary)

    async def stream(
        self, owner: str, meeting_id: str, after_sequence: int
    ) -> AsyncGenerator[meeting_pb2.TranscriptEvent]:
        """Yields a caller's meeting's events after `after_sequence`, then new ones forever.

        Subscribes first and reads the stored log second, then skips live events it has
        already yielded: nothing committed in between is missed or repeated. Ends after
        the `deleted` event.

        Args:
            owner: The caller.
            meeting_id: The meeting.
            after_sequence: The last sequence the caller has (0 for all).

        Yields:
            The events, in sequence order.

        Raises:
            MeshError: MEETING_NOT_FOUND; INVALID_FIELD for a negative sequence;
                BACKEND_UNAVAILABLE when the server shuts down. A caller that reads
                slowly is not cut off: once its buffer of live events is full, it reads
                what it missed from the table, so it never holds up other subscribers.
        """
        mid = parse_id(meeting_id)
        if after_sequence < 0:
            raise invalid_field("after_sequence", "after_sequence must be 0 or more")
        try:
            subscribing = self._hub.subscribe(mid)
            subscription = await subscribing.__aenter__()
        except HubClosed:
            raise _shutting_down(after_sequence) from None
        try:
            if await self._meetings.get(self._pool, mid, owner=owner) is None:
                raise not_found(mid)
            last = after_sequence
            async for event in self._read_stored(mid, last, None):
                yield event
                last = event.sequence
            while True:
                try:
                    event = await subscription.next()
                except SubscriberLagged:
                    # Its buffer filled (it reads slowly, or a burst outgrew it): what it
                    # missed is in the table; live events are buffered again from now.
                    async for missed in self._read_stored(mid, last, None):
                        yield missed
                        last = missed.sequence
                    continue
                except HubClosed:
                    raise _shutting_down(last) from None
                if event.sequence <= last:
                    continue
                if event.sequence > last + 1 and not event.HasField("deleted"):
                    # Defensive: fill any hole from the table rather than skip events.
                    async for missed in self._read_stored(mid, last, event.sequence - 1):
                        yield missed
                        last = missed.sequence
                yield event
                last = event.sequence
                if event.HasField("deleted"):
                    return
        finally:
            with contextlib.suppress(Exception):
                await subscribing.__aexit__(None, None, None)

    async def _read_stored(
        self, mid: uuid.UUID, after: int, up_to: int | None
    ) -> AsyncIterator[meeting_pb2.TranscriptEvent]:
        while True:
            rows = await self._events.list_after(self._pool, mid, after, _REPLAY_BATCH)
            for row in rows:
                if up_to is not None and row.sequence > up_to:
                    return
                yield convert.event(row)
                after = row.sequence
            if len(rows) < _REPLAY_BATCH:
                return


def _shutting_down(last: int) -> MeshError:
    return MeetingError(
        meeting_pb2.ERROR_REASON_BACKEND_UNAVAILABLE,
        f"the server is shutting down; resume with after_sequence={last}",
        {"after_sequence": str(last)},
        retry_after=1.0,
    )


Fence = Callable[[asyncpg.Connection], Awaitable[None]]
"""A check run inside the writing transaction, after the meetings' rows are locked.

It raises to refuse the write (e.g. `PipelineStore.lease_fence`: the job is no longer
this worker's). Fences are compared by equality, so a batch runs each distinct one once:
give them value semantics (a frozen dataclass).
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
    """

    meeting_id: uuid.UUID
    indexes: list[int]
    payloads: list[bytes]
    fence: Fence | None
    done: asyncio.Future[list[meeting_pb2.TranscriptEvent]]
    size: int


class TranscriptWriter:
    """What the processing pipeline writes.

    Segments are stored by group commit: a call hands its segments to the writer's queue
    and waits; one task writes whatever is queued in one transaction (one multi-row
    statement per table, one NOTIFY per meeting, one durable commit), and segments that
    arrive while that commit is in flight go together into the next one. A lone caller
    is written at once, as before; many callers (several jobs or live sessions, or a
    caller that does not wait for each segment before handing over the next) share
    commits. Each segment still becomes its own event with its own sequence, in the
    order the calls were made, and each call returns only once its segments are
    durable. Status changes and summaries are written one per transaction.

    These calls are internal (the pipeline runs in this process): they are not scoped to
    an owner. Each raises MeshError(MEETING_NOT_FOUND) when the meeting was deleted,
    which is the pipeline's signal to stop.

    Args:
        pool: The pool.
        log: Event writes (status changes, summaries).
        events: The event SQL (segments' group commits).
        max_batch_segments: Most segments per group commit.
        max_batch_bytes: Most serialized segment bytes per group commit.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        log: EventLog,
        events: EventsRepository | None = None,
        *,
        max_batch_segments: int = MAX_BATCH_SEGMENTS,
        max_batch_bytes: int = MAX_BATCH_BYTES,
    ) -> None:
        self._pool = pool
        self._log = log
        self._events = events or EventsRepository()
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
        share commits; `append_segments` is `submit` awaited at once.

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
            MeshError: INVALID_FIELD for a negative index (nothing is queued).
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
        prefix = f"{meeting_id}:"
        field = self._id_field
        indexes: list[int] = []
        payloads: list[bytes] = []
        size = 0
        for segment in segments:
            field.segment_id = prefix + str(segment.index)
            payload = segment.SerializeToString() + field.SerializeToString()
            indexes.append(segment.index)
            payloads.append(payload)
            size += len(payload)
        self._queue.append(_Append(meeting_id, indexes, payloads, fence, future, size))
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush(), name="transcript-group-commit")
        return future

    async def append_segments(
        self,
        meeting_id: uuid.UUID,
        segments: Sequence[meeting_pb2.Segment],
        *,
        fence: Fence | None = None,
    ) -> list[meeting_pb2.TranscriptEvent]:
        """Stores segments (each replacing any earlier version with its index) as events.

        The segments are stored in one transaction, possibly with other callers'.

        Args:
            meeting_id: The meeting.
            segments: The segments; `index` says which, `segment_id` and `sequence` are
                filled in.
            fence: Checked inside the transaction (see `submit`).

        Returns:
            The stored events, one per segment, in order, once they are durable.

        Raises:
            MeshError: MEETING_NOT_FOUND when the meeting is gone; INVALID_FIELD for a
                negative index.
        """
        return await self.submit(meeting_id, segments, fence=fence)

    async def append_segment(
        self,
        meeting_id: uuid.UUID,
        segment: meeting_pb2.Segment,
        *,
        fence: Fence | None = None,
    ) -> meeting_pb2.TranscriptEvent:
        """Stores one segment as an event (see `append_segments`)."""
        (event,) = await self.submit(meeting_id, [segment], fence=fence)
        return event

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
            sequence = after
            for item in items:
                indexes += item.indexes
                for payload in item.payloads:
                    sequence += 1
                    sequence_field.sequence = sequence
                    payloads.append(payload + sequence_field.SerializeToString())
            created = await self._events.append_segments(conn, mid, after, indexes, payloads)
            create_time = convert.timestamp(created)
            text_id = str(mid)
            sequence = after
            position = 0
            for item in items:
                made: list[meeting_pb2.TranscriptEvent] = []
                for _ in item.payloads:
                    sequence += 1
                    event = meeting_pb2.TranscriptEvent(
                        sequence=sequence, meeting_id=text_id, create_time=create_time
                    )
                    event.segment.ParseFromString(payloads[position])
                    position += 1
                    made.append(event)
                stored[item] = made
        return stored

    async def change_status(
        self,
        meeting_id: uuid.UUID,
        status: meeting_pb2.MeetingStatus.ValueType,
        reason: str = "",
    ) -> meeting_pb2.TranscriptEvent:
        """Moves the meeting to `status` (an event); `reason` becomes `failure_reason`."""
        async with self._pool.acquire() as conn, conn.transaction():
            return await self._log.change_status(conn, meeting_id, status, reason)

    async def store_summary(
        self, meeting_id: uuid.UUID, summary: meeting_pb2.Summary
    ) -> meeting_pb2.TranscriptEvent:
        """Stores the summary (an event); GetSummary returns it from now on."""
        async with self._pool.acquire() as conn, conn.transaction():
            return await self._log.put_summary(conn, meeting_id, summary)

    async def mark_failed(self, meeting_id: uuid.UUID, reason: str) -> meeting_pb2.TranscriptEvent:
        """Moves the meeting to FAILED with a reason a user can read (an event)."""
        return await self.change_status(meeting_id, meeting_pb2.MEETING_STATUS_FAILED, reason)
