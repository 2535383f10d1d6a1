"""Uploads: the request body streamed into UploadAudio, resumable the tus way.

`PUT` starts an upload at offset 0, `HEAD` tells how many bytes are stored
(`Upload-Offset`), `PATCH` with `Upload-Offset` sends the rest. The body is never held
whole: it is cut into chunks of `upload_chunk_bytes` and each is written to the gRPC stream
as it arrives, so a slow meeting_service slows the client down (TCP flow control) instead of
filling the gateway's memory.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import grpc
from aiohttp import web

from contract_errors.meeting import (
    MeetingError,
    invalid_field,
    offset_mismatch,
    upload_too_large,
)
from gateway import state
from gateway.auth import grpc_metadata
from gateway.http_errors import HttpError, request_timeout
from gateway.jsonpb import json_body, non_negative_int
from gen.meeting.v1 import meeting_pb2, meeting_service_pb2, upload_end_pb2

UPLOAD_OFFSET = "Upload-Offset"
UPLOAD_LENGTH = "Upload-Length"
# tus's media type for PATCH bodies; the recording's own types are accepted there too.
TUS_CONTENT_TYPE = "application/offset+octet-stream"
_MEDIA_PREFIXES = ("audio/", "video/")
_OCTET_STREAM = "application/octet-stream"
# The media types a recording may be declared as.
ACCEPTED_TYPES = ("audio/*", "video/*", _OCTET_STREAM)


class _BodyBroken(Exception):
    """The client went away (or sent a short body) in the middle of the upload."""


class _BodyStalled(_BodyBroken):
    """The body paused longer than `upload_idle_timeout_s`."""


def _audio_content_type(request: web.Request, *, allow_tus: bool) -> str | None:
    """Returns the recording's media type, or None for a tus PATCH body (no type of its own).

    Any media type that may hold audio is taken: audio, video containers (a browser calls a
    meeting recording `video/mp4` or `video/webm`) and `application/octet-stream` (what a
    browser sends for a file it cannot name). meeting_service's probe decides whether the
    recording has decodable audio.

    Raises:
        HttpError: UNSUPPORTED_CONTENT_TYPE (415) for any other type.
    """
    content_type = request.content_type
    if content_type.startswith(_MEDIA_PREFIXES) or content_type == _OCTET_STREAM:
        return content_type
    if allow_tus and content_type == TUS_CONTENT_TYPE:
        return None
    accepted = ", ".join([*ACCEPTED_TYPES, *([TUS_CONTENT_TYPE] if allow_tus else [])])
    raise HttpError(
        MeetingError(
            meeting_pb2.ERROR_REASON_UNSUPPORTED_CONTENT_TYPE,
            f"unsupported Content-Type {content_type!r}: a recording must be one of {accepted}",
            {"content_type": content_type},
        ),
        {"Accept": ", ".join(ACCEPTED_TYPES)},
    )


def _non_negative_header(request: web.Request, name: str) -> int | None:
    raw = request.headers.get(name)
    if raw is None:
        return None
    return non_negative_int(raw, name)


Reader = Callable[[int], Awaitable[bytes]]
"""Reads at most n bytes of a recording; b"" at its end."""


async def _body_chunks(
    read: Reader, chunk_size: int, budget: int, idle_s: float
) -> AsyncIterator[bytes]:
    """Yields a recording in chunks of `chunk_size` (the last may be shorter).

    The chunk that crosses `budget` is yielded too, and nothing after it: meeting_service,
    told the same limit (`UploadMetadata.size_limit`), refuses that chunk and discards
    the recording, so a body too large is not left behind as a partial upload to resume
    (as it would be were the call cancelled, like a dropped connection).

    Raises:
        _BodyStalled: No byte came for `idle_s` seconds.
        _BodyBroken: The connection broke before the declared length arrived.
    """
    # The reads that make up the next chunk, joined once (a chunk that one read filled
    # goes on as it is, with no copy).
    pieces: list[bytes] = []
    held = 0
    received = 0
    while True:
        try:
            async with asyncio.timeout(idle_s):
                data = await read(chunk_size - held)
        except TimeoutError:
            raise _BodyStalled from None
        except (ConnectionError, OSError, ValueError) as error:
            raise _BodyBroken(str(error)) from None
        except Exception as error:  # aiohttp's payload errors have no common public base
            if type(error).__module__.startswith("aiohttp"):
                raise _BodyBroken(str(error)) from None
            raise
        if not data:
            break
        received += len(data)
        pieces.append(data)
        held += len(data)
        if received > budget:
            yield b"".join(pieces)
            return
        if held >= chunk_size:
            yield b"".join(pieces)
            pieces = []
            held = 0
    if pieces:
        yield b"".join(pieces)


async def _stream_upload(
    request: web.Request, upload: meeting_service_pb2.UploadMetadata
) -> web.Response:
    response = await stream_upload(request, upload, request.content.read)
    return json_body(response, headers={UPLOAD_OFFSET: str(response.stored_size)})


async def stream_upload(
    request: web.Request, upload: meeting_service_pb2.UploadMetadata, read: Reader
) -> meeting_service_pb2.UploadAudioResponse:
    """Streams a recording into UploadAudio as it is read, within the size limit.

    Args:
        request: The HTTP request it arrives with (the caller's token, the settings).
        upload: The stream's metadata.
        read: Reads the recording's next bytes (the body, or a multipart part).

    Returns:
        The service's answer.

    Raises:
        MeetingError: INVALID_FIELD for a body that ended early.
        HttpError: REQUEST_TIMEOUT for a body that stalled.
        grpc.aio.AioRpcError: The service's error (UPLOAD_TOO_LARGE over the limit).
    """
    settings = state.settings(request)
    upload.size_limit = settings.max_upload_bytes
    # The recording ends only with the `end` sent once the whole body was read: when the
    # client goes away, grpc.aio may show meeting_service an ordinary end of stream
    # before the cancelled call, which must not complete a truncated recording.
    upload.explicit_end = True
    budget = settings.max_upload_bytes - upload.offset
    body_failure: list[Exception] = []
    received = state.metrics(request).upload_bytes
    # The task grpc reads the messages in: it may still wait for body bytes when the call
    # has ended (refused mid-body), and must stop before the answer goes out, or aiohttp's
    # own read of the rest of the body fails beside it.
    body_reader: list[asyncio.Task[object]] = []

    async def messages() -> AsyncIterator[meeting_service_pb2.UploadAudioRequest]:
        task = asyncio.current_task()
        if task is not None:
            body_reader.append(task)
        yield meeting_service_pb2.UploadAudioRequest(metadata=upload)
        try:
            chunks = _body_chunks(
                read, settings.upload_chunk_bytes, budget, settings.upload_idle_timeout_s
            )
            sent = 0
            async for chunk in chunks:
                received.inc(len(chunk))
                sent += len(chunk)
                yield meeting_service_pb2.UploadAudioRequest(chunk=chunk)
            if sent <= budget:  # past it, meeting_service refuses the last chunk
                end = upload_end_pb2.UploadEnd(total_size=upload.offset + sent)
                yield meeting_service_pb2.UploadAudioRequest(end=end)
        except _BodyBroken as error:
            if isinstance(error, _BodyStalled):
                request.content.feed_eof()  # the rest is not waited for; the connection closes
            # Raising here makes grpc cancel the call rather than end the stream: an ended
            # stream would complete a truncated recording.
            body_failure.append(error)
            raise

    try:
        response: meeting_service_pb2.UploadAudioResponse = await state.stub(request).UploadAudio(
            messages(), metadata=grpc_metadata(request)
        )
    except grpc.aio.AioRpcError:
        # The call failed because our side of it did: the body's failure is the answer.
        failure = _body_error(body_failure, settings.upload_idle_timeout_s)
        if failure is None:
            raise
        raise failure from None
    except asyncio.CancelledError:
        # grpc reports a call it cancelled itself (our body failed) as CancelledError;
        # a cancellation of this task, rather than of the call, goes on up.
        current = asyncio.current_task()
        failure = _body_error(body_failure, settings.upload_idle_timeout_s)
        if failure is None or (current is not None and current.cancelling()):
            raise
        raise failure from None
    finally:
        await _stop_reading(body_reader)
    return response


async def _stop_reading(readers: list[asyncio.Task[object]]) -> None:
    pending = [task for task in readers if not task.done() and task is not asyncio.current_task()]
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending, timeout=1.0)


def _body_error(failures: list[Exception], idle_s: float) -> MeetingError | HttpError | None:
    if not failures:
        return None
    if isinstance(failures[0], _BodyStalled):
        return request_timeout("the next bytes of the upload", idle_s)
    return invalid_field("body", f"the request body ended early: {failures[0]}")


async def put_audio(request: web.Request) -> web.StreamResponse:
    """Uploads a whole recording (`PUT /v1/meetings/{meeting_id}/audio`).

    Args:
        request: The HTTP request; its body is the recording.

    Returns:
        200 with the UploadAudioResponse and `Upload-Offset`.

    Raises:
        MeetingError: UPLOAD_TOO_LARGE over the limit.
        HttpError: UNSUPPORTED_CONTENT_TYPE for a type that cannot hold audio;
            UPLOAD_OFFSET_MISMATCH when part of a recording is already stored (resume
            with PATCH).
        grpc.aio.AioRpcError: The service's error.
    """
    content_type = _audio_content_type(request, allow_tus=False)
    assert content_type is not None
    limit = state.settings(request).max_upload_bytes
    total = request.content_length
    if total is None:
        total = _non_negative_header(request, UPLOAD_LENGTH)
    if total is not None and total > limit:
        raise upload_too_large(limit)
    # Asked first, so that a meeting the caller cannot upload to is refused before the
    # stream starts: a refusal that races the body's first chunk reaches the client as
    # "Internal error from Core" instead of its status (see `mesh_common.streams`).
    status = await _upload_status(request)
    if status.stored_size and not status.complete:
        raise _offset_mismatch(
            f"{status.stored_size} bytes of the recording are stored: resume with PATCH "
            f"and {UPLOAD_OFFSET}: {status.stored_size}",
            status,
        )
    upload = meeting_service_pb2.UploadMetadata(
        meeting_id=request.match_info["meeting_id"],
        content_type=content_type,
        offset=0,
        request_id=request.headers.get("X-Request-Id", ""),
    )
    if total is not None:
        upload.total_size = total
    return await _stream_upload(request, upload)


async def _upload_status(request: web.Request) -> meeting_service_pb2.GetUploadStatusResponse:
    status: meeting_service_pb2.GetUploadStatusResponse = await state.stub(request).GetUploadStatus(
        meeting_service_pb2.GetUploadStatusRequest(meeting_id=request.match_info["meeting_id"]),
        metadata=grpc_metadata(request),
        timeout=state.settings(request).unary_timeout_s,
    )
    return status


def _status_headers(status: meeting_service_pb2.GetUploadStatusResponse) -> dict[str, str]:
    headers = {UPLOAD_OFFSET: str(status.stored_size), "Cache-Control": "no-store"}
    if status.HasField("total_size"):
        headers[UPLOAD_LENGTH] = str(status.total_size)
    return headers


def _offset_mismatch(
    message: str, status: meeting_service_pb2.GetUploadStatusResponse
) -> HttpError:
    return HttpError(offset_mismatch(status.stored_size, message), _status_headers(status))


async def head_audio(request: web.Request) -> web.StreamResponse:
    """Tells how much of the recording is stored (`HEAD /v1/meetings/{meeting_id}/audio`).

    Args:
        request: The HTTP request.

    Returns:
        200 with `Upload-Offset` (and `Upload-Length` when the size was declared).
    """
    status = await _upload_status(request)
    headers = _status_headers(status)
    headers["Upload-Complete"] = "true" if status.complete else "false"
    return web.Response(status=200, headers=headers)


async def patch_audio(request: web.Request) -> web.StreamResponse:
    """Continues an upload (`PATCH /v1/meetings/{meeting_id}/audio` with `Upload-Offset`).

    Args:
        request: The HTTP request; its body is the rest of the recording.

    Returns:
        200 with the UploadAudioResponse and the new `Upload-Offset`.

    Raises:
        HttpError: UPLOAD_OFFSET_MISMATCH when `Upload-Offset` is not the stored size
            (nothing is written); UNSUPPORTED_CONTENT_TYPE.
        MeetingError: INVALID_FIELD without `Upload-Offset`; UPLOAD_TOO_LARGE.
        grpc.aio.AioRpcError: The service's error.
    """
    content_type = _audio_content_type(request, allow_tus=True)
    offset = _non_negative_header(request, UPLOAD_OFFSET)
    if offset is None:
        raise invalid_field(UPLOAD_OFFSET, f"PATCH needs an {UPLOAD_OFFSET} header")
    limit = state.settings(request).max_upload_bytes
    if request.content_length is not None and offset + request.content_length > limit:
        raise upload_too_large(limit)
    status = await _upload_status(request)
    if offset != status.stored_size:
        raise _offset_mismatch(
            f"{UPLOAD_OFFSET} is {offset} but {status.stored_size} bytes are stored", status
        )
    upload = meeting_service_pb2.UploadMetadata(
        meeting_id=request.match_info["meeting_id"],
        content_type=content_type or status.content_type,
        offset=offset,
        request_id=request.headers.get("X-Request-Id", ""),
    )
    total = _non_negative_header(request, UPLOAD_LENGTH)
    if total is None and status.HasField("total_size"):
        total = status.total_size
    if total is not None:
        upload.total_size = total
    return await _stream_upload(request, upload)
