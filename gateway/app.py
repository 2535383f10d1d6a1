"""The gateway application: REST, SSE and WebSocket in, gRPC to meeting_service out.

`create_app` builds the aiohttp application; it holds no per-user or per-meeting state,
only the channel to meeting_service, so any number of gateways can run side by side.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web

from gateway import state
from gateway.auth import VERIFIER, auth_middleware, query_token_middleware
from gateway.channel import open_channel
from gateway.console_routes import add_console_routes
from gateway.cors import OriginPolicy, add_allowed_origin_headers, cors_middlewares
from gateway.events import stream_events, stream_user_events
from gateway.exports import negotiated_transcript
from gateway.health import healthz, readyz
from gateway.live import live
from gateway.metrics import GatewayMetrics, metrics_handler
from gateway.middleware import error_middleware
from gateway.openai_api import add_openai_routes, openai_error_middleware
from gateway.openapi import build_openapi
from gateway.rest import add_rest_routes
from gateway.settings import GatewaySettings
from gateway.telemetry import telemetry_middleware
from gateway.upload import head_audio, patch_audio, put_audio
from gen.meeting.v1 import meeting_service_pb2_grpc
from mesh_common.telemetry import Telemetry, create_telemetry

# JSON bodies are small; recordings are streamed and never go through this limit.
_MAX_JSON_BODY_BYTES = 1024 * 1024
# The API description as a page: it renders /openapi.json in the browser, offline.
_DOCS_PAGE = Path(__file__).parent / "static" / "docs.html"


async def _openapi(request: web.Request) -> web.StreamResponse:
    return web.json_response(build_openapi(f"{request.scheme}://{request.host}"))


async def _docs(_request: web.Request) -> web.StreamResponse:
    return web.FileResponse(_DOCS_PAGE, headers={"Cache-Control": "no-cache"})


async def _channel_context(app: web.Application) -> AsyncIterator[None]:
    channel = app[state.TELEMETRY].trace_channel(open_channel(app[state.SETTINGS]))
    app[state.CHANNEL] = channel
    app[state.STUB] = meeting_service_pb2_grpc.MeetingServiceStub(channel)
    yield
    await channel.close(grace=None)


async def _begin_stopping(app: web.Application) -> None:
    app[state.STOPPING].set()


def create_app(settings: GatewaySettings, telemetry: Telemetry | None = None) -> web.Application:
    """Builds the gateway application.

    Run it with `access_log=None`: the telemetry middleware writes the access log, with
    route templates rather than URLs, so no query-string token can reach a log line.

    Args:
        settings: The gateway's settings.
        telemetry: Tracing, metrics and access log; one for "gateway" is made when None.

    Returns:
        The application; the channel opens when it starts and closes when it stops.
    """
    telemetry = telemetry or create_telemetry("gateway")
    metrics = GatewayMetrics(telemetry.registry)
    origins = OriginPolicy(settings.cors_origins)
    app = web.Application(
        middlewares=[
            query_token_middleware,
            telemetry_middleware(telemetry, metrics),
            *cors_middlewares(origins),
            error_middleware,
            openai_error_middleware,
            auth_middleware,
        ],
        client_max_size=_MAX_JSON_BODY_BYTES,
    )
    app[state.SETTINGS] = settings
    app[VERIFIER] = settings.token_verifier()
    app[state.TELEMETRY] = telemetry
    app[state.METRICS] = metrics
    app[state.STOPPING] = state.Stopping()
    add_allowed_origin_headers(app, origins)
    app.cleanup_ctx.append(_channel_context)
    app.on_shutdown.append(_begin_stopping)

    add_rest_routes(app, {"GetTranscript": negotiated_transcript})
    audio = "/v1/meetings/{meeting_id}/audio"
    app.router.add_route("PUT", audio, put_audio, name="put_audio")
    app.router.add_route("HEAD", audio, head_audio, name="head_audio")
    app.router.add_route("PATCH", audio, patch_audio, name="patch_audio")
    app.router.add_route("GET", "/v1/meetings/{meeting_id}/events", stream_events, name="events")
    app.router.add_route("GET", "/v1/meetings/{meeting_id}/live", live, name="live")
    app.router.add_route("GET", "/v1/events", stream_user_events, name="user_events")
    add_openai_routes(app)
    app.router.add_route("GET", "/healthz", healthz, name="healthz")
    app.router.add_route("GET", "/readyz", readyz, name="readyz")
    app.router.add_route("GET", "/openapi.json", _openapi, name="openapi")
    app.router.add_route("GET", "/docs", _docs, name="docs")
    app.router.add_route("GET", "/metrics", metrics_handler(telemetry.registry), name="metrics")
    add_console_routes(app)
    return app
