"""SSE fan-out: one StreamTranscript call and one JSON encoding per event, whatever the followers.

End to end, a user's SSE connections on a meeting share one call to meeting_service (a
resume point older than the shared call's gets a call of its own); in isolation,
`SharedStream` gives each follower exactly the events after its own position, moves a
follower that falls behind onto a call of its own at the right point, and `RenderCache`
renders an event once.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import grpc
import pytest

from gateway import events as sse
from gen.meeting.v1 import meeting_pb2, meeting_service_pb2
from meeting_mesh.client import parse_sse
from meeting_service.server import RunningMeetingService
from tests.gateway.test_events import _upload
from tests.support.gateway import RunningGateway, play_pipeline, take_events

WITHIN = 30.0


async def _until(check: Callable[[], bool]) -> None:
    # Polls state of the service under test, which offers nothing to wait on.
    async with asyncio.timeout(WITHIN):
        while not check():  # noqa: ASYNC110
            await asyncio.sleep(0.01)


async def test_a_users_connections_share_one_call(
    gateway: RunningGateway,
    as_user: dict[str, str],
    meeting_id: str,
    meeting_service: RunningMeetingService,
) -> None:
    hub = meeting_service.services.hub
    mid = uuid.UUID(meeting_id)
    url = f"{gateway.url}/v1/meetings/{meeting_id}/events"
    async with contextlib.AsyncExitStack() as stack:
        http = await stack.enter_async_context(aiohttp.ClientSession())
        responses = [
            await stack.enter_async_context(http.get(url, headers=as_user)) for _ in range(3)
        ]
        streams = [parse_sse(r.content) for r in responses]
        firsts = [await take_events(s, 1) for s in streams]
        assert [[e.id for e in f] for f in firsts] == [["1"]] * 3
        assert hub.subscriber_count(mid) == 1  # one StreamTranscript for three connections
        await play_pipeline(meeting_service, meeting_id, ["One.", "Two."])
        lives = [await take_events(s, 5) for s in streams]
    for live in lives:
        assert [int(e.id) for e in live] == list(range(2, 7))
        assert [e.event for e in live] == ["status", "segment", "segment", "summary", "status"]
    assert lives[0] == lives[1] == lives[2]
    await _until(lambda: hub.subscriber_count(mid) == 0)  # the last to leave ends the call


async def test_an_older_resume_point_gets_a_call_of_its_own(
    http: aiohttp.ClientSession,
    as_user: dict[str, str],
    meeting_id: str,
    meeting_service: RunningMeetingService,
) -> None:
    hub = meeting_service.services.hub
    mid = uuid.UUID(meeting_id)
    url = f"/v1/meetings/{meeting_id}/events"
    await _upload(http, meeting_id, as_user)  # events 1-3
    async with http.get(url, headers={**as_user, "Last-Event-ID": "3"}) as late:
        await _until(lambda: hub.subscriber_count(mid) == 1)  # the shared call, after 3
        async with http.get(url, headers=as_user) as early:
            # It needs events 1-3, which the shared call never had: a call of its own.
            await _until(lambda: hub.subscriber_count(mid) == 2)
            await play_pipeline(meeting_service, meeting_id, ["A."])
            from_late = await take_events(parse_sse(late.content), 4)
            from_early = await take_events(parse_sse(early.content), 7)
    assert [int(e.id) for e in from_late] == [4, 5, 6, 7]
    assert [int(e.id) for e in from_early] == list(range(1, 8))


# --- SharedStream and RenderCache on their own ------------------------------------------------


class _FakeCall:
    """A StreamTranscript call fed by the test."""

    def __init__(self) -> None:
        self.items: asyncio.Queue[Any] = asyncio.Queue()
        self.cancelled = False

    async def read(self) -> Any:
        item = await self.items.get()
        if isinstance(item, BaseException):
            raise item
        return item

    def cancel(self) -> bool:
        self.cancelled = True
        return True

    def push(self, sequence: int, text: str = "") -> None:
        event = meeting_pb2.TranscriptEvent(
            sequence=sequence,
            meeting_id="m",
            segment=meeting_pb2.Segment(index=sequence, text=text or f"s{sequence}"),
        )
        self.items.put_nowait(meeting_service_pb2.StreamTranscriptResponse(event=event))

    def end(self) -> None:
        self.items.put_nowait(grpc.aio.EOF)


class _FakeResponse:
    """Collects what a follower writes; `gate` holds its writes while cleared (a slow client)."""

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.waiting = asyncio.Event()

    def write_nowait(self, data: bytes) -> bool:
        if not self.gate.is_set():
            return False  # a backed-up connection: the follower writes it itself
        self.written.append(data)
        return True

    async def write(self, data: bytes) -> None:
        if not self.gate.is_set():
            self.waiting.set()
            await self.gate.wait()
        self.written.append(data)

    def sequences(self) -> list[int]:
        text = b"".join(self.written).decode()
        return [int(line[4:]) for line in text.splitlines() if line.startswith("id: ")]


def _shared(after: int = 0) -> tuple[sse.SharedStreams, sse.SharedStream, _FakeCall]:
    registry = sse.SharedStreams()
    call = _FakeCall()
    stream = sse.SharedStream(registry, ("m", "u"), after, call)  # type: ignore[arg-type]
    stream.followers = 1
    return registry, stream, call


def _follow(stream: sse.SharedStream, after: int, response: _FakeResponse) -> Awaitable[int | None]:
    never = asyncio.get_running_loop().create_future()
    return asyncio.ensure_future(stream.follow(after, response, 30.0, never))


async def test_followers_get_exactly_the_events_after_their_own_position() -> None:
    _, stream, call = _shared()
    for sequence in (1, 2, 3):
        call.push(sequence)
    await asyncio.sleep(0.01)
    from_start, ahead = _FakeResponse(), _FakeResponse()
    following = [_follow(stream, 0, from_start), _follow(stream, 5, ahead)]
    for sequence in range(4, 9):
        call.push(sequence)
    call.end()
    assert await asyncio.gather(*following) == [None, None]
    assert from_start.sequences() == list(range(1, 9))
    assert ahead.sequences() == [6, 7, 8]  # joined ahead of the call: skips what it has


async def test_a_follower_that_falls_behind_is_told_where_it_stopped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sse, "SHARED_EVENTS", 2)
    _, stream, call = _shared()
    fast, slow = _FakeResponse(), _FakeResponse()
    slow.gate.clear()
    following = [_follow(stream, 0, fast), _follow(stream, 0, slow)]
    call.push(1)
    await slow.waiting.wait()  # the slow one is stuck writing event 1
    for sequence in range(2, 12):
        call.push(sequence)

        def caught_up(sequence: int = sequence) -> bool:
            return fast.sequences()[-1:] == [sequence]

        await _until(caught_up)
    slow.gate.set()
    call.end()
    stopped_at, done = await asyncio.gather(following[1], following[0])
    assert done is None and fast.sequences() == list(range(1, 12))
    # It wrote event 1 and no more: it resumes (on a call of its own) after 1.
    assert slow.sequences() == [1]
    assert stopped_at == 1
    assert not stream.holds_after(1)


async def test_a_follower_backed_up_for_a_while_catches_up_and_misses_nothing() -> None:
    _, stream, call = _shared()
    fast, hiccup = _FakeResponse(), _FakeResponse()
    following = [_follow(stream, 0, fast), _follow(stream, 0, hiccup)]
    call.push(1)
    await _until(lambda: hiccup.sequences() == [1])
    hiccup.gate.clear()
    call.push(2)
    await hiccup.waiting.wait()  # writing event 2 itself, at its client's pace
    for sequence in (3, 4):
        call.push(sequence)
    await _until(lambda: fast.sequences()[-1:] == [4])
    hiccup.gate.set()
    await _until(lambda: hiccup.sequences()[-1:] == [4])
    call.push(5)  # live again: the stream writes it
    call.end()
    assert await asyncio.gather(*following) == [None, None]
    assert hiccup.sequences() == fast.sequences() == [1, 2, 3, 4, 5]


async def test_a_failed_call_ends_every_follower_with_the_error_event() -> None:
    registry, stream, call = _shared()
    registry._streams[stream.key] = stream
    responses = [_FakeResponse(), _FakeResponse()]
    following = [_follow(stream, 0, r) for r in responses]
    call.push(1)
    call.items.put_nowait(_rpc_error(grpc.StatusCode.UNAVAILABLE))
    assert await asyncio.gather(*following) == [None, None]
    for response in responses:
        text = b"".join(response.written).decode()
        assert text.startswith("id: 1\n")
        assert text.split("\n\n")[1].startswith("event: stream_error\ndata: {")
        assert '"status":"UNAVAILABLE"' in text
    assert stream.ended
    # An ended stream is not joined again: the next follower gets a new call.
    assert registry._streams == {}


async def test_the_last_follower_to_leave_cancels_the_call() -> None:
    _, stream, call = _shared()
    stream.followers = 2
    stream.leave()
    assert not call.cancelled
    stream.leave()
    assert call.cancelled


def _rpc_error(code: grpc.StatusCode) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(
        code, grpc.aio.Metadata(), grpc.aio.Metadata(), details="the service is stopping"
    )


def test_render_cache_renders_each_event_once_and_stays_bounded() -> None:
    cache = sse.RenderCache(max_entries=3, max_bytes=1 << 20, max_event_bytes=1000)
    first = meeting_pb2.TranscriptEvent(
        sequence=1, meeting_id="m", segment=meeting_pb2.Segment(text="hello")
    )
    same = meeting_pb2.TranscriptEvent()
    same.CopyFrom(first)
    rendered = [cache.render(first) for _ in range(5)] + [cache.render(same)]
    assert len(set(rendered)) == 1
    assert (cache.misses, cache.hits) == (1, 5)
    assert rendered[0] == sse._render(first)
    assert rendered[0].startswith(b"id: 1\nevent: segment\ndata: {")
    other = meeting_pb2.TranscriptEvent(sequence=1, meeting_id="n", segment=first.segment)
    assert cache.render(other) != rendered[0]  # another meeting's event is its own entry
    for sequence in range(2, 6):
        cache.render(meeting_pb2.TranscriptEvent(sequence=sequence, meeting_id="m"))
    assert len(cache._entries) == 3
    big = meeting_pb2.TranscriptEvent(
        sequence=9, meeting_id="m", segment=meeting_pb2.Segment(text="x" * 2000)
    )
    cache.render(big)
    cache.render(big)
    assert cache.misses == 8  # too large to keep: rendered each time
    assert len(cache._entries) == 3
