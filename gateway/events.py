"""Server-Sent Events: a meeting's StreamTranscript and the caller's StreamUserEvents.

Each event is written as `id: <sequence>`, `event: <kind>`, `data: <event JSON>`. A
reconnecting EventSource sends `Last-Event-ID`, which becomes `after_sequence`, so the
client continues exactly after the last event it saw (no gap, no duplicate). An error in the
middle of the stream is sent as a `stream_error` event (no `id:`, so the resume point
stays); the name is not EventSource's own `error`, which reports a broken connection.

A meeting's stream ends after its final status event (COMPLETED or FAILED) or its
`deleted` event. A request for an ended meeting with nothing after its resume point is
answered 204 No Content, which tells an EventSource to stop reconnecting (the SSE
specification's way to end a stream for good).
"""

from __future__ import annotations

import asyncio
import bisect
import json
import weakref
from collections import OrderedDict
from typing import Any

import grpc
from aiohttp import web

from contract_errors.meeting import invalid_field
from gateway import state
from gateway.auth import PRINCIPAL_KEY, grpc_metadata
from gateway.http_errors import error_view
from gateway.jsonpb import non_negative_int, to_json_bytes
from gateway.single_flight import SingleFlight
from gateway.sse_sink import ResponseSink, Sink
from gen.meeting.v1 import (
    meeting_pb2,
    meeting_service_pb2,
    meeting_service_pb2_grpc,
    user_events_pb2,
)
from mesh_common.logging import logger

# TranscriptEvent's `kind` oneof -> SSE event name.
EVENT_NAMES: dict[str, str] = {
    "segment": "segment",
    "status_change": "status",
    "summary": "summary",
    "deleted": "deleted",
}
# UserEvent's `kind` oneof -> SSE event name on the caller's feed.
USER_EVENT_NAMES: dict[str, str] = {"meeting": "meeting", "deleted": "deleted"}
ERROR_EVENT = "stream_error"
HEARTBEAT = b": heartbeat\n\n"
# The statuses after which StreamTranscript ends (the contract says so).
_ENDED = frozenset({meeting_pb2.MEETING_STATUS_COMPLETED, meeting_pb2.MEETING_STATUS_FAILED})
_SSE_HEADERS = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
    "Connection": "keep-alive",
}


def _after_sequence(request: web.Request) -> int:
    for source, value in (
        ("Last-Event-ID", request.headers.get("Last-Event-ID")),
        ("after", request.query.get("after")),
    ):
        if value is None or value == "":
            continue
        return non_negative_int(value, source)
    return 0


def _check_query(request: web.Request) -> None:
    for key in request.query:
        if key not in ("after", "access_token"):
            raise invalid_field(
                key, f"unknown query parameter {key!r} (allowed: after, access_token)"
            )


def format_event(event: meeting_pb2.TranscriptEvent | user_events_pb2.UserEvent) -> bytes:
    """Renders a transcript or feed event as one SSE message.

    Every subscriber of a meeting receives the same events, and JSON encoding is by far
    the gateway's largest cost per event, so renderings are kept in `RENDERED`, keyed
    by the event's serialized bytes: one encoding per event, whatever the subscribers.
    A feed event (`UserEvent`) has one reader, its caller's connection: it is rendered
    directly.

    Args:
        event: The event.

    Returns:
        The bytes to write, ending with the blank line that dispatches it.
    """
    if isinstance(event, user_events_pb2.UserEvent):
        return _render(event)
    return RENDERED.render(event)


def _render(event: meeting_pb2.TranscriptEvent | user_events_pb2.UserEvent) -> bytes:
    kind = event.WhichOneof("kind") or ""
    names = USER_EVENT_NAMES if isinstance(event, user_events_pb2.UserEvent) else EVENT_NAMES
    name = names.get(kind, "message")
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (
        event.sequence,
        name.encode(),
        to_json_bytes(event),
    )


class RenderCache:
    """The latest events' SSE renderings, keyed by each event's serialized bytes.

    The key is the whole event, so a hit is the rendering of an identical message: it
    cannot serve one meeting's (or one version's) event for another. Bounded in entries
    and in bytes; an event too large to be worth keeping is rendered every time.

    Args:
        max_entries: Most renderings kept (the oldest go first).
        max_bytes: Most bytes kept, keys and renderings together.
        max_event_bytes: Events larger than this (serialized) are not kept.
    """

    def __init__(
        self, max_entries: int = 512, max_bytes: int = 4 << 20, max_event_bytes: int = 64 << 10
    ) -> None:
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._max_event_bytes = max_event_bytes
        self._entries: OrderedDict[bytes, bytes] = OrderedDict()
        self._bytes = 0
        self.hits = 0
        self.misses = 0

    def render(self, event: meeting_pb2.TranscriptEvent) -> bytes:
        """Returns the SSE message of an event, rendering it only when not kept."""
        key = event.SerializeToString(deterministic=True)
        rendered = self._entries.get(key)
        if rendered is not None:
            self.hits += 1
            return rendered
        self.misses += 1
        rendered = _render(event)
        if len(key) <= self._max_event_bytes:
            self._entries[key] = rendered
            self._bytes += len(key) + len(rendered)
            while len(self._entries) > self._max_entries or self._bytes > self._max_bytes:
                old_key, old = self._entries.popitem(last=False)
                self._bytes -= len(old_key) + len(old)
        return rendered


RENDERED = RenderCache()


def _format_error(body: dict[str, Any]) -> bytes:
    return f"event: {ERROR_EVENT}\ndata: {json.dumps(body, separators=(',', ':'))}\n\n".encode()


async def stream_events(request: web.Request) -> web.StreamResponse:
    """Serves `GET /v1/meetings/{meeting_id}/events`.

    Ownership is checked with GetMeeting before the stream opens, so an unknown meeting is
    a plain 404, not an event stream that fails.

    Args:
        request: The HTTP request.

    Returns:
        The event stream, ended after the final status or `deleted` event, when the
        service ends the stream, the client leaves, or the gateway stops; 204 for an
        ended meeting with no event after the resume point.

    Raises:
        MeetingError: INVALID_FIELD for a bad resume point.
        grpc.aio.AioRpcError: The error of GetMeeting.
    """
    _check_query(request)
    after = _after_sequence(request)
    meeting_id = request.match_info["meeting_id"]
    settings = state.settings(request)
    stub = state.stub(request)
    metadata = grpc_metadata(request)

    async def get_meeting() -> meeting_service_pb2.GetMeetingResponse:
        found: meeting_service_pb2.GetMeetingResponse = await stub.GetMeeting(
            meeting_service_pb2.GetMeetingRequest(meeting_id=meeting_id),
            metadata=metadata,
            timeout=settings.unary_timeout_s,
        )
        return found

    # The same meeting asked with the same credentials gets the same answer: a burst of
    # subscribers shares one call.
    checks = _shared_streams(request.app).checks
    ended = (await checks.run((meeting_id, metadata), get_meeting)).meeting.status in _ENDED

    call: StreamCall | None = None
    first: Any = None
    if ended:
        # Its stream sends what is stored and ends: nothing more can come. Read its first
        # answer before the headers, so that "nothing after the resume point" is a 204.
        call = _open(stub, meeting_id, after, metadata)
        first = await call.read()
        if first is grpc.aio.EOF:
            return web.Response(status=204, headers={"Cache-Control": "no-cache"})

    response = web.StreamResponse(headers=_SSE_HEADERS)
    writer = await response.prepare(request)
    await response.write(f"retry: {settings.sse_retry_ms}\n\n".encode())
    heartbeat = settings.sse_heartbeat_s
    stopping = request.app[state.STOPPING].future()
    shared: SharedStream | None = None
    try:
        with state.metrics(request).sse_open.track_inprogress():
            principal = request.get(PRINCIPAL_KEY)
            if call is None and principal is not None:
                key = (meeting_id, principal.user)
                shared = _shared_streams(request.app).join(key, after, stub, metadata)
            if shared is not None:
                behind = await shared.follow(
                    after, ResponseSink(response, writer), heartbeat, stopping
                )
                if behind is None:
                    return response
                after = behind  # it fell behind what the shared stream keeps
                shared.leave()
                shared = None
            if call is None:
                call = _open(stub, meeting_id, after, metadata)
            else:
                await response.write(format_event(first.event))
            await _pump(call, response, heartbeat, stopping)
    except ConnectionError:
        pass  # the client left; nothing to tell it
    finally:
        request.app[state.STOPPING].release(stopping)
        if shared is not None:
            shared.leave()
        if call is not None:
            call.cancel()
    return response


async def stream_user_events(request: web.Request) -> web.StreamResponse:
    """Serves `GET /v1/events`: the caller's feed (StreamUserEvents) as SSE.

    One connection follows every meeting of the caller: `meeting` events carry a meeting
    after each change (created, status, title...), `deleted` events a deleted meeting's
    id; `id:` is the caller's feed sequence, so `Last-Event-ID` resumes exactly.

    Args:
        request: The HTTP request.

    Returns:
        The event stream, ended when the client leaves or the gateway stops.

    Raises:
        MeetingError: INVALID_FIELD for a bad resume point.
        grpc.aio.AioRpcError: meeting_service refused the call (an unknown API key...).
    """
    _check_query(request)
    after = _after_sequence(request)
    settings = state.settings(request)
    call: UserStreamCall = state.stub(request).StreamUserEvents(
        user_events_pb2.StreamUserEventsRequest(after_sequence=after),
        metadata=grpc_metadata(request),
    )
    # meeting_service sends its headers once the caller is accepted (an API key is checked
    # there, not here): a refusal is still answered with its HTTP status, not in the stream.
    await asyncio.wait_for(call.initial_metadata(), settings.unary_timeout_s)
    if call.done():
        await call.read()  # raises the call's error
    response = web.StreamResponse(headers=_SSE_HEADERS)
    stopping = request.app[state.STOPPING].future()
    try:
        await response.prepare(request)
        await response.write(f"retry: {settings.sse_retry_ms}\n\n".encode())
        with state.metrics(request).sse_open.track_inprogress():
            await _pump(call, response, settings.sse_heartbeat_s, stopping)
    except ConnectionError:
        pass  # the client left; nothing to tell it
    finally:
        request.app[state.STOPPING].release(stopping)
        call.cancel()
    return response


StreamCall = grpc.aio.UnaryStreamCall[
    meeting_service_pb2.StreamTranscriptRequest, meeting_service_pb2.StreamTranscriptResponse
]
StreamKey = tuple[str, str]
UserStreamCall = grpc.aio.UnaryStreamCall[
    user_events_pb2.StreamUserEventsRequest, user_events_pb2.StreamUserEventsResponse
]

# What a shared stream keeps for its followers: those a little behind, and those that join
# with a resume point it still holds. A follower further behind gets a call of its own.
SHARED_EVENTS = 1024
SHARED_BYTES = 4 << 20


def _open(
    stub: meeting_service_pb2_grpc.MeetingServiceStub,
    meeting_id: str,
    after: int,
    metadata: tuple[tuple[str, str], ...],
) -> StreamCall:
    return stub.StreamTranscript(
        meeting_service_pb2.StreamTranscriptRequest(meeting_id=meeting_id, after_sequence=after),
        metadata=metadata,
    )


class SharedStreams:
    """The app's shared StreamTranscript calls, one per (meeting, user) being followed.

    Every SSE connection of a user on a meeting (only its owner may follow it) reads
    the same events, so one call to meeting_service serves them all: one gRPC message
    and one JSON encoding per event in the gateway, not one per connection. The
    ownership checks that come before a stream opens are shared the same way while in
    flight (`checks`).
    """

    def __init__(self) -> None:
        self._streams: dict[StreamKey, SharedStream] = {}
        # The ownership checks (GetMeeting) in flight, shared by identical requests.
        self.checks: SingleFlight[meeting_service_pb2.GetMeetingResponse] = SingleFlight()

    def join(
        self,
        key: StreamKey,
        after: int,
        stub: meeting_service_pb2_grpc.MeetingServiceStub,
        metadata: tuple[tuple[str, str], ...],
    ) -> SharedStream | None:
        """Joins (or starts) the shared stream of `key` for a follower resuming at `after`.

        Returns:
            The stream, or None when the shared one no longer holds every event after
            `after` (the caller opens a call of its own).
        """
        stream = self._streams.get(key)
        if stream is None or stream.ended:
            stream = SharedStream(self, key, after, _open(stub, key[0], after, metadata))
            self._streams[key] = stream
        elif not stream.holds_after(after):
            return None
        stream.followers += 1
        return stream

    def _forget(self, stream: SharedStream) -> None:
        if self._streams.get(stream.key) is stream:
            del self._streams[stream.key]


_REGISTRIES: weakref.WeakKeyDictionary[web.Application, SharedStreams] = weakref.WeakKeyDictionary()


def _shared_streams(app: web.Application) -> SharedStreams:
    registry = _REGISTRIES.get(app)
    if registry is None:
        registry = _REGISTRIES[app] = SharedStreams()
    return registry


class _Follower:
    """A follower that has every kept event: the stream writes it each new one itself.

    `done` resolves to None when the follower is finished (the stream ended, the gateway
    stops), or to the stream position of the first event it must write on its own (its
    connection was backed up); it fails with ConnectionError when its client left.
    """

    __slots__ = ("done", "position", "sink")

    def __init__(self, sink: Sink, position: int, done: asyncio.Future[int | None]) -> None:
        self.sink = sink
        self.position = position  # the last sequence it has
        self.done = done

    def finish(self, result: int | None) -> None:
        if not self.done.done():
            self.done.set_result(result)

    def stop(self, _: asyncio.Future[Any]) -> None:
        self.finish(None)


class SharedStream:
    """One StreamTranscript call, its events rendered once, read by many SSE connections.

    The rendered events are kept in order (the last `SHARED_EVENTS`, at most
    `SHARED_BYTES`). A follower first writes those after its own position; once it has
    them all it is live: the stream's reader writes each new event to every live
    follower's connection from one loop, and one timer per stream sends the heartbeats,
    so an event costs a live follower one write and nothing else. A follower whose
    connection is backed up leaves the live set and writes the kept events itself at its
    client's pace, so a slow reader only holds up itself; one that falls behind what is
    kept is told so and continues on a call of its own from where it was.

    Args:
        registry: Where the stream is registered (it leaves when it ends).
        key: (meeting id, user).
        after: The call's resume point.
        call: The call.
    """

    def __init__(
        self, registry: SharedStreams, key: StreamKey, after: int, call: StreamCall
    ) -> None:
        self.key = key
        self.followers = 0
        self._registry = registry
        self._call = call
        self._sequences: list[int] = []
        self._rendered: list[bytes] = []
        self._offset = 0  # the stream position of _rendered[0]
        self._bytes = 0
        self._dropped = after  # events up to this sequence are not (or no longer) kept
        self._end: bytes | None = None  # once ended: b"" (clean) or an error event
        self._live: set[_Follower] = set()
        self._heartbeat_s = 0.0
        self._beat: asyncio.TimerHandle | None = None
        self._task = asyncio.create_task(self._read(), name=f"sse-shared-{key[0]}")

    @property
    def ended(self) -> bool:
        """Whether the call is over (its last events may still be being written)."""
        return self._end is not None

    def holds_after(self, sequence: int) -> bool:
        """Whether a follower at `sequence` would get every later event from this stream."""
        return sequence >= self._dropped

    def leave(self) -> None:
        """A follower is done; the last one to leave ends the call."""
        self.followers -= 1
        if self.followers <= 0:
            self._registry._forget(self)
            self._task.cancel()
            self._call.cancel()

    async def follow(
        self,
        after: int,
        sink: Sink,
        heartbeat_s: float,
        stopping: asyncio.Future[Any],
    ) -> int | None:
        """Writes the events after `after` to one SSE response until the stream ends.

        Args:
            after: The follower's resume point.
            sink: Its response.
            heartbeat_s: Idle time before a heartbeat comment.
            stopping: Done when the gateway stops.

        Returns:
            None when the stream ended (or the gateway stops); the last sequence written
            when the follower fell behind what is kept.

        Raises:
            ConnectionError: The client left.
        """
        position = after
        index = self._first_after(position)
        while True:
            if index < self._offset:
                return position  # what it still needs was dropped: it is too slow
            start = index - self._offset
            if start < len(self._rendered):
                pending = self._rendered[start:]
                newest = self._sequences[-1]
                index += len(pending)
                if position >= self._sequences[start]:
                    # Joined ahead of what the call had reached: skip what it already has.
                    keep = [
                        r
                        for q, r in zip(self._sequences[start:], pending, strict=True)
                        if q > position
                    ]
                    pending = keep
                position = max(position, newest)
                if pending:
                    await sink.write(b"".join(pending))
                continue
            if self._end is not None:
                if self._end:
                    await sink.write(self._end)
                return None
            if stopping.done():
                return None
            follower = _Follower(sink, position, asyncio.get_running_loop().create_future())
            self._go_live(follower, heartbeat_s)
            stopping.add_done_callback(follower.stop)
            try:
                resume = await follower.done
            finally:
                stopping.remove_done_callback(follower.stop)
                self._live.discard(follower)
            if resume is None:
                return None
            position, index = follower.position, resume

    def _first_after(self, sequence: int) -> int:
        # The stream position of the first kept event after `sequence`.
        return self._offset + bisect.bisect_right(self._sequences, sequence)

    def _go_live(self, follower: _Follower, heartbeat_s: float) -> None:
        self._live.add(follower)
        if self._beat is None:
            self._heartbeat_s = heartbeat_s
            self._beat = asyncio.get_running_loop().call_later(heartbeat_s, self._heartbeat)

    def _heartbeat(self) -> None:
        # Nothing was written for a heartbeat interval (an event re-arms the timer).
        for follower in tuple(self._live):
            try:
                follower.sink.write_nowait(HEARTBEAT)  # a backed-up connection is not idle
            except ConnectionError as error:
                self._live.discard(follower)
                if not follower.done.done():
                    follower.done.set_exception(error)
        self._rearm()

    def _rearm(self) -> None:
        if self._beat is not None:
            self._beat.cancel()
            self._beat = None
        if self._live and self._end is None:
            loop = asyncio.get_running_loop()
            self._beat = loop.call_later(self._heartbeat_s, self._heartbeat)

    def _deliver(self, sequence: int, rendered: bytes) -> None:
        # The event at stream position `_offset + len(_rendered) - 1` to every live follower.
        left: list[_Follower] = []
        for follower in self._live:
            if follower.position >= sequence:
                continue  # it joined ahead of the call and has this one
            try:
                if follower.sink.write_nowait(rendered):
                    follower.position = sequence
                    continue
                follower.finish(self._offset + len(self._rendered) - 1)
            except ConnectionError as error:
                if not follower.done.done():
                    follower.done.set_exception(error)
            left.append(follower)
        self._live.difference_update(left)
        self._rearm()

    def _keep(self, sequence: int, rendered: bytes) -> None:
        self._sequences.append(sequence)
        self._rendered.append(rendered)
        self._bytes += len(rendered)
        kept = len(self._rendered)
        if kept <= 2 * SHARED_EVENTS and self._bytes <= SHARED_BYTES:
            return
        # Trim in one go, down to half the limits, so trimming is rare (amortised O(1)).
        drop = 0
        while drop < kept - 1 and (kept - drop > SHARED_EVENTS or self._bytes > SHARED_BYTES // 2):
            self._bytes -= len(self._rendered[drop])
            drop += 1
        if drop:
            self._dropped = self._sequences[drop - 1]
            del self._sequences[:drop]
            del self._rendered[:drop]
            self._offset += drop

    def _finish_all(self) -> None:
        # The call is over: live followers get its end (or write it themselves if backed up).
        end = self._end or b""
        for follower in self._live:
            try:
                if not end or follower.sink.write_nowait(end):
                    follower.finish(None)
                else:
                    follower.finish(self._offset + len(self._rendered))
            except ConnectionError as error:
                if not follower.done.done():
                    follower.done.set_exception(error)
        self._live.clear()
        self._rearm()

    async def _read(self) -> None:
        end = b""
        try:
            while True:
                item = await self._call.read()
                if not isinstance(item, meeting_service_pb2.StreamTranscriptResponse):
                    break  # EOF: the service ended the stream (after `deleted`)
                event = item.event
                rendered = format_event(event)
                self._keep(event.sequence, rendered)
                self._deliver(event.sequence, rendered)
        except grpc.aio.AioRpcError as error:
            if error.code() != grpc.StatusCode.CANCELLED:
                logger.bind(code=error.code().name).info("event stream failed")
                end = _format_error(error_view(error).body())
        finally:
            self._end = end
            self._registry._forget(self)
            self._finish_all()


async def _pump(
    call: StreamCall | UserStreamCall,
    response: web.StreamResponse,
    heartbeat_s: float,
    stopping: asyncio.Future[Any],
) -> None:
    read: asyncio.Future[Any] | None = None
    try:
        while True:
            if read is None:
                read = asyncio.ensure_future(call.read())
            done, _ = await asyncio.wait(
                {read, stopping}, timeout=heartbeat_s, return_when=asyncio.FIRST_COMPLETED
            )
            if stopping in done:
                return
            if read not in done:
                await response.write(HEARTBEAT)
                continue
            try:
                item = read.result()
            except grpc.aio.AioRpcError as error:
                if error.code() != grpc.StatusCode.CANCELLED:
                    logger.bind(code=error.code().name).info("event stream failed")
                    await response.write(_format_error(error_view(error).body()))
                return
            read = None
            if item is grpc.aio.EOF:
                return
            await response.write(format_event(item.event))
    finally:
        if read is not None:
            read.cancel()
