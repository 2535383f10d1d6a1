"""Cross-origin requests from browsers (CORS), for the origins the settings allow.

An origin is allowed when it equals one of `GatewaySettings.cors_origins`, or matches one
that ends in `:*` (`http://localhost:*`: that scheme and host on any port). With no origin
configured the gateway sends no CORS header at all, so browsers keep pages of other
origins out. Preflights (`OPTIONS` with `Access-Control-Request-Method`) are answered here
for every path without authentication, since browsers send them without credentials;
every other response to an allowed origin names it in `Access-Control-Allow-Origin`.
"""

from __future__ import annotations

from collections.abc import Sequence

from aiohttp import hdrs, web
from aiohttp.typedefs import Middleware
from yarl import URL

from gateway.auth import Handler

# Every method the API serves, and every request header it reads.
ALLOWED_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
ALLOWED_HEADERS = (
    "Authorization",
    "Content-Type",
    "Last-Event-ID",
    "Upload-Offset",
    "Upload-Length",
    "X-Request-Id",
)
# Response headers a page may read besides the CORS-safelisted ones.
EXPOSED_HEADERS = (
    "Upload-Offset",
    "Upload-Length",
    "Upload-Complete",
    "Location",
    "Retry-After",
    "Content-Disposition",
    "WWW-Authenticate",
)
# How long a browser may reuse a preflight's answer.
PREFLIGHT_MAX_AGE_S = 600
_ANY_PORT = ":*"


class OriginPolicy:
    """The origins allowed to call the API from a browser.

    Args:
        origins: Exact origins (`https://app.example.com`) and origins with any port
            (`http://localhost:*`).
    """

    def __init__(self, origins: Sequence[str]) -> None:
        self._exact = {o.rstrip("/") for o in origins if not o.endswith(_ANY_PORT)}
        self._any_port = {o.removesuffix(_ANY_PORT) for o in origins if o.endswith(_ANY_PORT)}

    @property
    def enabled(self) -> bool:
        """Whether any origin is allowed."""
        return bool(self._exact or self._any_port)

    def allows(self, origin: str) -> bool:
        """Whether a request's `Origin` is allowed.

        Args:
            origin: The header's value.

        Returns:
            True for an allowed origin.
        """
        if origin in self._exact:
            return True
        try:
            url = URL(origin)
        except ValueError:
            return False
        if not url.scheme or not url.host or url.path not in ("", "/"):
            return False
        return f"{url.scheme}://{url.raw_host}" in self._any_port


def cors_middlewares(policy: OriginPolicy) -> list[Middleware]:
    """Returns the middleware that answers preflights of allowed origins (none without).

    Args:
        policy: The allowed origins.

    Returns:
        The aiohttp middlewares to put before the error layer and authentication.
    """
    if not policy.enabled:
        return []

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = request.headers.get(hdrs.ORIGIN)
        if (
            request.method == hdrs.METH_OPTIONS
            and origin is not None
            and hdrs.ACCESS_CONTROL_REQUEST_METHOD in request.headers
            and policy.allows(origin)
        ):
            return web.Response(
                status=204,
                headers={
                    hdrs.ACCESS_CONTROL_ALLOW_ORIGIN: origin,
                    hdrs.ACCESS_CONTROL_ALLOW_METHODS: ", ".join(ALLOWED_METHODS),
                    hdrs.ACCESS_CONTROL_ALLOW_HEADERS: ", ".join(ALLOWED_HEADERS),
                    hdrs.ACCESS_CONTROL_MAX_AGE: str(PREFLIGHT_MAX_AGE_S),
                    hdrs.VARY: "Origin",
                },
            )
        return await handler(request)

    return [middleware]


def add_allowed_origin_headers(app: web.Application, policy: OriginPolicy) -> None:
    """Names an allowed origin on every response to it, errors and streams included.

    Args:
        app: The application (before it starts).
        policy: The allowed origins.
    """
    if not policy.enabled:
        return

    async def allow(request: web.Request, response: web.StreamResponse) -> None:
        origin = request.headers.get(hdrs.ORIGIN)
        if origin is None or not policy.allows(origin):
            return
        response.headers[hdrs.ACCESS_CONTROL_ALLOW_ORIGIN] = origin
        response.headers[hdrs.ACCESS_CONTROL_EXPOSE_HEADERS] = ", ".join(EXPOSED_HEADERS)
        response.headers.add(hdrs.VARY, "Origin")

    app.on_response_prepare.append(allow)
