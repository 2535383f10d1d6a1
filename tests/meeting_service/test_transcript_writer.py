"""TranscriptWriter's group commit: concurrent segments share transactions, nothing else changes.

Every caller's segments are stored exactly once, each as its own event with its own
sequence (gap-free, in the order of the calls), each call returns only once its segments
are committed, and a caller refused (deleted meeting, lost lease, withdrawn) affects no one
else in its batch.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass

import asyncpg
import pytest

from gen.meeting.v1 import meeting_pb2, meeting_service_pb2
from meeting_service.jobs.lease import Lease
from meeting_service.jobs.repository import JobLost
from meeting_service.server import RunningMeetingService
from meeting_service.transcripts.repository import EventsRepository
from meeting_service.transcripts.writer import TranscriptWriter
from mesh_common.errors import MeshError
from tests.meeting_service.helpers import StreamCall, Stub, create, user
from tests.support.meeting import auth


def _segment(index: int, text: str = "", final: bool = True) -> meeting_pb2.Segment:
    segment = meeting_pb2.Segment(index=index, text=text or f"segment {index}", final=final)
    segment.start_offset.FromMilliseconds(index * 1000)
    segment.end_offset.FromMilliseconds(index * 1000 + 900)
    return segment


async def _submit(
    writer: TranscriptWriter, mid: uuid.UUID, indexes: list[int]
) -> list[meeting_pb2.TranscriptEvent]:
    return await writer.submit(mid, [_segment(i) for i in indexes])


def _writer(service: RunningMeetingService) -> TranscriptWriter:
    # A writer of the test's own, so its commit counter counts only the test's commits.
    return TranscriptWriter(service.services.pool, EventsRepository())


async def _meeting(stub: Stub) -> tuple[str, uuid.UUID]:
    owner = user()
    meeting = await create(stub, owner)
    return owner, uuid.UUID(meeting.id)


async def _stored_events(pool: asyncpg.Pool, mid: uuid.UUID) -> list[tuple[int, str, bytes]]:
    records = await pool.fetch(
        "SELECT sequence, kind, payload FROM events WHERE meeting_id = $1 ORDER BY sequence",
        mid,
    )
    return [(r["sequence"], r["kind"], r["payload"]) for r in records]


async def _segment_rows(pool: asyncpg.Pool, mid: uuid.UUID) -> list[meeting_pb2.Segment]:
    records = await pool.fetch(
        "SELECT payload FROM segments WHERE meeting_id = $1 ORDER BY segment_index", mid
    )
    return [meeting_pb2.Segment.FromString(r["payload"]) for r in records]


@dataclass(eq=False)
class _Gate:
    """A fence that holds its commit in flight until opened (and counts its checks)."""

    opened: asyncio.Event
    entered: asyncio.Event
    checks: int = 0

    async def __call__(self, conn: asyncpg.Connection) -> None:
        self.checks += 1
        self.entered.set()
        await self.opened.wait()


def _gate() -> _Gate:
    return _Gate(asyncio.Event(), asyncio.Event())


async def test_concurrent_appends_are_stored_once_in_order_in_one_commit(
    meeting_stub: Stub, meeting_service: RunningMeetingService
) -> None:
    pool = meeting_service.services.pool
    writer = _writer(meeting_service)
    meetings = [(await _meeting(meeting_stub))[1] for _ in range(3)]
    visible_on_return: list[bool] = []

    async def append(mid: uuid.UUID, index: int) -> meeting_pb2.TranscriptEvent:
        event = await writer.append_segment(mid, _segment(index))
        # Returned means committed: another connection sees the event and the segment.
        seen = await pool.fetchval(
            "SELECT count(*) FROM events e JOIN segments s"
            " ON s.meeting_id = e.meeting_id AND s.sequence = e.sequence"
            " WHERE e.meeting_id = $1 AND e.sequence = $2",
            mid,
            event.sequence,
        )
        visible_on_return.append(seen == 1)
        return event

    per_meeting = 60
    calls = [(mid, i) for i in range(per_meeting) for mid in meetings]
    tasks = [asyncio.create_task(append(mid, i)) for mid, i in calls]
    # Created last, so queued after every single-segment call; stored in one transaction.
    together = asyncio.create_task(_submit(writer, meetings[0], [1000, 1001]))
    events = await asyncio.gather(*tasks)
    pair = await together

    assert all(visible_on_return) and len(visible_on_return) == len(calls)
    # Every call was queued before the first commit started: one commit for all of them.
    assert writer.commits == 1
    for mid in meetings:
        mine = [e for (m, _), e in zip(calls, events, strict=True) if m == mid]
        if mid == meetings[0]:
            mine += pair
        sequences = [e.sequence for e in mine]
        # The creation's status event is sequence 1; then the calls' order, gap-free.
        assert sequences == list(range(2, 2 + len(mine)))
        assert all(e.meeting_id == str(mid) and e.HasField("create_time") for e in mine)
        assert all(e.segment.segment_id == f"{mid}:{e.segment.index}" for e in mine)
        stored = await _stored_events(pool, mid)
        assert [s for s, _, _ in stored] == list(range(1, 2 + len(mine)))
        assert [k for _, k, _ in stored[1:]] == ["segment"] * len(mine)
        assert [meeting_pb2.Segment.FromString(p) for _, _, p in stored[1:]] == [
            e.segment for e in mine
        ]
        rows = await _segment_rows(pool, mid)
        assert sorted(r.index for r in rows) == sorted(e.segment.index for e in mine)
        last = await pool.fetchval("SELECT last_sequence FROM meetings WHERE id = $1", mid)
        assert last == 1 + len(mine)


async def test_segments_that_arrive_during_a_commit_share_the_next_one(
    meeting_stub: Stub, meeting_service: RunningMeetingService
) -> None:
    pool = meeting_service.services.pool
    writer = _writer(meeting_service)
    _, mid = await _meeting(meeting_stub)
    gate = _gate()
    first = asyncio.ensure_future(writer.append_segment(mid, _segment(0), fence=gate))
    await gate.entered.wait()  # the first commit is in flight, its meeting row locked
    later = [asyncio.ensure_future(writer.append_segment(mid, _segment(i))) for i in (1, 2, 3)]
    await asyncio.sleep(0)
    assert not first.done() and not any(f.done() for f in later)
    assert await pool.fetchval("SELECT count(*) FROM events WHERE meeting_id = $1", mid) == 1
    gate.opened.set()
    events = [await first, *await asyncio.gather(*later)]
    assert [e.sequence for e in events] == [2, 3, 4, 5]
    assert writer.commits == 2  # the first alone, then the three that waited for it


async def test_a_lone_segment_is_written_at_once(
    meeting_stub: Stub, meeting_service: RunningMeetingService
) -> None:
    writer = _writer(meeting_service)
    _, mid = await _meeting(meeting_stub)
    for i in range(3):
        event = await writer.append_segment(mid, _segment(i))
        assert event.sequence == 2 + i
    assert writer.commits == 3


async def test_a_redo_in_the_same_batch_is_two_events_and_the_newest_segment(
    meeting_stub: Stub, meeting_service: RunningMeetingService
) -> None:
    pool = meeting_service.services.pool
    writer = _writer(meeting_service)
    _, mid = await _meeting(meeting_stub)
    partial = writer.submit(mid, [_segment(0, "helo", final=False)])
    final = writer.submit(mid, [_segment(0, "hello"), _segment(1, "world")])
    events = [*await partial, *await final]
    assert writer.commits == 1
    assert [(e.sequence, e.segment.text) for e in events] == [
        (2, "helo"),
        (3, "hello"),
        (4, "world"),
    ]
    assert [(s.index, s.text, s.sequence) for s in await _segment_rows(pool, mid)] == [
        (0, "hello", 3),
        (1, "world", 4),
    ]
    assert len(await _stored_events(pool, mid)) == 4


async def test_a_deleted_meeting_fails_only_its_own_calls(
    meeting_stub: Stub, meeting_service: RunningMeetingService
) -> None:
    pool = meeting_service.services.pool
    writer = _writer(meeting_service)
    owner, gone = await _meeting(meeting_stub)
    await meeting_stub.DeleteMeeting(
        meeting_service_pb2.DeleteMeetingRequest(meeting_id=str(gone)), metadata=auth(owner)
    )
    _, alive = await _meeting(meeting_stub)
    lost = writer.submit(gone, [_segment(0)])
    kept = writer.submit(alive, [_segment(0)])
    with pytest.raises(MeshError) as caught:
        await lost
    assert caught.value.reason == meeting_pb2.ERROR_REASON_MEETING_NOT_FOUND
    assert [e.sequence for e in await kept] == [2]
    assert writer.commits == 1
    assert [s for s, _, _ in await _stored_events(pool, alive)] == [1, 2]


async def test_a_refused_fence_rolls_back_only_its_calls(
    meeting_stub: Stub, meeting_service: RunningMeetingService
) -> None:
    pool = meeting_service.services.pool
    writer = _writer(meeting_service)
    _, mid = await _meeting(meeting_stub)
    _, other = await _meeting(meeting_stub)
    # No such job: the lease check refuses, as it does for a job another worker took.
    stale = Lease(uuid.uuid4(), "worker-that-lost-it")
    before = writer.submit(mid, [_segment(0)])
    refused = [writer.submit(mid, [_segment(i)], fence=stale) for i in (1, 2)]
    after = writer.submit(mid, [_segment(3)])
    elsewhere = writer.submit(other, [_segment(0)])
    for future in refused:
        with pytest.raises(JobLost):
            await future
    # The others' sequences have no hole where the refused segments would have gone.
    assert [e.sequence for e in [*await before, *await after]] == [2, 3]
    assert [e.sequence for e in await elsewhere] == [2]
    stored = await _stored_events(pool, mid)
    assert [s for s, _, _ in stored] == [1, 2, 3]
    assert [s.index for s in await _segment_rows(pool, mid)] == [0, 3]


async def test_equal_fences_are_checked_once_per_commit(
    meeting_stub: Stub, meeting_service: RunningMeetingService
) -> None:
    writer = _writer(meeting_service)
    _, mid = await _meeting(meeting_stub)
    gate = _gate()
    gate.opened.set()
    futures = [writer.submit(mid, [_segment(i)], fence=gate) for i in range(5)]
    await asyncio.gather(*futures)
    assert gate.checks == 1
    assert writer.commits == 1


async def test_a_call_withdrawn_before_its_commit_is_not_stored(
    meeting_stub: Stub, meeting_service: RunningMeetingService
) -> None:
    pool = meeting_service.services.pool
    writer = _writer(meeting_service)
    _, mid = await _meeting(meeting_stub)
    gate = _gate()
    first = writer.submit(mid, [_segment(0)], fence=gate)
    await gate.entered.wait()
    withdrawn = writer.submit(mid, [_segment(1)])
    kept = writer.submit(mid, [_segment(2)])
    withdrawn.cancel()  # what a caller cancelled in `await append_segment(...)` does
    gate.opened.set()
    assert [e.sequence for e in [*await first, *await kept]] == [2, 3]
    assert withdrawn.cancelled()
    assert [s.index for s in await _segment_rows(pool, mid)] == [0, 2]


async def test_invalid_index_is_refused_before_queueing(
    meeting_stub: Stub, meeting_service: RunningMeetingService
) -> None:
    writer = _writer(meeting_service)
    _, mid = await _meeting(meeting_stub)
    with pytest.raises(MeshError) as caught:
        writer.submit(mid, [_segment(0), meeting_pb2.Segment(index=-1)])
    assert caught.value.reason == meeting_pb2.ERROR_REASON_INVALID_FIELD
    assert await writer.submit(mid, []) == []
    assert writer.commits == 0


async def test_a_stream_sees_every_batched_event_once_in_order(
    meeting_stub: Stub, meeting_service: RunningMeetingService
) -> None:
    writer = _writer(meeting_service)
    owner, mid = await _meeting(meeting_stub)
    call: StreamCall = meeting_stub.StreamTranscript(
        meeting_service_pb2.StreamTranscriptRequest(meeting_id=str(mid)), metadata=auth(owner)
    )
    first = await asyncio.wait_for(call.read(), 30)
    assert isinstance(first, meeting_service_pb2.StreamTranscriptResponse)
    assert first.event.sequence == 1
    total = 250
    for start in range(0, total, 50):
        # Five rounds of fifty calls each: a few commits, each announced once.
        futures = [writer.submit(mid, [_segment(i)]) for i in range(start, start + 50)]
        await asyncio.gather(*futures)
    received: list[meeting_pb2.TranscriptEvent] = []
    async with asyncio.timeout(60):
        while len(received) < total:
            response = await call.read()
            assert isinstance(response, meeting_service_pb2.StreamTranscriptResponse)
            received.append(response.event)
    call.cancel()
    assert [e.sequence for e in received] == list(range(2, 2 + total))
    assert [e.segment.index for e in received] == list(range(total))
    assert writer.commits == 5
