"""Starting and stopping the GPU proxy: the nodes, the forwarder, the inbound mTLS server.

`run_gpu_proxy` is what the command line, the dev mesh and the tests all use.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import grpc
from grpc_health.v1 import health

from gen.gpu.v1 import gpu_pb2, gpu_pb2_grpc
from gpu_proxy.balancer import Balancer
from gpu_proxy.capabilities import CapabilitiesServicer
from gpu_proxy.credentials import CredentialError, CredentialFiles
from gpu_proxy.discovery import NodeDiscovery, Resolve, resolve_addresses
from gpu_proxy.forwarder import Forwarder, RetryPolicy
from gpu_proxy.metrics import ProxyCollector
from gpu_proxy.node import Node
from gpu_proxy.pool import ChannelPool
from gpu_proxy.servicers import (
    DIARIZATION,
    RECOGNITION,
    SUMMARIZATION,
    ProxyServicers,
    generic_handlers,
)
from gpu_proxy.settings import GpuProxySettings
from mesh_common.grpc_server import add_health_and_reflection, set_serving
from mesh_common.health_port import HealthPort, serve_health_port
from mesh_common.logging import logger
from mesh_common.metrics_endpoint import MetricsEndpoint
from mesh_common.telemetry import Telemetry, create_telemetry
from mesh_common.tls import server_credentials

# The contract allows 1 MiB of audio per message; leave room for the envelope.
MAX_MESSAGE_BYTES = (1 << 20) + 4096

CAPABILITIES = gpu_pb2.DESCRIPTOR.services_by_name["CapabilitiesService"].full_name
SERVICE_NAMES: tuple[str, ...] = (RECOGNITION, DIARIZATION, SUMMARIZATION, CAPABILITIES)


@dataclass
class RunningProxy:
    """A started proxy.

    Attributes:
        server: The gRPC server.
        port: The bound port.
        nodes: The nodes in use (breaker state, load, probes): the configured ones in
            their order, then those found by DNS; changed in place as nodes join or leave.
        balancer: Queue and caps.
        credentials: The client certificate files in use (`generation` counts reloads).
        telemetry: Its tracer provider and metrics registry.
        metrics: Its `/metrics` endpoint.
        health: Its health servicer.
        health_port: Its plaintext health-only server, when the settings ask for one.
    """

    server: grpc.aio.Server
    port: int
    nodes: Sequence[Node]
    balancer: Balancer
    credentials: CredentialFiles
    telemetry: Telemetry
    metrics: MetricsEndpoint
    health: health.aio.HealthServicer
    discovery: NodeDiscovery | None = None
    health_port: HealthPort | None = None
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def address(self) -> str:
        """`127.0.0.1:<port>`-style address to reach it on loopback."""
        return f"127.0.0.1:{self.port}"

    def node(self, target: str) -> Node:
        """Returns the node with this "host:port"."""
        return next(node for node in self.nodes if node.target == target)

    async def stop(self, grace: float | None = 5.0) -> None:
        """Stops serving, then closes the channels to the nodes.

        Args:
            grace: Seconds in-flight calls get to finish after health turns NOT_SERVING;
                None cancels them at once.
        """
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if grace is not None:
            await set_serving(self.health, SERVICE_NAMES, False)
        await self.server.stop(grace)
        if self.health_port is not None:
            await self.health_port.stop()
        if self.discovery is not None:
            await self.discovery.close()
        await asyncio.gather(*(node.close() for node in self.nodes))
        await self.metrics.close()


@asynccontextmanager
async def run_gpu_proxy(
    settings: GpuProxySettings,
    *,
    telemetry: Telemetry | None = None,
    resolve: Resolve = resolve_addresses,
) -> AsyncIterator[RunningProxy]:
    """Runs the proxy for the duration of the block.

    Args:
        settings: Nodes, certificates, caps, timeouts and breaker thresholds.
        telemetry: Tracing and metrics; one for "gpu-proxy" from the `OTEL_*` environment
            when None.
        resolve: How `gpu_nodes_dns` is resolved (the system resolver; tests pass their
            own).

    Yields:
        The running proxy.

    Raises:
        CredentialError: The certificate files are missing or invalid.
        RuntimeError: The port could not be bound.
    """
    owns_telemetry = telemetry is None
    telemetry = telemetry or create_telemetry("gpu-proxy")
    credentials = CredentialFiles(settings.identity(), settings.ca())
    balancer = Balancer(
        max_streams=settings.gpu_proxy_max_streams_per_node,
        queue_length=settings.gpu_proxy_queue_length,
        queue_timeout=settings.gpu_proxy_queue_timeout_s,
        retry_after=settings.gpu_proxy_retry_after_s,
        unavailable_retry_after=settings.gpu_proxy_probe_interval_s,
        max_live_streams=settings.gpu_proxy_max_live_streams_per_node,
    )
    health_changed = asyncio.Event()

    def on_nodes_change() -> None:
        balancer.wake()
        health_changed.set()

    def on_node_change(_: Node) -> None:
        on_nodes_change()

    def make_node(target: str) -> Node:
        return Node(
            ChannelPool(
                target,
                settings.gpu_proxy_channels_per_node,
                lambda: credentials.credentials,
                settings.tls_name_for(target),
                MAX_MESSAGE_BYTES,
                telemetry.trace_channel,
            ),
            breaker_failures=settings.gpu_proxy_breaker_failures,
            probe_interval=settings.gpu_proxy_probe_interval_s,
            probe_interval_max=settings.gpu_proxy_probe_interval_max_s,
            probe_timeout=settings.gpu_proxy_probe_timeout_s,
            health_interval=settings.gpu_proxy_health_interval_s,
            on_change=on_node_change,
        )

    nodes = [make_node(target) for target in settings.node_targets()]
    discovery = (
        NodeDiscovery(
            settings.gpu_nodes_dns,
            settings.node_targets(),
            nodes,
            make_node,
            settings.gpu_nodes_dns_interval_s,
            on_nodes_change,
            resolve,
        )
        if settings.gpu_nodes_dns
        else None
    )
    balancer.nodes = nodes
    telemetry.registry.register(ProxyCollector(nodes, balancer))
    forwarder = Forwarder(
        balancer,
        RetryPolicy(
            settings.gpu_proxy_max_attempts,
            settings.gpu_proxy_backoff_initial_s,
            settings.gpu_proxy_backoff_max_s,
        ),
    )
    server = grpc.aio.server(
        interceptors=telemetry.grpc_server_interceptors(),
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.so_reuseport", 0),
        ],
    )
    servicers = ProxyServicers(forwarder, settings.gpu_proxy_replay_buffer_bytes)
    server.add_generic_rpc_handlers(generic_handlers(servicers))
    gpu_pb2_grpc.add_CapabilitiesServiceServicer_to_server(
        CapabilitiesServicer(nodes, settings.gpu_proxy_probe_timeout_s), server
    )
    health_servicer = await add_health_and_reflection(server, SERVICE_NAMES)
    address = f"{settings.gpu_proxy_host}:{settings.gpu_proxy_port}"
    port = server.add_secure_port(address, server_credentials(settings.identity(), settings.ca()))
    if port == 0:
        raise RuntimeError(f"cannot listen on {address}")
    metrics = await telemetry.serve_metrics(
        settings.gpu_proxy_host, settings.gpu_proxy_metrics_port
    )

    await asyncio.gather(*(node.start() for node in nodes))
    if discovery is not None:
        await discovery.refresh()
    await server.start()
    proxy = RunningProxy(
        server, port, nodes, balancer, credentials, telemetry, metrics, health_servicer, discovery
    )
    if settings.gpu_proxy_health_port is not None:
        proxy.health_port = await serve_health_port(
            settings.gpu_proxy_host, settings.gpu_proxy_health_port, health_servicer
        )
    if discovery is not None:
        proxy._tasks.append(asyncio.create_task(discovery.run(), name="gpu node discovery"))
    proxy._tasks.append(
        asyncio.create_task(_follow_health(health_servicer, balancer, health_changed))
    )
    proxy._tasks.append(
        asyncio.create_task(
            _watch_certificates(credentials, nodes, settings.gpu_proxy_cert_check_interval_s)
        )
    )
    logger.bind(
        port=port,
        metrics_port=metrics.port,
        health_port=proxy.health_port.port if proxy.health_port else None,
        nodes=[node.target for node in nodes],
    ).info("gpu proxy serving (mTLS)")
    try:
        yield proxy
    finally:
        await proxy.stop(grace=1.0)
        if owns_telemetry:
            telemetry.shutdown()


async def _follow_health(
    servicer: health.aio.HealthServicer, balancer: Balancer, changed: asyncio.Event
) -> None:
    serving: bool | None = None
    while True:
        usable = balancer.any_usable()
        if usable != serving:
            serving = usable
            await set_serving(servicer, SERVICE_NAMES, usable)
            logger.info("gpu proxy {}", "SERVING" if usable else "NOT_SERVING: no usable node")
        await changed.wait()
        changed.clear()


async def _watch_certificates(
    credentials: CredentialFiles, nodes: Sequence[Node], interval: float
) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            changed = credentials.refresh()
        except CredentialError as error:
            logger.warning("certificate files changed but cannot be used yet: {}", error)
            continue
        if changed:
            logger.info("certificate files changed; reconnecting to gpu nodes")
            for node in nodes:
                node.pool.retire()
