"""The gateway's Prometheus series, and the `/metrics` route that serves its registry.

- `mesh_http_requests_total{route,method,status}`: requests served, by route template;
- `mesh_http_request_duration_seconds{route,method}`: time to serve one (streams: until
  the stream ends);
- `mesh_sse_streams_open`: event streams (`/events`) being served;
- `mesh_websockets_open`: live sessions (`/live`) being served;
- `mesh_gateway_upload_bytes_total`: recording bytes read from upload bodies.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from mesh_common.telemetry import LATENCY_BUCKETS


class GatewayMetrics:
    """The series above, registered in the gateway's registry.

    Args:
        registry: The gateway's registry (`Telemetry.registry`).
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.http_requests = Counter(
            "mesh_http_requests",
            "HTTP requests served, by route template, method and status.",
            ["route", "method", "status"],
            registry=registry,
        )
        self.http_latency = Histogram(
            "mesh_http_request_duration_seconds",
            "Time to serve an HTTP request (streams: until the stream ends).",
            ["route", "method"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.sse_open = Gauge(
            "mesh_sse_streams_open", "Event streams being served.", registry=registry
        )
        self.websockets_open = Gauge(
            "mesh_websockets_open", "Live audio WebSockets being served.", registry=registry
        )
        self.upload_bytes = Counter(
            "mesh_gateway_upload_bytes",
            "Recording bytes read from upload bodies.",
            registry=registry,
        )


def metrics_handler(
    registry: CollectorRegistry,
) -> Callable[[web.Request], Awaitable[web.Response]]:
    """Returns the handler of `/metrics`: the registry in Prometheus text format.

    Args:
        registry: The gateway's registry.

    Returns:
        The aiohttp handler.
    """

    async def handle(_: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    return handle
