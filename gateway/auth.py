"""Authentication at the edge: the bearer token is checked here and forwarded inward.

meeting_service verifies the token again (defence in depth); the gateway checks it first so
that a bad token is answered 401 with `WWW-Authenticate` without a backend round trip.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from gateway.http_errors import HttpError
from mesh_common.auth import METADATA_KEY, Principal, TokenVerifier
from mesh_common.errors import MeshError

# Routes anyone may call: liveness, readiness, the API description and the metrics.
PUBLIC_ROUTES = frozenset({"healthz", "readyz", "openapi", "metrics"})
# Browsers cannot set headers on EventSource and WebSocket, so these also take ?access_token=.
QUERY_TOKEN_ROUTES = frozenset({"events", "live"})
QUERY_TOKEN_PARAM = "access_token"  # noqa: S105 - a parameter name, not a secret

_QUERY_TOKEN_KEY = web.RequestKey("query_access_token", str)
# Where a request keeps its verified caller: auth_middleware sets it, the access line reads it.
PRINCIPAL_KEY = web.RequestKey("principal", Principal)
GRPC_METADATA_KEY = web.RequestKey("grpc_metadata", tuple)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _authorization(request: web.Request, route_name: str | None) -> str | None:
    header = request.headers.get("Authorization")
    if header:
        return header
    if route_name in QUERY_TOKEN_ROUTES:
        token = request.get(_QUERY_TOKEN_KEY)
        if token:
            return f"Bearer {token}"
    return None


@web.middleware
async def query_token_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Takes `?access_token=` out of the URL before anything can record it.

    Must come first: the tracing middleware puts the URL on its span and the access log
    names the request, so the handlers, the spans and the logs all see the URL without
    the token; `auth_middleware` finds it in the request's storage.
    """
    if QUERY_TOKEN_PARAM not in request.rel_url.query:
        return await handler(request)
    token = request.rel_url.query.get(QUERY_TOKEN_PARAM, "")
    stripped = request.clone(rel_url=request.rel_url.without_query_params(QUERY_TOKEN_PARAM))
    stripped[_QUERY_TOKEN_KEY] = token
    return await handler(stripped)


def auth_middleware(verifier: TokenVerifier) -> Middleware:
    """Returns the middleware that authenticates every non-public route.

    Args:
        verifier: The verifier of this deployment's tokens.

    Returns:
        The aiohttp middleware.
    """

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        route_name = request.match_info.route.name
        if route_name in PUBLIC_ROUTES or request.match_info.http_exception is not None:
            return await handler(request)
        authorization = _authorization(request, route_name)
        try:
            principal = verifier.verify(authorization)
        except MeshError as error:
            raise HttpError(
                error, {"WWW-Authenticate": _challenge(authorization is not None, error.message)}
            ) from None
        assert authorization is not None
        request[PRINCIPAL_KEY] = principal
        request[GRPC_METADATA_KEY] = ((METADATA_KEY, authorization),)
        return await handler(request)

    return middleware


def _challenge(had_token: bool, message: str) -> str:
    if not had_token:
        return 'Bearer realm="meeting-mesh"'
    description = message.replace('"', "'")
    return f'Bearer realm="meeting-mesh", error="invalid_token", error_description="{description}"'


def grpc_metadata(request: web.Request) -> tuple[tuple[str, str], ...]:
    """Returns the gRPC metadata that carries the caller's token to meeting_service.

    Args:
        request: An authenticated request.

    Returns:
        The metadata pairs.
    """
    metadata: tuple[tuple[str, str], ...] = request[GRPC_METADATA_KEY]
    return metadata
