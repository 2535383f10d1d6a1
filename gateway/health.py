"""Liveness and readiness.

`/healthz` says the process answers; `/readyz` says it can do useful work: meeting_service
is reachable and reports SERVING through `grpc.health.v1`.
"""

from __future__ import annotations

import grpc
from aiohttp import web
from grpc_health.v1 import health_pb2

from gateway import state
from gateway.rest import SERVICE
from mesh_common.grpc_server import check_health

READINESS_TIMEOUT_S = 2.0


async def healthz(request: web.Request) -> web.StreamResponse:
    """Serves `GET /healthz`: 200 while the process runs.

    Args:
        request: The HTTP request.

    Returns:
        `{"status": "ok"}`.
    """
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.StreamResponse:
    """Serves `GET /readyz`: 200 when meeting_service is SERVING, 503 otherwise.

    Args:
        request: The HTTP request.

    Returns:
        `{"status": "ready", "meeting_service": "SERVING"}`, or 503 with the reason.
    """
    try:
        status = await check_health(
            request.app[state.CHANNEL],
            SERVICE.full_name,
            min(READINESS_TIMEOUT_S, state.settings(request).unary_timeout_s),
        )
        serving = health_pb2.HealthCheckResponse.ServingStatus.Name(status)
    except grpc.aio.AioRpcError as error:
        serving = f"unreachable ({error.code().name})"
    if request.app[state.STOPPING].is_set():
        serving = "gateway stopping"
    ready = serving == "SERVING"
    return web.json_response(
        {"status": "ready" if ready else "not ready", "meeting_service": serving},
        status=200 if ready else 503,
        headers={} if ready else {"Retry-After": "1"},
    )
