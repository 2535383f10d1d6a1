"""The gateway's error layer: every failure becomes the JSON error body (docs/errors.md).

Failures from handlers, from meeting_service and from aiohttp itself (404, 405, 413) all
leave in the same shape, rendered by `gateway.http_errors.error_response`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import grpc
from aiohttp import web

from gateway.http_errors import HttpError, error_response
from gen.mesh.v1 import errors_pb2
from mesh_common.errors import MeshError
from mesh_common.logging import logger

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# The refusals aiohttp makes itself, before or around a handler.
_AIOHTTP_REASONS = {
    404: errors_pb2.ERROR_REASON_ROUTE_NOT_FOUND,
    405: errors_pb2.ERROR_REASON_METHOD_NOT_ALLOWED,
    408: errors_pb2.ERROR_REASON_REQUEST_TIMEOUT,
    413: errors_pb2.ERROR_REASON_REQUEST_TOO_LARGE,
}


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
        return error_response(error.error, error.headers)
    except (MeshError, grpc.aio.AioRpcError) as error:
        return error_response(error)
    except web.HTTPException as error:
        if error.status < 400:
            raise
        headers = {k: v for k, v in error.headers.items() if k == "Allow"}
        return error_response(_aiohttp_error(error), headers)
    except Exception:
        logger.opt(exception=True).error("unhandled error in {} {}", request.method, request.path)
        return error_response(MeshError(errors_pb2.ERROR_REASON_INTERNAL, "internal error"))


def _aiohttp_error(error: web.HTTPException) -> MeshError:
    default = (
        errors_pb2.ERROR_REASON_BAD_REQUEST
        if error.status < 500
        else errors_pb2.ERROR_REASON_INTERNAL
    )
    return MeshError(_AIOHTTP_REASONS.get(error.status, default), error.reason)
