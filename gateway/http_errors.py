"""HTTP answers for failures: one rendering of the error table for every error.

Every error body has the shape `{"error": {"code", "status", "message", "details"}}`
(docs/errors.md), whether meeting_service or the gateway itself refused the request:
both raise errors of the meeting contract, and their reason's row in the table gives the
HTTP status.
"""

from __future__ import annotations

import math

import grpc
from aiohttp import web

from gen.meeting.v1 import meeting_pb2
from gen.mesh.v1 import errors_pb2
from mesh_common.errors import ErrorView, MeshError, view_rpc_error

# The contracts whose reasons meeting_service sends.
_CALLEE_REASONS = (meeting_pb2.ErrorReason, errors_pb2.ErrorReason)


class HttpError(Exception):
    """A domain error answered with extra HTTP headers (a challenge, the stored offset)."""

    def __init__(self, error: MeshError, headers: dict[str, str]) -> None:
        super().__init__(error.message)
        self.error = error
        self.headers = headers


def request_timeout(what: str, within_s: float) -> HttpError:
    """The 408 for a request whose body did not arrive in time; the connection closes.

    Args:
        what: What was late ("the request body").
        within_s: The time it had.
    """
    return HttpError(
        MeshError(
            errors_pb2.ERROR_REASON_REQUEST_TIMEOUT,
            f"{what} did not arrive within {within_s:g} s",
        ),
        {"Connection": "close"},
    )


def error_view(error: MeshError | grpc.aio.AioRpcError) -> ErrorView:
    """Returns what a client is told about an error of the gateway or of meeting_service.

    Args:
        error: The gateway's own error, or a failed call to meeting_service.

    Returns:
        The view, with the statuses of the reason's row in the table.
    """
    if isinstance(error, MeshError):
        return error.view()
    return view_rpc_error(error, _CALLEE_REASONS)


def bearer_challenge(message: str | None) -> str:
    """Returns the `WWW-Authenticate` value of a 401 (RFC 6750).

    Args:
        message: Why the credential was refused; None when there was none.
    """
    if message is None:
        return 'Bearer realm="meeting-mesh"'
    description = message.replace('"', "'")
    return f'Bearer realm="meeting-mesh", error="invalid_token", error_description="{description}"'


def error_response(
    error: MeshError | grpc.aio.AioRpcError, headers: dict[str, str] | None = None
) -> web.Response:
    """Renders an error as its JSON answer, with Retry-After when it may be tried again.

    Args:
        error: The error.
        headers: Extra headers (e.g. WWW-Authenticate).

    Returns:
        The response.
    """
    view = error_view(error)
    all_headers = dict(headers or {})
    if view.http_status == 401:
        # A credential refused by meeting_service (an API key) is challenged like one
        # refused here.
        all_headers.setdefault("WWW-Authenticate", bearer_challenge(view.message))
    if view.retry_after is not None or view.retryable:
        all_headers["Retry-After"] = str(max(1, math.ceil(view.retry_after or 1.0)))
    return web.json_response(view.body(), status=view.http_status, headers=all_headers)
