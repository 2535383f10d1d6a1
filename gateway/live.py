"""The live WebSocket: PCM audio frames in, transcript events out, over LiveTranscribe.

The client sends binary frames of audio in the format the query names (`?encoding=`,
`?sample_rate=`, `?channels=`; 16-bit little-endian mono PCM at 16 kHz by default; the
service decides what it accepts, see docs/live.md) and sends the text frame
`{"type": "end"}` to say the audio is over; a socket that closes without it leaves the
meeting LIVE, and a new socket within the grace period resumes it. Each event the service
produces is sent back as a text frame holding the TranscriptEvent JSON plus `"event"`, its
kind, as on SSE.

The upgrade is always accepted, so that a browser learns why a session cannot start (a
refused upgrade only shows it close code 1006). The token comes in the `Authorization`
header, in `?access_token=`, or, since a browser's WebSocket can send no header, as the
first text frame `{"type": "auth", "token": "<JWT>"}` within `AUTH_FRAME_WAIT_S`; then the
parameters and the meeting are checked. A request that is not an upgrade is answered by
HTTP status, like any route.

Every failure closes the socket with a code and a reason: the close code the error table
gives the error's reason (4400 bad parameters, bad audio or a meeting that does not await
audio, 4401 missing or bad token, 4404 unknown meeting or another user's, 4503
unavailable...; 4000 + the HTTP status for a gRPC code without a reason), after a last
text frame holding the JSON error body. 1001 means the gateway is stopping, 1003 a frame
the protocol does not allow, 1000 a normal end.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import grpc
from aiohttp import WSCloseCode, WSMsgType, web

from contract_errors.meeting import MeetingError, invalid_field
from gateway import state
from gateway.auth import authenticate, grpc_metadata, request_authorization
from gateway.events import EVENT_NAMES
from gateway.http_errors import HttpError, error_view
from gateway.jsonpb import INT32_MAX, decode_json, non_negative_int, to_json
from gen.meeting.v1 import live_audio_pb2, meeting_service_pb2, meeting_service_pb2_grpc
from mesh_common.errors import MeshError

_MAX_REASON_BYTES = 123  # RFC 6455: the close reason fits a 125-byte control frame
LIVE_ACCEPT_WAIT_S = 1.0
# How long a client without a token in the request has to send its auth frame.
AUTH_FRAME_WAIT_S = 10.0
_QUEUED_FRAMES = 32  # audio frames waiting for gRPC flow control before the socket is paused
_LiveCall = grpc.aio.StreamStreamCall[
    meeting_service_pb2.LiveTranscribeRequest, meeting_service_pb2.LiveTranscribeResponse
]


class _ClientProtocolError(Exception):
    """The client sent something the live protocol does not allow."""


async def close_with_error(
    ws: web.WebSocketResponse, failure: MeshError | grpc.aio.AioRpcError
) -> None:
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


_QUERY = ("sample_rate", "encoding", "channels", "language", "resume", "access_token")
ENCODINGS = {
    name.removeprefix("LIVE_AUDIO_ENCODING_").lower(): number
    for name, number in live_audio_pb2.LiveAudioEncoding.items()
    if number != live_audio_pb2.LIVE_AUDIO_ENCODING_UNSPECIFIED
}
_BOOLEANS = {"true": True, "1": True, "false": False, "0": False}


def _config(request: web.Request) -> meeting_service_pb2.LiveAudioConfig:
    config = meeting_service_pb2.LiveAudioConfig(meeting_id=request.match_info["meeting_id"])
    for key, value in request.query.items():
        if key == "sample_rate":
            config.sample_rate_hertz = non_negative_int(value, key, INT32_MAX)
        elif key == "channels":
            config.channels = non_negative_int(value, key, INT32_MAX)
        elif key == "encoding":
            if value.lower() not in ENCODINGS:
                raise invalid_field(key, f"encoding must be one of {', '.join(ENCODINGS)}")
            config.encoding = ENCODINGS[value.lower()]
        elif key == "resume":
            if value.lower() not in _BOOLEANS:
                raise invalid_field(key, "resume must be true or false")
            config.resume = _BOOLEANS[value.lower()]
        elif key == "language":
            config.language = value
        elif key != "access_token":
            raise invalid_field(
                key, f"unknown query parameter {key!r} (allowed: {', '.join(_QUERY)})"
            )
    return config


async def live(request: web.Request) -> web.StreamResponse:
    """Serves `GET /v1/meetings/{meeting_id}/live` (WebSocket upgrade).

    Args:
        request: The HTTP request.

    Returns:
        The WebSocket response, closed when the session ends (or cannot start).

    Raises:
        MeetingError: For a request that is not an upgrade, INVALID_FIELD for bad
            parameters.
        grpc.aio.AioRpcError: For a request that is not an upgrade, GetMeeting's error.
    """
    ws = web.WebSocketResponse(heartbeat=30.0)
    if not ws.can_prepare(request):
        # Not an upgrade: answered by HTTP status like any route (then 400 by `prepare`).
        await _checked(request)
    await ws.prepare(request)
    try:
        await _authenticate(request, ws)
        config = await _checked(request)
    except HttpError as refused:
        await close_with_error(ws, refused.error)
        return ws
    except (MeshError, grpc.aio.AioRpcError) as refused:
        await close_with_error(ws, refused)
        return ws
    except _ClientProtocolError as error:
        await ws.close(
            code=WSCloseCode.UNSUPPORTED_DATA, message=str(error).encode()[:_MAX_REASON_BYTES]
        )
        return ws
    await _session(request, ws, state.stub(request), grpc_metadata(request), config)
    return ws


async def _checked(request: web.Request) -> meeting_service_pb2.LiveAudioConfig:
    """Checks the parameters and that the authenticated caller owns the meeting.

    Raises:
        MeetingError: INVALID_FIELD for bad parameters.
        grpc.aio.AioRpcError: GetMeeting's error (NOT_FOUND for a meeting the caller
            does not own).
    """
    config = _config(request)
    await state.stub(request).GetMeeting(
        meeting_service_pb2.GetMeetingRequest(meeting_id=config.meeting_id),
        metadata=grpc_metadata(request),
        timeout=state.settings(request).unary_timeout_s,
    )
    return config


async def _authenticate(request: web.Request, ws: web.WebSocketResponse) -> None:
    """Authenticates by the request's token, or else by the client's first frame.

    Raises:
        HttpError: UNAUTHENTICATED for a missing or bad token.
        _ClientProtocolError: The first frame is not an auth frame.
    """
    authorization = request_authorization(request)
    if authorization is None:
        token = await _auth_frame(ws)
        authorization = f"Bearer {token}" if token else None
    await authenticate(request, authorization)


async def _auth_frame(ws: web.WebSocketResponse) -> str | None:
    """Reads `{"type": "auth", "token": ...}`; None when no text frame came in time."""
    try:
        message = await ws.receive(timeout=AUTH_FRAME_WAIT_S)
    except TimeoutError:
        return None
    if message.type != WSMsgType.TEXT:
        return None
    try:
        value = json.loads(message.data)
    except json.JSONDecodeError:
        value = None
    if not isinstance(value, dict) or value.get("type") != "auth":
        raise _ClientProtocolError(
            'without a token in the request, the first frame must be {"type": "auth", '
            '"token": "<JWT>"}'
        )
    token = value.get("token")
    return token if isinstance(token, str) else None


async def _session(
    request: web.Request,
    ws: web.WebSocketResponse,
    stub: meeting_service_pb2_grpc.MeetingServiceStub,
    metadata: tuple[tuple[str, str], ...],
    config: meeting_service_pb2.LiveAudioConfig,
) -> None:
    # Only the uplink task reads the socket; the gRPC request stream reads this queue, so
    # a call that ends early never leaves a second reader on the socket.
    audio: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=_QUEUED_FRAMES)
    accepted = asyncio.Event()
    ended = asyncio.Event()
    call: _LiveCall = stub.LiveTranscribe(
        _requests(config, audio, accepted, ended), metadata=metadata
    )
    acceptance = asyncio.ensure_future(_await_acceptance(call, accepted))
    uplink = asyncio.ensure_future(_uplink(ws, audio, ended))
    downlink = asyncio.ensure_future(_downlink(ws, call))
    stopping = request.app[state.STOPPING].future()
    open_sockets = state.metrics(request).websockets_open
    open_sockets.inc()
    try:
        done, _ = await asyncio.wait(
            {downlink, stopping, uplink}, return_when=asyncio.FIRST_COMPLETED
        )
        if uplink in done and uplink.exception() is None:
            # The client ended the audio, or its socket closed without the end marker (a
            # drop: the service keeps the meeting LIVE for a resume, docs/live.md). Either
            # way the call ends once the service has recognized the audio it was sent.
            await asyncio.wait({downlink, stopping}, return_when=asyncio.FIRST_COMPLETED)
        call.cancel()
        await _close(ws, uplink, downlink, stopping)
    finally:
        request.app[state.STOPPING].release(stopping)
        for task in (uplink, downlink, acceptance):
            task.cancel()
        call.cancel()
        open_sockets.dec()


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
    ended: asyncio.Event,
) -> AsyncIterator[meeting_service_pb2.LiveTranscribeRequest]:
    yield meeting_service_pb2.LiveTranscribeRequest(config=config)
    await accepted.wait()
    while (frame := await audio.get()) is not None:
        yield meeting_service_pb2.LiveTranscribeRequest(audio=frame)
    if ended.is_set():
        yield meeting_service_pb2.LiveTranscribeRequest(end=True)


async def _uplink(
    ws: web.WebSocketResponse, audio: asyncio.Queue[bytes | None], ended: asyncio.Event
) -> None:
    """Queues every binary frame as audio until the client ends (`ended` set) or closes.

    Raises:
        _ClientProtocolError: The client sent a text frame other than the end marker.
    """
    async for message in ws:
        if message.type == WSMsgType.BINARY:
            await audio.put(message.data)
        elif message.type == WSMsgType.TEXT:
            if _is_end(message.data):
                ended.set()
                break
            raise _ClientProtocolError(
                'text frames must be {"type": "end"}; audio goes in binary frames'
            )
    await audio.put(None)


def _is_end(text: str) -> bool:
    # The bounded decoder: a frame nested thousands deep is "not the end", not a crash.
    try:
        value = decode_json(text.encode())
    except MeetingError:
        return False
    return isinstance(value, dict) and value.get("type") == "end"


async def _downlink(ws: web.WebSocketResponse, call: _LiveCall) -> None:
    """Sends every event of the call to the client; raises the call's error."""
    async for response in call:
        if ws.closed:
            continue  # a dropped client: the call goes on until its audio is recognized
        event = response.event
        body = to_json(event)
        body["event"] = EVENT_NAMES.get(event.WhichOneof("kind") or "", "message")
        with contextlib.suppress(ConnectionError):  # dropped since: as above
            await ws.send_str(json.dumps(body, separators=(",", ":")))
