"""The live WebSocket: PCM audio frames in, transcript events out, over LiveTranscribe.

The client sends binary frames of 16-bit little-endian mono PCM (16 kHz unless
`?sample_rate=` says otherwise; the service decides what it accepts) and may send the text
frame `{"type": "end"}` to say the audio is over. Each event the service produces is sent
back as a text frame holding the TranscriptEvent JSON plus `"event"`, its kind, as on SSE.

Every failure closes the socket with a code and a reason: the close code the error table
gives the error's reason (4400 bad audio, 4404 unknown meeting, 4503 unavailable...; 4000 +
the HTTP status for a gRPC code without a reason), after a last text frame holding the
JSON error body. 1001 means the
gateway is stopping, 1003 a frame the protocol does not allow, 1000 a normal end.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import grpc
from aiohttp import WSCloseCode, WSMsgType, web

from contract_errors.meeting import invalid_field
from gateway import state
from gateway.auth import grpc_metadata
from gateway.events import EVENT_NAMES
from gateway.http_errors import error_view
from gateway.jsonpb import INT32_MAX, non_negative_int, to_json
from gen.meeting.v1 import meeting_service_pb2

_MAX_REASON_BYTES = 123  # RFC 6455: the close reason fits a 125-byte control frame
LIVE_ACCEPT_WAIT_S = 1.0
_QUEUED_FRAMES = 32  # audio frames waiting for gRPC flow control before the socket is paused
_LiveCall = grpc.aio.StreamStreamCall[
    meeting_service_pb2.LiveTranscribeRequest, meeting_service_pb2.LiveTranscribeResponse
]


class _ClientProtocolError(Exception):
    """The client sent something the live protocol does not allow."""


async def close_with_error(ws: web.WebSocketResponse, failure: grpc.aio.AioRpcError) -> None:
    """Sends the JSON error body as a last text frame, then closes with the error's code.

    Args:
        ws: The open socket.
        failure: Why the session failed.
    """
    view = error_view(failure)
    with contextlib.suppress(ConnectionError):
        await ws.send_str(json.dumps(view.body()))
    reason = f"{view.grpc_code.name}: {view.message}".encode()
    await ws.close(code=view.close_code, message=reason[:_MAX_REASON_BYTES])


def _config(request: web.Request) -> meeting_service_pb2.LiveAudioConfig:
    config = meeting_service_pb2.LiveAudioConfig(meeting_id=request.match_info["meeting_id"])
    for key, value in request.query.items():
        if key == "sample_rate":
            config.sample_rate_hertz = non_negative_int(value, key, INT32_MAX)
        elif key == "language":
            config.language = value
        elif key != "access_token":
            raise invalid_field(
                key,
                f"unknown query parameter {key!r} (allowed: sample_rate, language, access_token)",
            )
    return config


async def live(request: web.Request) -> web.StreamResponse:
    """Serves `GET /v1/meetings/{meeting_id}/live` (WebSocket upgrade).

    Args:
        request: The HTTP request.

    Returns:
        The WebSocket response, closed when the session ends.

    Raises:
        MeetingError: Before the upgrade, INVALID_FIELD for bad parameters.
        grpc.aio.AioRpcError: Before the upgrade, GetMeeting's error (NOT_FOUND for a
            meeting the caller does not own).
    """
    config = _config(request)
    stub = state.stub(request)
    metadata = grpc_metadata(request)
    await stub.GetMeeting(
        meeting_service_pb2.GetMeetingRequest(meeting_id=config.meeting_id),
        metadata=metadata,
        timeout=state.settings(request).unary_timeout_s,
    )

    ws = web.WebSocketResponse(heartbeat=30.0)
    await ws.prepare(request)
    # Only the uplink task reads the socket; the gRPC request stream reads this queue, so
    # a call that ends early never leaves a second reader on the socket.
    audio: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=_QUEUED_FRAMES)
    accepted = asyncio.Event()
    call: _LiveCall = stub.LiveTranscribe(_requests(config, audio, accepted), metadata=metadata)
    acceptance = asyncio.ensure_future(_await_acceptance(call, accepted))
    uplink = asyncio.ensure_future(_uplink(ws, audio))
    downlink = asyncio.ensure_future(_downlink(ws, call))
    stopping = asyncio.ensure_future(request.app[state.STOPPING].wait())
    open_sockets = state.metrics(request).websockets_open
    open_sockets.inc()
    try:
        done, _ = await asyncio.wait(
            {downlink, stopping, uplink}, return_when=asyncio.FIRST_COMPLETED
        )
        if uplink in done and uplink.exception() is None:
            # The client ended the audio; the service still sends its last events.
            await asyncio.wait({downlink, stopping}, return_when=asyncio.FIRST_COMPLETED)
        call.cancel()
        await _close(ws, uplink, downlink, stopping)
    finally:
        for task in (uplink, downlink, stopping, acceptance):
            task.cancel()
        call.cancel()
        open_sockets.dec()
    return ws


async def _close(
    ws: web.WebSocketResponse,
    uplink: asyncio.Future[None],
    downlink: asyncio.Future[None],
    stopping: asyncio.Future[Any],
) -> None:
    if uplink.done() and not uplink.cancelled():
        error = uplink.exception()
        if isinstance(error, _ClientProtocolError):
            await ws.close(
                code=WSCloseCode.UNSUPPORTED_DATA, message=str(error).encode()[:_MAX_REASON_BYTES]
            )
            return
    if downlink.done() and not downlink.cancelled():
        failure = downlink.exception()
        if isinstance(failure, grpc.aio.AioRpcError):
            await close_with_error(ws, failure)
            return
        if failure is None:
            await ws.close(code=WSCloseCode.OK, message=b"live session ended")
            return
    if stopping.done():
        await ws.close(code=WSCloseCode.GOING_AWAY, message=b"gateway is stopping")
        return
    await ws.close(code=WSCloseCode.OK, message=b"client left")


async def _await_acceptance(call: _LiveCall, accepted: asyncio.Event) -> None:
    """Sets `accepted` once the service has answered the config, or after a bound.

    Audio written while the service is rejecting the call races with its status: grpc then
    reports "Internal error from Core" instead of the service's reason (see
    `mesh_common.streams`). The config must go first, since the service cannot accept the
    call before reading it, so `start_gated` does not fit; instead the audio waits
    until the service sends its initial metadata (or ends the call), at most
    `LIVE_ACCEPT_WAIT_S`, since a service that sends nothing before its first event
    would otherwise never get the audio that produces it.
    """
    with contextlib.suppress(TimeoutError, grpc.aio.AioRpcError):
        async with asyncio.timeout(LIVE_ACCEPT_WAIT_S):
            await call.initial_metadata()
    if not call.done():
        accepted.set()


async def _requests(
    config: meeting_service_pb2.LiveAudioConfig,
    audio: asyncio.Queue[bytes | None],
    accepted: asyncio.Event,
) -> AsyncIterator[meeting_service_pb2.LiveTranscribeRequest]:
    yield meeting_service_pb2.LiveTranscribeRequest(config=config)
    await accepted.wait()
    while (frame := await audio.get()) is not None:
        yield meeting_service_pb2.LiveTranscribeRequest(audio=frame)


async def _uplink(ws: web.WebSocketResponse, audio: asyncio.Queue[bytes | None]) -> None:
    """Queues every binary frame as audio until the client ends or closes.

    Raises:
        _ClientProtocolError: The client sent a text frame other than the end marker.
    """
    async for message in ws:
        if message.type == WSMsgType.BINARY:
            await audio.put(message.data)
        elif message.type == WSMsgType.TEXT:
            if _is_end(message.data):
                break
            raise _ClientProtocolError(
                'text frames must be {"type": "end"}; audio goes in binary frames'
            )
    await audio.put(None)


def _is_end(text: str) -> bool:
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return False
    return isinstance(value, dict) and value.get("type") == "end"


async def _downlink(ws: web.WebSocketResponse, call: _LiveCall) -> None:
    """Sends every event of the call to the client; raises the call's error."""
    async for response in call:
        event = response.event
        body = to_json(event)
        body["event"] = EVENT_NAMES.get(event.WhichOneof("kind") or "", "message")
        await ws.send_str(json.dumps(body, separators=(",", ":")))
