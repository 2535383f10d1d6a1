"""Server-Sent Events: a meeting's StreamTranscript as `text/event-stream`.

Each event is written as `id: <sequence>`, `event: <kind>`, `data: <TranscriptEvent JSON>`.
A reconnecting EventSource sends `Last-Event-ID`, which becomes `after_sequence`, so the
client continues exactly after the last event it saw (no gap, no duplicate). An error in the
middle of the stream is sent as an `error` event (no `id:`, so the resume point stays).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import grpc
from aiohttp import web

from gateway import state
from gateway.auth import grpc_metadata
from gateway.http_errors import HttpError, rpc_error_view
from gateway.jsonpb import invalid_field, to_json_text
from gen.meeting.v1 import meeting_pb2, meeting_service_pb2
from mesh_common.logging import logger

# TranscriptEvent's `kind` oneof -> SSE event name.
EVENT_NAMES: dict[str, str] = {
    "segment": "segment",
    "status_change": "status",
    "summary": "summary",
    "deleted": "deleted",
}
ERROR_EVENT = "error"
HEARTBEAT = b": heartbeat\n\n"


def _after_sequence(request: web.Request) -> int:
    for source, value in (
        ("Last-Event-ID", request.headers.get("Last-Event-ID")),
        ("after", request.query.get("after")),
    ):
        if value is None or value == "":
            continue
        if not value.isdigit():
            raise invalid_field(f"{source} must be a non-negative integer sequence", source)
        return int(value)
    return 0


def _check_query(request: web.Request) -> None:
    for key in request.query:
        if key not in ("after", "access_token"):
            raise invalid_field(
                f"unknown query parameter {key!r} (allowed: after, access_token)", key
            )


def format_event(event: meeting_pb2.TranscriptEvent) -> bytes:
    """Renders a transcript event as one SSE message.

    Args:
        event: The event.

    Returns:
        The bytes to write, ending with the blank line that dispatches it.
    """
    kind = event.WhichOneof("kind")
    name = EVENT_NAMES.get(kind or "", "message")
    return f"id: {event.sequence}\nevent: {name}\ndata: {to_json_text(event)}\n\n".encode()


def _format_error(body: dict[str, Any]) -> bytes:
    return f"event: {ERROR_EVENT}\ndata: {json.dumps(body, separators=(',', ':'))}\n\n".encode()


async def stream_events(request: web.Request) -> web.StreamResponse:
    """Serves `GET /v1/meetings/{meeting_id}/events`.

    Ownership is checked with GetMeeting before the stream opens, so an unknown meeting is
    a plain 404, not an event stream that fails.

    Args:
        request: The HTTP request.

    Returns:
        The event stream, ended when the meeting is deleted, the service ends the stream,
        the client leaves, or the gateway stops.

    Raises:
        HttpError: 400 for a bad resume point, or the error of GetMeeting.
    """
    _check_query(request)
    after = _after_sequence(request)
    meeting_id = request.match_info["meeting_id"]
    settings = state.settings(request)
    stub = state.stub(request)
    metadata = grpc_metadata(request)
    try:
        await stub.GetMeeting(
            meeting_service_pb2.GetMeetingRequest(meeting_id=meeting_id),
            metadata=metadata,
            timeout=settings.unary_timeout_seconds,
        )
    except grpc.aio.AioRpcError as error:
        raise HttpError(rpc_error_view(error)) from None

    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream; charset=utf-8",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
            "Connection": "keep-alive",
        }
    )
    await response.prepare(request)
    await response.write(f"retry: {settings.sse_retry_ms}\n\n".encode())
    call = stub.StreamTranscript(
        meeting_service_pb2.StreamTranscriptRequest(meeting_id=meeting_id, after_sequence=after),
        metadata=metadata,
    )
    stopping = asyncio.ensure_future(request.app[state.STOPPING].wait())
    try:
        with state.metrics(request).sse_open.track_inprogress():
            await _pump(call, response, settings.sse_heartbeat_seconds, stopping)
    except ConnectionError:
        pass  # the client left; nothing to tell it
    finally:
        stopping.cancel()
        call.cancel()
    return response


async def _pump(
    call: grpc.aio.UnaryStreamCall[
        meeting_service_pb2.StreamTranscriptRequest, meeting_service_pb2.StreamTranscriptResponse
    ],
    response: web.StreamResponse,
    heartbeat_seconds: float,
    stopping: asyncio.Future[Any],
) -> None:
    read: asyncio.Future[Any] | None = None
    try:
        while True:
            if read is None:
                read = asyncio.ensure_future(call.read())
            done, _ = await asyncio.wait(
                {read, stopping}, timeout=heartbeat_seconds, return_when=asyncio.FIRST_COMPLETED
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
                    await response.write(_format_error(rpc_error_view(error).body()))
                return
            read = None
            if item is grpc.aio.EOF:
                return
            await response.write(format_event(item.event))
    finally:
        if read is not None:
            read.cancel()
