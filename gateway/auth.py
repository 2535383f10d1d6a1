"""Authentication at the edge: the bearer credential is checked here and forwarded inward.

A JWT is verified here, so that a bad token is answered 401 with `WWW-Authenticate`
without a backend round trip, and again by meeting_service (defence in depth). An API key
(`mm_...`) is only recognised here and forwarded: its hash, owner and scopes are in
meeting_service's database, which checks it and the route's scope on the call the route
makes, so a revoked key is refused from its next request on (docs/security.md).

A WebSocket upgrade is the exception: a browser sees no HTTP status of a refused upgrade,
only close code 1006, so the live route accepts the upgrade first and authenticates itself
(gateway/live.py), closing with 4401 and a reason when the token is bad.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from gateway.http_errors import HttpError, bearer_challenge
from mesh_common.auth import (
    METADATA_KEY,
    Principal,
    TokenVerifier,
    bearer_credential,
    is_api_key,
)
from mesh_common.errors import MeshError

# Routes anyone may call: liveness, readiness, the API description and the metrics.
PUBLIC_ROUTES = frozenset({"healthz", "readyz", "openapi", "docs", "root", "metrics"})
# Browsers cannot set headers on EventSource and WebSocket, so these also take ?access_token=.
QUERY_TOKEN_ROUTES = frozenset({"events", "user_events", "live"})
# WebSocket routes: an upgrade request is authenticated by the handler, after the upgrade.
WEBSOCKET_ROUTES = frozenset({"live"})
QUERY_TOKEN_PARAM = "access_token"  # noqa: S105 - a parameter name, not a secret

_QUERY_TOKEN_KEY = web.RequestKey("query_access_token", str)
# Where a request keeps its verified caller: auth_middleware sets it for a JWT (an API key's
# owner is known to meeting_service only), the access line reads it.
PRINCIPAL_KEY = web.RequestKey("principal", Principal)
GRPC_METADATA_KEY = web.RequestKey("grpc_metadata", tuple)
VERIFIER = web.AppKey("token_verifier", TokenVerifier)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def request_authorization(request: web.Request) -> str | None:
    """Returns the request's `Authorization`, or its query token as one where allowed.

    Args:
        request: The HTTP request.

    Returns:
        The credentials ("Bearer ..."), or None when the request carries none.
    """
    route_name = request.match_info.route.name
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


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Authenticates every non-public route (a WebSocket upgrade: in its handler).

    Args:
        request: The HTTP request.
        handler: The next handler.

    Returns:
        The handler's response.

    Raises:
        HttpError: 401 with `WWW-Authenticate` for a missing or bad token.
    """
    route_name = request.match_info.route.name
    if route_name in PUBLIC_ROUTES or request.match_info.http_exception is not None:
        return await handler(request)
    if route_name in WEBSOCKET_ROUTES and _is_upgrade(request):
        return await handler(request)
    await authenticate(request, request_authorization(request))
    return await handler(request)


def _is_upgrade(request: web.Request) -> bool:
    return request.headers.get("Upgrade", "").lower() == "websocket"


async def authenticate(request: web.Request, authorization: str | None) -> None:
    """Verifies credentials and records the caller and the metadata on the request.

    Args:
        request: The HTTP request (it keeps the caller and the gRPC metadata).
        authorization: The credentials ("Bearer ..."), None when there are none.

    Raises:
        HttpError: 401 with `WWW-Authenticate` for missing or bad credentials.
    """
    try:
        credential = bearer_credential(authorization)
        if not is_api_key(credential):
            request[PRINCIPAL_KEY] = await request.app[VERIFIER].verify(credential)
    except MeshError as error:
        challenge = bearer_challenge(error.message if authorization is not None else None)
        raise HttpError(error, {"WWW-Authenticate": challenge}) from None
    request[GRPC_METADATA_KEY] = ((METADATA_KEY, f"Bearer {credential}"),)


def grpc_metadata(request: web.Request) -> tuple[tuple[str, str], ...]:
    """Returns the gRPC metadata that carries the caller's token to meeting_service.

    Args:
        request: An authenticated request.

    Returns:
        The metadata pairs.
    """
    metadata: tuple[tuple[str, str], ...] = request[GRPC_METADATA_KEY]
    return metadata
