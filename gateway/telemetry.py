"""The gateway's request telemetry: a SERVER span, an access line and the route metrics.

Our own middleware rather than OpenTelemetry's aiohttp one, which collects its request
attributes and metrics even for a span nobody records. Attributes follow the HTTP semantic
conventions and are set only on a recorded span; the URL is the path without its query.
"""

from __future__ import annotations

import time

from aiohttp import web
from aiohttp.typedefs import Middleware
from opentelemetry import trace
from prometheus_client import Counter, Histogram

from gateway.auth import PRINCIPAL_KEY, Handler
from gateway.metrics import GatewayMetrics
from mesh_common.telemetry import Telemetry, log_http_access, server_span


def telemetry_middleware(telemetry: Telemetry, metrics: GatewayMetrics) -> Middleware:
    """Returns the middleware that traces, counts and logs every request.

    Put it before the error and auth middlewares, so that rejected requests are traced,
    counted and logged with the status they were answered with.

    Args:
        telemetry: The gateway's telemetry (its tracer provider).
        metrics: The gateway's series (`mesh_http_*`).

    Returns:
        The aiohttp middleware.
    """
    tracer = telemetry.tracer("aiohttp")
    series = _RouteSeries(metrics)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        route = request.match_info.route.resource
        template = route.canonical if route is not None else "<unmatched>"
        status = 500
        with server_span(tracer, f"{request.method} {template}", request.headers) as span:
            try:
                response = await handler(request)
                status = response.status
                return response
            except web.HTTPException as exc:
                status = exc.status
                raise
            finally:
                elapsed = time.perf_counter() - started
                if span.is_recording():
                    span.set_attributes(
                        {
                            "http.request.method": request.method,
                            "http.route": template,
                            "url.path": request.path,
                            "http.response.status_code": status,
                            "network.protocol.version": f"{request.version.major}."
                            f"{request.version.minor}",
                        }
                    )
                    if status >= 500:
                        span.set_status(trace.Status(trace.StatusCode.ERROR))
                count, latency = series(template, request.method, status)
                count.inc()
                latency.observe(elapsed)
                principal = request.get(PRINCIPAL_KEY)
                user = principal.user if principal is not None else ""
                log_http_access(request.method, template, status, elapsed, user)

    return middleware


class _RouteSeries:
    """Each (route, method, status)'s request counter and latency histogram, looked up once.

    The labels are the ones the registry keeps a series for anyway, so this holds no more
    than the registry does.
    """

    def __init__(self, metrics: GatewayMetrics) -> None:
        self._metrics = metrics
        self._series: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    def __call__(self, route: str, method: str, status: int) -> tuple[Counter, Histogram]:
        key = (route, method, status)
        found = self._series.get(key)
        if found is None:
            found = self._series[key] = (
                self._metrics.http_requests.labels(route, method, str(status)),
                self._metrics.http_latency.labels(route, method),
            )
        return found
