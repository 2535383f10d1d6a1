"""Transcript exports over REST: `GET /v1/meetings/{meeting_id}/transcript` negotiated.

`?format=` (srt, vtt, text, markdown, json) or an `Accept` header naming a file type
(application/x-subrip, text/vtt, text/plain, text/markdown) asks for a file, which
MeetingService.ExportTranscript makes; anything else (no format, `Accept: application/json`
or `*/*`) is the route's usual GetTranscript answer.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from contract_errors.meeting import invalid_field
from gateway import state
from gateway.auth import grpc_metadata
from gen.meeting.v1 import exports_pb2

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

FORMAT_PARAM = "format"
FORMATS: dict[str, int] = {
    "srt": exports_pb2.EXPORT_FORMAT_SRT,
    "vtt": exports_pb2.EXPORT_FORMAT_VTT,
    "text": exports_pb2.EXPORT_FORMAT_TEXT,
    "txt": exports_pb2.EXPORT_FORMAT_TEXT,
    "markdown": exports_pb2.EXPORT_FORMAT_MARKDOWN,
    "md": exports_pb2.EXPORT_FORMAT_MARKDOWN,
    "json": exports_pb2.EXPORT_FORMAT_JSON,
}
MEDIA_TYPES: dict[str, int] = {
    "application/x-subrip": exports_pb2.EXPORT_FORMAT_SRT,
    "text/vtt": exports_pb2.EXPORT_FORMAT_VTT,
    "text/plain": exports_pb2.EXPORT_FORMAT_TEXT,
    "text/markdown": exports_pb2.EXPORT_FORMAT_MARKDOWN,
}
# Media types that ask for the route's own JSON answer.
_DEFAULT_TYPES = frozenset({"application/json", "application/*", "*/*"})


def format_of(name: str, param: str = FORMAT_PARAM) -> int:
    """The export format a name ("srt", "vtt", ...) stands for.

    Args:
        name: The name, any case.
        param: The parameter it came in, for the error.

    Returns:
        A `meeting.v1.ExportFormat` value.

    Raises:
        MeetingError: INVALID_FIELD naming `param`.
    """
    found = FORMATS.get(name.strip().lower())
    if found is None:
        raise invalid_field(param, f"unknown {param} {name!r}; one of {', '.join(sorted(FORMATS))}")
    return found


def _accepted(header: str) -> int | None:
    """The export format the Accept header prefers; None for the JSON answer."""
    ranked: list[tuple[float, int, str]] = []
    for position, item in enumerate(header.split(",")):
        media, *params = (piece.strip() for piece in item.split(";"))
        quality = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if media and quality > 0:
            ranked.append((-quality, position, media.lower()))
    for _, _, media in sorted(ranked):
        if media in _DEFAULT_TYPES:
            return None
        if media in MEDIA_TYPES:
            return MEDIA_TYPES[media]
    return None


def requested_format(request: web.Request) -> int | None:
    """The export format a transcript request asks for; None for the JSON answer.

    Raises:
        MeetingError: INVALID_FIELD for an unknown `format`, or another query parameter
            beside it.
    """
    if FORMAT_PARAM in request.query:
        values = request.query.getall(FORMAT_PARAM)
        if len(values) > 1:
            raise invalid_field("format", f"query parameter {FORMAT_PARAM!r} given more than once")
        for key in request.query:
            if key != FORMAT_PARAM:
                raise invalid_field(
                    key, f"unknown query parameter {key!r} (allowed: {FORMAT_PARAM})"
                )
        return format_of(values[0])
    return _accepted(request.headers.get("Accept", ""))


async def export_transcript(
    request: web.Request, meeting_id: str, export_format: int, *, omit_speakers: bool = False
) -> exports_pb2.ExportTranscriptResponse:
    """Calls ExportTranscript for the caller of `request`.

    Raises:
        grpc.aio.AioRpcError: The service's error.
    """
    response: exports_pb2.ExportTranscriptResponse = await state.stub(request).ExportTranscript(
        exports_pb2.ExportTranscriptRequest(
            meeting_id=meeting_id,
            format=exports_pb2.ExportFormat.ValueType(export_format),
            omit_speakers=omit_speakers,
        ),
        metadata=grpc_metadata(request),
        timeout=state.settings(request).unary_timeout_s,
    )
    return response


def negotiated_transcript(default: Handler) -> Handler:
    """Wraps the GetTranscript route so that it also serves exports.

    Args:
        default: The route's GetTranscript handler.

    Returns:
        The handler of the route.
    """

    async def handler(request: web.Request) -> web.StreamResponse:
        export_format = requested_format(request)
        if export_format is None:
            response = await default(request)
            response.headers["Vary"] = "Accept"
            return response
        export = await export_transcript(request, request.match_info["meeting_id"], export_format)
        return web.Response(
            body=export.data,
            headers={
                "Content-Type": export.content_type,
                "Content-Disposition": f'attachment; filename="{export.filename}"',
                "Vary": "Accept",
            },
        )

    handler.__name__ = default.__name__
    handler.__doc__ = default.__doc__
    return handler
