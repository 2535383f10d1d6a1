"""The OpenAI-compatible front door, for tools that speak OpenAI's transcription API.

Three routes: `/v1/audio/transcriptions`, `/v1/audio/translations` and `/v1/models`.

A transcription is an ordinary meeting of the caller: the multipart `file` is streamed into
UploadAudio as it arrives (never held whole), the gateway follows StreamTranscript until the
meeting is COMPLETED or FAILED, and answers in the requested `response_format` (text, srt
and vtt are MeetingService.ExportTranscript's files, without speaker labels as Whisper's).
The meeting stays in the caller's list like any other. Errors on these routes have OpenAI's
shape, `{"error": {"message", "type", "param", "code"}}`.
"""

from __future__ import annotations

import math
import mimetypes
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from aiohttp import BodyPartReader, MultipartReader, web
from aiohttp.http_exceptions import HttpProcessingError
from google.protobuf import duration_pb2, field_mask_pb2

from gateway import state
from gateway.auth import grpc_metadata
from gateway.exports import export_transcript
from gateway.http_errors import HttpError, error_view
from gateway.upload import stream_upload
from gen.meeting.v1 import exports_pb2, meeting_pb2, meeting_service_pb2
from gen.mesh.v1 import errors_pb2
from mesh_common.errors import ErrorView, MeshError
from mesh_common.logging import logger

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

ROUTES = frozenset({"openai_transcriptions", "openai_translations", "openai_models"})
RESPONSE_FORMATS = ("json", "text", "srt", "vtt", "verbose_json")
GRANULARITIES = ("word", "segment")
_FILE_EXPORTS = {
    "text": exports_pb2.EXPORT_FORMAT_TEXT,
    "srt": exports_pb2.EXPORT_FORMAT_SRT,
    "vtt": exports_pb2.EXPORT_FORMAT_VTT,
}
# Form fields other than the file are short; a longer one is refused, not buffered.
_FIELD_LIMIT_BYTES = 64 * 1024
_ERROR_TYPES = {401: "invalid_request_error", 429: "rate_limit_error"}
_FINAL = (meeting_pb2.MEETING_STATUS_COMPLETED, meeting_pb2.MEETING_STATUS_FAILED)
# What aiohttp raises for a multipart body it cannot parse (no boundary, bad part headers).
_MALFORMED = (ValueError, HttpProcessingError)


def openai_error(view: ErrorView, param: str | None = None) -> dict[str, Any]:
    """An error view in OpenAI's error shape.

    Args:
        view: The error.
        param: The request parameter at fault; the view's `field` when None.

    Returns:
        The JSON body.
    """
    info = next((d for d in view.details if "reason" in d), {})
    reason = str(info.get("reason", ""))
    if param is None:
        param = info.get("metadata", {}).get("field")
    kind = _ERROR_TYPES.get(view.http_status)
    if kind is None:
        kind = "server_error" if view.http_status >= 500 else "invalid_request_error"
    code = "invalid_api_key" if view.http_status == 401 else reason.lower() or None
    return {"error": {"message": view.message, "type": kind, "param": param, "code": code}}


class OpenAIError(Exception):
    """An error the OpenAI routes answer themselves, in OpenAI's shape.

    Args:
        status: The HTTP status.
        message: What a user can read.
        param: The request parameter at fault, if one is.
        code: OpenAI's `code` ("invalid_value", "transcription_failed"...).
    """

    def __init__(self, status: int, message: str, param: str | None, code: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code

    def response(self) -> web.Response:
        """Returns the HTTP answer."""
        kind = "server_error" if self.status >= 500 else "invalid_request_error"
        body = {"message": self.message, "type": kind, "param": self.param, "code": self.code}
        return web.json_response({"error": body}, status=self.status)


def _invalid(message: str, param: str | None, code: str = "invalid_value") -> OpenAIError:
    return OpenAIError(400, message, param, code)


@web.middleware
async def openai_error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Renders the errors of the OpenAI routes (authentication included) in OpenAI's shape.

    Sits inside the gateway's error middleware, which renders every other route.
    """
    if request.match_info.route.name not in ROUTES:
        return await handler(request)
    try:
        return await handler(request)
    except OpenAIError as error:
        return error.response()
    except HttpError as error:
        return _render(error_view(error.error), error.headers)
    except (MeshError, grpc.aio.AioRpcError) as error:
        return _render(error_view(error))
    except web.HTTPException as error:
        if error.status < 400:
            raise
        reason = errors_pb2.ERROR_REASON_BAD_REQUEST
        if error.status >= 500:
            reason = errors_pb2.ERROR_REASON_INTERNAL
        return _render(error_view(MeshError(reason, error.reason)))
    except Exception:
        logger.opt(exception=True).error("unhandled error in {} {}", request.method, request.path)
        return _render(error_view(MeshError(errors_pb2.ERROR_REASON_INTERNAL, "internal error")))


def _render(view: ErrorView, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(openai_error(view), status=view.http_status, headers=headers)


@dataclass(frozen=True)
class _Options:
    """The form's fields, checked."""

    language: str
    response_format: str
    granularities: frozenset[str]

    @classmethod
    def parse(cls, fields: dict[str, list[str]]) -> _Options:
        def one(name: str, default: str = "") -> str:
            values = fields.get(name, [])
            return values[-1].strip() if values else default

        response_format = one("response_format", "json") or "json"
        if response_format not in RESPONSE_FORMATS:
            raise _invalid(
                f"response_format {response_format!r} is not one of {', '.join(RESPONSE_FORMATS)}",
                "response_format",
            )
        granularities = frozenset(
            g.strip()
            for name in ("timestamp_granularities[]", "timestamp_granularities")
            for g in fields.get(name, [])
        )
        unknown = sorted(granularities - set(GRANULARITIES))
        if unknown:
            raise _invalid(
                f"timestamp_granularities {unknown} are not among {', '.join(GRANULARITIES)}",
                "timestamp_granularities",
            )
        if granularities and response_format != "verbose_json":
            raise _invalid(
                "timestamp_granularities needs response_format verbose_json",
                "timestamp_granularities",
            )
        temperature = one("temperature", "0") or "0"
        try:
            valid = 0.0 <= float(temperature) <= 1.0
        except ValueError:
            valid = False
        if not valid:
            raise _invalid(
                f"temperature {temperature!r} is not a number from 0 to 1", "temperature"
            )
        return cls(one("language"), response_format, granularities or frozenset({"segment"}))


async def _next_part(reader: MultipartReader) -> BodyPartReader | None:
    try:
        part = await reader.next()
    except _MALFORMED as error:
        raise _invalid(f"the multipart body cannot be read: {error}", None) from None
    if part is not None and not isinstance(part, BodyPartReader):
        raise _invalid("nested multipart bodies are not accepted", None)
    return part


async def _field_text(part: BodyPartReader) -> str:
    data = bytearray()
    while True:
        try:
            chunk = await part.read_chunk(8192)
        except _MALFORMED as error:
            raise _invalid(f"the multipart body cannot be read: {error}", part.name) from None
        if not chunk:
            break
        data += chunk
        if len(data) > _FIELD_LIMIT_BYTES:
            raise _invalid(
                f"form field {part.name!r} is longer than {_FIELD_LIMIT_BYTES} bytes", part.name
            )
    try:
        return bytes(data).decode(part.get_charset(default="utf-8"), errors="replace")
    except LookupError:  # a charset Python does not know
        return bytes(data).decode("utf-8", errors="replace")


def _file_type(part: BodyPartReader) -> str:
    declared = (part.headers.get("Content-Type") or "").split(";")[0].strip().lower()
    if declared and declared != "application/octet-stream":
        return declared
    guessed, _ = mimetypes.guess_type(part.filename or "")
    return guessed or "application/octet-stream"


class _Recording:
    """Reads the `file` part, then the fields after it, before the upload stream ends.

    A `language` that follows the file is applied to the meeting before the upload
    completes, so the job that the completion queues already has it.
    """

    def __init__(
        self,
        request: web.Request,
        reader: MultipartReader,
        part: BodyPartReader,
        fields: dict[str, list[str]],
        meeting_id: str,
    ) -> None:
        self._request = request
        self._reader = reader
        self._part = part
        self._fields = fields
        self._meeting_id = meeting_id
        self._done = False
        self.failure: Exception | None = None

    async def read(self, size: int) -> bytes:
        if self._done:
            return b""
        data: bytes = await self._part.read_chunk(size)
        if data:
            return data
        self._done = True
        try:
            await self._read_the_rest()
        except (OpenAIError, MeshError, grpc.aio.AioRpcError) as error:
            # Raised inside the upload stream it would cancel the call, not answer it:
            # the handler raises it once the stream is over.
            self.failure = error
        return b""

    async def _read_the_rest(self) -> None:
        language = _Options.parse(self._fields).language
        while (part := await _next_part(self._reader)) is not None:
            if part.name == "file":
                raise _invalid("only one file may be sent", "file")
            self._fields.setdefault(part.name or "", []).append(await _field_text(part))
        after = _Options.parse(self._fields)
        if after.language != language:
            await _set_language(self._request, self._meeting_id, after.language)


async def _call(request: web.Request, method: str, message: Any, param: str | None = None) -> Any:
    try:
        return await getattr(state.stub(request), method)(
            message,
            metadata=grpc_metadata(request),
            timeout=state.settings(request).unary_timeout_s,
        )
    except grpc.aio.AioRpcError as error:
        view = error_view(error)
        if param is not None and view.http_status == 400:
            raise OpenAIError(400, view.message, param, "invalid_value") from None
        raise


async def _delete(request: web.Request, meeting_id: str) -> None:
    await _call(
        request, "DeleteMeeting", meeting_service_pb2.DeleteMeetingRequest(meeting_id=meeting_id)
    )


async def _set_language(request: web.Request, meeting_id: str, language: str) -> None:
    await _call(
        request,
        "UpdateMeeting",
        meeting_service_pb2.UpdateMeetingRequest(
            meeting=meeting_pb2.Meeting(id=meeting_id, language=language),
            update_mask=field_mask_pb2.FieldMask(paths=["language"]),
        ),
        "language",
    )


async def _follow(request: web.Request, meeting_id: str) -> meeting_pb2.MeetingStatus.ValueType:
    """Follows the meeting's events until it is COMPLETED or FAILED."""
    wait_s = state.settings(request).openai_wait_s
    call = state.stub(request).StreamTranscript(
        meeting_service_pb2.StreamTranscriptRequest(meeting_id=meeting_id),
        metadata=grpc_metadata(request),
        timeout=wait_s,
    )
    try:
        async for response in call:
            event = response.event
            if event.HasField("status_change") and event.status_change.status in _FINAL:
                if event.status_change.status == meeting_pb2.MEETING_STATUS_FAILED:
                    raise OpenAIError(
                        500,
                        f"the transcription failed: {event.status_change.reason or 'no reason'}"
                        f" (meeting {meeting_id})",
                        None,
                        "transcription_failed",
                    )
                return event.status_change.status
            if event.HasField("deleted"):
                raise OpenAIError(
                    409,
                    f"meeting {meeting_id} was deleted while it was transcribed",
                    None,
                    "meeting_deleted",
                )
    except grpc.aio.AioRpcError as error:
        if error.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
            raise OpenAIError(
                504,
                f"the transcription did not finish within {wait_s:g} s; it goes on as meeting "
                f"{meeting_id} (GET /v1/meetings/{meeting_id}/transcript)",
                None,
                "timeout",
            ) from None
        raise
    finally:
        call.cancel()
    raise OpenAIError(503, "the event stream ended early; retry", None, "stream_ended")


async def transcriptions(request: web.Request) -> web.StreamResponse:
    """`POST /v1/audio/transcriptions`: transcribe a file, answer when it is done.

    Args:
        request: multipart/form-data with `file` and OpenAI's optional fields.

    Returns:
        The transcript in `response_format`.

    Raises:
        OpenAIError: A field, the file or the transcription failed (other errors are
            rendered in OpenAI's shape by the middleware).
    """
    if request.content_type != "multipart/form-data":
        raise _invalid("the body must be multipart/form-data with the recording in `file`", "file")
    try:
        reader = await request.multipart()
    except _MALFORMED as error:
        raise _invalid(f"the multipart body cannot be read: {error}", "file") from None
    fields: dict[str, list[str]] = {}
    part = await _next_part(reader)
    while part is not None and part.name != "file":
        fields.setdefault(part.name or "", []).append(await _field_text(part))
        part = await _next_part(reader)
    if part is None:
        raise _invalid("the recording is missing: send it as the multipart field `file`", "file")
    options = _Options.parse(fields)
    created: meeting_service_pb2.CreateMeetingResponse = await _call(
        request,
        "CreateMeeting",
        meeting_service_pb2.CreateMeetingRequest(
            meeting=meeting_pb2.Meeting(
                title=(part.filename or "transcription")[:200], language=options.language
            )
        ),
        "language",
    )
    meeting_id = created.meeting.id
    upload = meeting_service_pb2.UploadMetadata(
        meeting_id=meeting_id,
        content_type=_file_type(part),
        request_id=request.headers.get("X-Request-Id", ""),
    )
    recording = _Recording(request, reader, part, fields, meeting_id)
    try:
        uploaded = await stream_upload(request, upload, recording.read)
    except (MeshError, grpc.aio.AioRpcError) as error:
        # Nothing was transcribed: leave no empty meeting behind.
        await _delete(request, meeting_id)
        view = error_view(error)
        if view.http_status == 400:
            raise OpenAIError(400, view.message, "file", "invalid_file") from None
        raise
    if recording.failure is not None:
        await _delete(request, meeting_id)
        raise recording.failure
    options = _Options.parse(fields)
    await _follow(request, meeting_id)
    if options.response_format in _FILE_EXPORTS:
        export = await export_transcript(
            request, meeting_id, _FILE_EXPORTS[options.response_format], omit_speakers=True
        )
        return web.Response(body=export.data, headers={"Content-Type": export.content_type})
    text = await export_transcript(
        request, meeting_id, exports_pb2.EXPORT_FORMAT_TEXT, omit_speakers=True
    )
    body: dict[str, Any] = {"text": text.data.decode().strip()}
    if options.response_format == "verbose_json":
        transcript: meeting_service_pb2.GetTranscriptResponse = await _call(
            request,
            "GetTranscript",
            meeting_service_pb2.GetTranscriptRequest(meeting_id=meeting_id),
        )
        body = _verbose(body["text"], transcript, uploaded, options)
    return web.json_response(body, headers={"X-Meeting-Id": meeting_id})


def _seconds(value: duration_pb2.Duration) -> float:
    return round(value.seconds + value.nanos / 1e9, 3)


def _verbose(
    text: str,
    transcript: meeting_service_pb2.GetTranscriptResponse,
    uploaded: meeting_service_pb2.UploadAudioResponse,
    options: _Options,
) -> dict[str, Any]:
    segments = [s for s in transcript.segments if s.text.strip()]
    language = next((s.language for s in segments if s.language), "") or options.language
    body: dict[str, Any] = {
        "task": "transcribe",
        "language": language,
        "duration": _seconds(uploaded.duration),
        "text": text,
    }
    if "segment" in options.granularities:
        body["segments"] = [
            {
                "id": number,
                "seek": 0,
                "start": _seconds(s.start_offset),
                "end": _seconds(s.end_offset),
                "text": s.text.strip(),
                "tokens": [],
                "temperature": 0.0,
                # The recognizer's confidence; compression and no-speech are not measured.
                "avg_logprob": math.log(s.confidence) if s.confidence > 0 else 0.0,
                "compression_ratio": 0.0,
                "no_speech_prob": 0.0,
                "speaker": s.speaker,
            }
            for number, s in enumerate(segments)
        ]
    if "word" in options.granularities:
        body["words"] = [
            {"word": w.text, "start": _seconds(w.start_offset), "end": _seconds(w.end_offset)}
            for s in segments
            for w in s.words
        ]
    return body


async def translations(request: web.Request) -> web.StreamResponse:
    """`POST /v1/audio/translations`: refused, the mesh's recognizer does not translate.

    Raises:
        OpenAIError: Always, 400.
    """
    raise OpenAIError(
        400,
        "translation is not supported: meeting-mesh's speech recognizer transcribes in the "
        "spoken language only; use /v1/audio/transcriptions",
        None,
        "unsupported_task",
    )


async def models(request: web.Request) -> web.StreamResponse:
    """`GET /v1/models`: the model ids a transcription may name (each runs the mesh's ASR).

    Returns:
        OpenAI's model list.
    """
    ids = state.settings(request).openai_model_ids
    return web.json_response(
        {
            "object": "list",
            "data": [
                {"id": name, "object": "model", "created": 0, "owned_by": "meeting-mesh"}
                for name in ids
            ],
        }
    )


def add_openai_routes(app: web.Application) -> None:
    """Adds the OpenAI-compatible routes.

    Args:
        app: The application.
    """
    app.router.add_route(
        "POST", "/v1/audio/transcriptions", transcriptions, name="openai_transcriptions"
    )
    app.router.add_route("POST", "/v1/audio/translations", translations, name="openai_translations")
    app.router.add_route("GET", "/v1/models", models, name="openai_models")
