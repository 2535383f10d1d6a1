"""HTTP answers for failures: gRPC errors through the one table, and the gateway's own.

Every error body has the shape of DESIGN.md, `{"error": {"code", "status", "message",
"details"}}`, whether meeting_service or the gateway itself refused the request.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import grpc
from aiohttp import web

from mesh_common.errors import DOMAIN, ErrorView, grpc_code_for_http, reason_name, view_rpc_error

# HTTP-only refinements of the table, by ErrorInfo reason: tus answers an offset mismatch
# with 409, and a body over the limit is 413 whether the gateway or the service noticed.
_REASON_HTTP_STATUS: dict[str, int] = {
    "UPLOAD_OFFSET_MISMATCH": 409,
    "UPLOAD_TOO_LARGE": 413,
}


def rpc_error_view(error: grpc.aio.AioRpcError) -> ErrorView:
    """Translates a failed gRPC call into its HTTP answer (the table plus the refinements).

    Args:
        error: The failed call.

    Returns:
        What the HTTP client is told.
    """
    view = view_rpc_error(error)
    for detail in view.details:
        status = _REASON_HTTP_STATUS.get(str(detail.get("reason", "")))
        if status is not None:
            return dataclasses.replace(view, http_status=status)
    return view


def gateway_error_view(
    http_status: int,
    message: str,
    reason: int | None = None,
    metadata: dict[str, str] | None = None,
) -> ErrorView:
    """Builds the view of an error the gateway finds itself (401, 400, 413, 415...).

    Args:
        http_status: The HTTP status.
        message: What the client can read.
        reason: A `meeting.v1.ErrorReason`, when one fits.
        metadata: The ErrorInfo metadata (e.g. `field`).

    Returns:
        The view, with the gRPC code the table gives this HTTP status.
    """
    details: list[dict[str, Any]] = []
    if reason is not None:
        details.append(
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": reason_name(reason),
                "domain": DOMAIN,
                "metadata": dict(metadata or {}),
            }
        )
    code = grpc_code_for_http(http_status)
    if http_status == 415:
        code = grpc.StatusCode.INVALID_ARGUMENT
    elif http_status == 413:
        code = grpc.StatusCode.RESOURCE_EXHAUSTED
    return ErrorView(http_status, code, message, details, None)


def error_response(view: ErrorView, headers: dict[str, str] | None = None) -> web.Response:
    """Renders an error view as a JSON response (with Retry-After when it has a delay).

    Args:
        view: The error.
        headers: Extra headers (e.g. WWW-Authenticate).

    Returns:
        The response.
    """
    all_headers = dict(headers or {})
    if view.retry_after is not None or view.http_status in (429, 503):
        all_headers["Retry-After"] = str(max(1, math.ceil(view.retry_after or 1.0)))
    return web.json_response(view.body(), status=view.http_status, headers=all_headers)


class HttpError(Exception):
    """An error the gateway answers itself; raised from handlers, rendered by middleware."""

    def __init__(self, view: ErrorView, headers: dict[str, str] | None = None) -> None:
        super().__init__(view.message)
        self.view = view
        self.headers = headers or {}

    def response(self) -> web.Response:
        """Returns the HTTP answer."""
        return error_response(self.view, self.headers)
