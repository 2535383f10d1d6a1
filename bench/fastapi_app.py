"""The reference for `gateway_vs_fastapi`: GET a meeting as FastAPI + uvicorn would do it.

What the component description originally named: a FastAPI route that checks the bearer
token, calls MeetingService.GetMeeting over one grpc.aio channel, and answers the same
JSON (protobuf JSON mapping, same field rules) with the same error table. Only the route
the benchmark drives exists; it shares our token verifier and error table, and writes the
same structured access line per request (`access_logged`, a plain ASGI wrapper, not
Starlette's slower `BaseHTTPMiddleware`), so both sides do the same work per request. The
JSON is written as a FastAPI app writes a protobuf answer, with protobuf's own
`json_format.MessageToDict` and `JSONResponse`; the gateway's mapping compiled per message
type (gateway/protojson.py) gives the same JSON and is the gateway's own work, not lent
to the reference. What it leaves out: a trace span and request metrics, which the gateway
keeps.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from typing import Annotated, Any

import grpc
from fastapi import FastAPI, Header, Request
from fastapi.responses import JSONResponse
from google.protobuf import json_format

from gen.meeting.v1 import meeting_service_pb2, meeting_service_pb2_grpc
from mesh_common.auth import METADATA_KEY, TokenVerifier, bearer_credential
from mesh_common.errors import MeshError, view_rpc_error
from mesh_common.telemetry import log_http_access

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
Asgi = Callable[[Scope, Receive, Send], Awaitable[None]]


def access_logged(app: Asgi) -> Asgi:
    """Wraps an ASGI app so each HTTP request writes the gateway's access line."""

    async def logged(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def sending(message: MutableMapping[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await app(scope, receive, sending)
        finally:
            log_http_access(
                scope["method"],
                getattr(scope.get("route"), "path", "<unmatched>"),
                status,
                time.perf_counter() - started,
                scope.get("state", {}).get("user", ""),
            )

    return logged


def create_fastapi_app(meeting_target: str, jwt_secret: str) -> FastAPI:
    """Builds the reference app.

    Args:
        meeting_target: meeting_service's "host:port".
        jwt_secret: The HS256 secret tokens are signed with.

    Returns:
        The FastAPI application (its channel opens on startup).
    """
    verifier = TokenVerifier(jwt_secret)
    stubs: dict[str, meeting_service_pb2_grpc.MeetingServiceStub] = {}

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        async with grpc.aio.insecure_channel(meeting_target) as channel:
            stubs["meeting"] = meeting_service_pb2_grpc.MeetingServiceStub(channel)
            yield

    app = FastAPI(lifespan=lifespan, openapi_url=None, docs_url=None, redoc_url=None)

    @app.get("/v1/meetings/{meeting_id}")
    async def get_meeting(
        request: Request, meeting_id: str, authorization: Annotated[str | None, Header()] = None
    ) -> Any:
        try:
            request.state.user = (await verifier.verify(bearer_credential(authorization))).user
        except MeshError as error:
            return JSONResponse({"error": {"code": 401, "message": error.message}}, 401)
        assert authorization is not None
        try:
            response = await stubs["meeting"].GetMeeting(
                meeting_service_pb2.GetMeetingRequest(meeting_id=meeting_id),
                metadata=((METADATA_KEY, authorization),),
                timeout=10.0,
            )
        except grpc.aio.AioRpcError as error:
            view = view_rpc_error(error)
            return JSONResponse(view.body(), view.http_status)
        return JSONResponse(
            json_format.MessageToDict(response, always_print_fields_with_no_presence=True)
        )

    return app
