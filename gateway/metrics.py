"""The gateway's own Prometheus series, beside the per-route ones of `Telemetry`.

- `mesh_sse_streams_open`: event streams (`/events`) being served;
- `mesh_websockets_open`: live sessions (`/live`) being served;
- `mesh_gateway_upload_bytes_total`: recording bytes read from upload bodies.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class GatewayMetrics:
    """The series above, registered in the gateway's registry.

    Args:
        registry: The gateway's registry (`Telemetry.registry`).
    """

    def __init__(self, registry: CollectorRegistry) -> None:
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
