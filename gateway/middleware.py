"""The gateway's error layer: every failure becomes the JSON error body of DESIGN.md.

Failures from handlers, from meeting_service and from aiohttp itself (404, 405, 413) all
leave in the same shape.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import grpc
from aiohttp import web

from gateway.http_errors import HttpError, error_response, gateway_error_view, rpc_error_view
from mesh_common.logging import logger

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Renders every error as `{"error": {...}}` with the right status and headers.

    Args:
        request: The HTTP request.
        handler: The next handler.

    Returns:
        The handler's response, or the error response.
    """
    try:
        return await handler(request)
    except HttpError as error:
        return error.response()
    except grpc.aio.AioRpcError as error:
        return error_response(rpc_error_view(error))
    except web.HTTPException as error:
        if error.status < 400:
            raise
        headers = {k: v for k, v in error.headers.items() if k == "Allow"}
        return error_response(gateway_error_view(error.status, error.reason), headers)
    except Exception:
        logger.opt(exception=True).error("unhandled error in {} {}", request.method, request.path)
        return error_response(gateway_error_view(500, "internal error"))
