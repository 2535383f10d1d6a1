"""Starting and stopping a GPU node: mTLS only, health and reflection on.

`run_gpu_node` is what the command line, the dev mesh and the tests all use, so they run
the same server the same way.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health

from gpu_node.admission import Admission
from gpu_node.engines.factory import Engines, create_engines
from gpu_node.metrics import AdmissionCollector
from gpu_node.servicers import SERVICE_NAMES, add_servicers
from gpu_node.settings import GpuNodeSettings
from mesh_common.grpc_server import add_health_and_reflection, set_serving
from mesh_common.health_port import HealthPort, serve_health_port
from mesh_common.lanes import BATCH, LIVE
from mesh_common.logging import logger
from mesh_common.metrics_endpoint import MetricsEndpoint
from mesh_common.telemetry import Telemetry, create_telemetry
from mesh_common.tls import server_credentials

# The contract allows 1 MiB of audio per message; leave room for the envelope.
MAX_MESSAGE_BYTES = (1 << 20) + 4096


@dataclass
class RunningNode:
    """A started node.

    Attributes:
        server: The gRPC server.
        port: The bound port (the real one when the settings asked for 0).
        admission: Calls in flight and started, per method: what the node is doing.
        engines: The engines it serves with.
        telemetry: Its tracer provider and metrics registry.
        metrics: Its `/metrics` endpoint.
        health_port: Its plaintext health-only server, when the settings ask for one.
    """

    server: grpc.aio.Server
    port: int
    admission: Admission
    engines: Engines
    telemetry: Telemetry
    metrics: MetricsEndpoint
    _health: health.aio.HealthServicer
    health_port: HealthPort | None = None

    @property
    def address(self) -> str:
        """`127.0.0.1:<port>`-style address to reach it on loopback."""
        return f"127.0.0.1:{self.port}"

    async def stop(self, grace: float | None = 5.0) -> None:
        """Stops serving.

        Args:
            grace: Seconds in-flight calls get to finish after health turns NOT_SERVING;
                None cancels them at once, as a crash would look to callers.
        """
        if grace is not None:
            await set_serving(self._health, SERVICE_NAMES, False)
        await self.server.stop(grace)
        if self.health_port is not None:
            await self.health_port.stop()
        await self.metrics.close()


@asynccontextmanager
async def run_gpu_node(
    settings: GpuNodeSettings,
    engines: Engines | None = None,
    *,
    telemetry: Telemetry | None = None,
) -> AsyncIterator[RunningNode]:
    """Runs a node for the duration of the block.

    Args:
        settings: Where to listen, which certificates, which engine, limits.
        engines: Engines to use instead of creating those named in the settings.
        telemetry: Tracing and metrics; one for "gpu-node" from the `OTEL_*` environment
            when None.

    Yields:
        The running node.

    Raises:
        RuntimeError: The port could not be bound.
    """
    engines = engines or create_engines(settings.gpu_node_engine)
    admission = Admission(
        {
            BATCH: settings.gpu_node_max_concurrent_calls,
            LIVE: settings.gpu_node_max_concurrent_live_calls,
        }
    )
    owns_telemetry = telemetry is None
    telemetry = telemetry or create_telemetry("gpu-node")
    telemetry.registry.register(AdmissionCollector(admission))
    server = grpc.aio.server(
        interceptors=telemetry.grpc_server_interceptors(),
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.so_reuseport", 0),
        ],
    )
    add_servicers(server, engines, admission, settings.gpu_node_max_diarize_s)
    health_servicer = await add_health_and_reflection(server, SERVICE_NAMES)
    address = f"{settings.gpu_node_host}:{settings.gpu_node_port}"
    credentials = server_credentials(settings.identity(), settings.client_ca())
    port = server.add_secure_port(address, credentials)
    if port == 0:
        raise RuntimeError(f"cannot listen on {address}")
    metrics = await telemetry.serve_metrics(settings.gpu_node_host, settings.gpu_node_metrics_port)
    await server.start()
    await set_serving(health_servicer, SERVICE_NAMES, True)
    node = RunningNode(server, port, admission, engines, telemetry, metrics, health_servicer)
    if settings.gpu_node_health_port is not None:
        node.health_port = await serve_health_port(
            settings.gpu_node_host, settings.gpu_node_health_port, health_servicer
        )
    logger.bind(
        port=port,
        metrics_port=metrics.port,
        health_port=node.health_port.port if node.health_port else None,
        engine=engines.recognition.name,
    ).info("gpu node serving (mTLS)")
    try:
        yield node
    finally:
        await node.stop(grace=1.0)
        if owns_telemetry:
            telemetry.shutdown()
