"""StreamTranscript, GetTranscript and GetSummary over the event log and LISTEN/NOTIFY."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import grpc
import pytest
import pytest_asyncio

from gen.meeting.v1 import meeting_pb2, meeting_service_pb2, meeting_service_pb2_grpc
from meeting_service.db.database import Database
from meeting_service.server import RunningMeetingService, run_meeting_service
from tests.meeting_service.helpers import StreamCall, Stub, create, user, wait_for
from tests.support.meeting import auth, error_reason, meeting_settings
from tests.support.transcripts import change_status, store_summary


def _segment(index: int, text: str, speaker: str = "") -> meeting_pb2.Segment:
    segment = meeting_pb2.Segment(index=index, text=text, speaker=speaker, final=True)
    segment.start_offset.FromMilliseconds(index * 1000)
    segment.end_offset.FromMilliseconds(index * 1000 + 900)
    return segment


def _stream(stub: Stub, owner: str, meeting_id: str, after: int = 0) -> StreamCall:
    return stub.StreamTranscript(
        meeting_service_pb2.StreamTranscriptRequest(meeting_id=meeting_id, after_sequence=after),
        metadata=auth(owner),
    )


async def _read_until(call: StreamCall, last: int) -> list[meeting_pb2.TranscriptEvent]:
    events = []
    async with asyncio.timeout(60):
        async for response in call:
            events.append(response.event)
            if response.event.sequence >= last:
                break
    return events


async def test_replay_then_tail_has_no_gap_and_no_duplicate(
    meeting_stub: Stub, meeting_service: RunningMeetingService
) -> None:
    owner = user()
    meeting = await create(meeting_stub, owner)
    mid = uuid.UUID(meeting.id)
    writer = meeting_service.services.processing.writer
    total_segments = 300
    written = asyncio.Event()
    progress: list[int] = []

    async def write() -> None:
        for i in range(total_segments):
            event = await writer.append_segment(mid, _segment(i, f"segment {i}"))
            progress.append(event.sequence)
        written.set()

    writing = asyncio.create_task(write())
    # Streams join at different points while events keep coming.
    await wait_for(lambda: asyncio.sleep(0, len(progress)), lambda n: n >= 50)
    from_start = _stream(meeting_stub, owner, meeting.id, after=0)
    await wait_for(lambda: asyncio.sleep(0, len(progress)), lambda n: n >= 150)
    from_middle = _stream(meeting_stub, owner, meeting.id, after=120)
    await writing
    final = 1 + total_segments  # the creation's status event is sequence 1
    assert progress[-1] == final
    start_events = await _read_until(from_start, final)
    middle_events = await _read_until(from_middle, final)
    from_start.cancel()
    from_middle.cancel()
    assert [e.sequence for e in start_events] == list(range(1, final + 1))
    assert [e.sequence for e in middle_events] == list(range(121, final + 1))
    assert start_events[0].status_change.status == meeting_pb2.MEETING_STATUS_AWAITING_AUDIO
    assert start_events[1].segment.text == "segment 0"
    assert start_events[1].segment.segment_id == f"{meeting.id}:0"
    assert start_events[-1].segment.sequence == final


async def test_segment_redo_replaces_the_segment_and_is_a_new_event(
    meeting_stub: Stub, meeting_service: RunningMeetingService
) -> None:
    owner = user()
    meeting = await create(meeting_stub, owner)
    mid = uuid.UUID(meeting.id)
    writer = meeting_service.services.processing.writer
    await change_status(meeting_service.services, mid, meeting_pb2.MEETING_STATUS_TRANSCRIBING)
    events = await writer.submit(
        mid, [_segment(0, "helo", "SPEAKER_2"), _segment(1, "world", "SPEAKER_1")]
    )
    redo = await writer.append_segment(mid, _segment(0, "hello", "SPEAKER_2"))
    assert [e.sequence for e in events] + [redo.sequence] == [3, 4, 5]

    transcript = await meeting_stub.GetTranscript(
        meeting_service_pb2.GetTranscriptRequest(meeting_id=meeting.id), metadata=auth(owner)
    )
    assert [(s.index, s.text, s.sequence) for s in transcript.segments] == [
        (0, "hello", 5),
        (1, "world", 4),
    ]
    assert list(transcript.speakers) == ["SPEAKER_2", "SPEAKER_1"]
    assert transcript.last_sequence == 5
    assert transcript.status == meeting_pb2.MEETING_STATUS_TRANSCRIBING

    replay = await _read_until(_stream(meeting_stub, owner, meeting.id), 5)
    assert [e.WhichOneof("kind") for e in replay] == [
        "status_change",
        "status_change",
        "segment",
        "segment",
        "segment",
    ]


async def test_summary_and_failure_are_events_and_readable(
    meeting_stub: Stub, meeting_service: RunningMeetingService
) -> None:
    owner = user()
    meeting = await create(meeting_stub, owner)
    mid = uuid.UUID(meeting.id)
    call = _stream(meeting_stub, owner, meeting.id)
    summary = meeting_pb2.Summary(
        text="We agreed to ship.",
        action_items=[meeting_pb2.ActionItem(text="ship it", owner="Ann", due="Friday")],
        keywords=["ship"],
        backend="mock",
    )
    await store_summary(meeting_service.services, mid, summary)
    await change_status(
        meeting_service.services,
        mid,
        meeting_pb2.MEETING_STATUS_FAILED,
        "the GPU fleet is unreachable",
    )
    events = await _read_until(call, 3)
    call.cancel()
    assert events[1].summary == summary
    assert events[2].status_change == meeting_pb2.StatusChange(
        status=meeting_pb2.MEETING_STATUS_FAILED, reason="the GPU fleet is unreachable"
    )
    got = await meeting_stub.GetSummary(
        meeting_service_pb2.GetSummaryRequest(meeting_id=meeting.id), metadata=auth(owner)
    )
    assert got.summary == summary
    after = await meeting_stub.GetMeeting(
        meeting_service_pb2.GetMeetingRequest(meeting_id=meeting.id), metadata=auth(owner)
    )
    assert (after.meeting.status, after.meeting.failure_reason) == (
        meeting_pb2.MEETING_STATUS_FAILED,
        "the GPU fleet is unreachable",
    )


async def test_delete_ends_the_stream_and_later_reads_are_not_found(
    meeting_stub: Stub, meeting_service: RunningMeetingService
) -> None:
    owner = user()
    meeting = await create(meeting_stub, owner)
    call = _stream(meeting_stub, owner, meeting.id)
    first = await _read_until(call, 1)
    assert [e.sequence for e in first] == [1]
    await meeting_service.services.processing.writer.append_segment(
        uuid.UUID(meeting.id), _segment(0, "bye")
    )
    # Read before deleting: the deletion removes the log, and a follower that has not
    # read an event yet when it goes sees the gap before `deleted` instead.
    second = await _read_until(call, 2)
    await meeting_stub.DeleteMeeting(
        meeting_service_pb2.DeleteMeetingRequest(meeting_id=meeting.id), metadata=auth(owner)
    )
    rest = [r.event async for r in call]  # the stream ends by itself
    assert [(e.sequence, e.WhichOneof("kind")) for e in second + rest] == [
        (2, "segment"),
        (3, "deleted"),
    ]
    assert await call.code() == grpc.StatusCode.OK
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _read_until(_stream(meeting_stub, owner, meeting.id), 1)
    assert error_reason(caught.value)[:2] == (grpc.StatusCode.NOT_FOUND, "MEETING_NOT_FOUND")


async def test_writer_refuses_deleted_meetings(
    meeting_stub: Stub, meeting_service: RunningMeetingService
) -> None:
    from mesh_common.errors import MeshError

    owner = user()
    meeting = await create(meeting_stub, owner)
    await meeting_stub.DeleteMeeting(
        meeting_service_pb2.DeleteMeetingRequest(meeting_id=meeting.id), metadata=auth(owner)
    )
    services = meeting_service.services
    for write in (
        services.processing.writer.append_segment(uuid.UUID(meeting.id), _segment(0, "x")),
        change_status(services, uuid.UUID(meeting.id), meeting_pb2.MEETING_STATUS_TRANSCRIBING),
        store_summary(services, uuid.UUID(meeting.id), meeting_pb2.Summary(text="x")),
    ):
        with pytest.raises(MeshError) as caught:
            await write
        assert caught.value.code == grpc.StatusCode.NOT_FOUND


async def test_negative_after_sequence_is_invalid(meeting_stub: Stub) -> None:
    owner = user()
    meeting = await create(meeting_stub, owner)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _read_until(_stream(meeting_stub, owner, meeting.id, after=-1), 1)
    assert error_reason(caught.value)[1:] == ("INVALID_FIELD", {"field": "after_sequence"})


# --- a slow subscriber ----------------------------------------------------------------------

QUEUE = 4
# Two separate clients: without this, channels to one target share one connection.
_OWN_CONNECTION = [("grpc.use_local_subchannel_pool", 1)]


@pytest_asyncio.fixture(scope="module")
async def tight_service(
    database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[RunningMeetingService]:
    """A service whose subscribers may fall only a few events behind."""
    settings = meeting_settings(
        database_url, tmp_path_factory.mktemp("tight"), stream_queue_size=QUEUE
    )
    async with run_meeting_service(settings, database=Database(database_url)) as running:
        yield running


async def test_slow_subscriber_catches_up_from_the_table_while_others_keep_up(
    tight_service: RunningMeetingService,
) -> None:
    owner = user()
    # Large events fill the transport's buffers quickly, so the server really waits on
    # the subscriber that does not read, and its buffer of live events fills.
    big_text = "word " * 20_000
    limit = 2000
    async with (
        grpc.aio.insecure_channel(tight_service.address, options=_OWN_CONNECTION) as slow_channel,
        grpc.aio.insecure_channel(tight_service.address, options=_OWN_CONNECTION) as fast_channel,
    ):
        slow_stub = meeting_service_pb2_grpc.MeetingServiceStub(slow_channel)
        fast_stub = meeting_service_pb2_grpc.MeetingServiceStub(fast_channel)
        meeting = await create(fast_stub, owner)
        slow = _stream(slow_stub, owner, meeting.id)
        fast = _stream(fast_stub, owner, meeting.id)
        assert [e.sequence for e in await _read_until(slow, 1)] == [1]
        assert [e.sequence for e in await _read_until(fast, 1)] == [1]
        hub = tight_service.services.hub
        mid = uuid.UUID(meeting.id)
        assert hub.subscriber_count(mid) == 2
        writer = tight_service.services.processing.writer

        async def write_until_one_falls_behind() -> None:
            # However much the transport buffers, the slow subscriber falls behind
            # eventually; the fast one keeps reading throughout.
            for i in range(limit):
                await writer.append_segment(mid, _segment(i, big_text))
                if hub.lag_count(mid) > 0:
                    return
            raise AssertionError("the slow subscriber never fell behind")

        fast_events: list[meeting_pb2.TranscriptEvent] = []

        async def read_fast() -> None:
            async for response in fast:
                fast_events.append(response.event)
                if response.event.segment.text == "end":
                    return

        reading = asyncio.create_task(read_fast())
        await write_until_one_falls_behind()
        # A few more while it is behind: dropped from its buffer, kept in the table.
        for i in range(limit, limit + 3):
            await writer.append_segment(mid, _segment(i, big_text))
        final = (await writer.append_segment(mid, _segment(limit + 3, "end"))).sequence
        await asyncio.wait_for(reading, 60)
        assert [e.sequence for e in fast_events] == list(range(2, final + 1))
        fast.cancel()
        # Nobody was cut off: the slow one still follows the meeting, and gets everything.
        assert hub.subscriber_count(mid) == 2
        slow_events = await _read_until(slow, final)
        slow.cancel()
        assert [e.sequence for e in slow_events] == list(range(2, final + 1))
        assert slow_events[-1].segment.text == "end"


async def test_a_burst_larger_than_the_buffer_reaches_a_reading_subscriber(
    tight_service: RunningMeetingService,
) -> None:
    owner = user()
    async with grpc.aio.insecure_channel(tight_service.address) as channel:
        stub = meeting_service_pb2_grpc.MeetingServiceStub(channel)
        meeting = await create(stub, owner)
        call = _stream(stub, owner, meeting.id)
        assert [e.sequence for e in await _read_until(call, 1)] == [1]
        mid = uuid.UUID(meeting.id)
        writer = tight_service.services.processing.writer
        burst = 12 * QUEUE
        # Handed over at once: one group commit, announced at once, read by the hub in
        # one go; far more than the subscriber's buffer of QUEUE events.
        futures = [writer.submit(mid, [_segment(i, f"s{i}")]) for i in range(burst)]
        await asyncio.gather(*futures)
        events = await _read_until(call, 1 + burst)
        lags = tight_service.services.hub.lag_count(mid)
        call.cancel()
    assert [e.sequence for e in events] == list(range(2, 2 + burst))
    assert [e.segment.text for e in events] == [f"s{i}" for i in range(burst)]
    assert lags >= 1
