"""A plaintext port that serves only `grpc.health.v1`, for probes that cannot speak mTLS.

The kubelet's `grpc:` probe presents no client certificate, which the mTLS-only servers
(gpu_proxy, gpu_node) require. This second port answers the same health servicer as the
main port, so it reports exactly what the main port reports (NOT_SERVING during a drain,
the liveness status while the process runs); it has no reflection and no other service,
so every other method is UNIMPLEMENTED and nothing but a status leaves it. Who may reach
it is a network matter (deploy/kubernetes/README.md: only the node's kubelet).
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2_grpc


@dataclass
class HealthPort:
    """A started health-only server.

    Attributes:
        server: Its gRPC server.
        port: The bound port (the real one when 0 was asked for).
    """

    server: grpc.aio.Server
    port: int

    async def stop(self) -> None:
        """Stops answering at once (a health check has nothing to finish)."""
        await self.server.stop(None)


async def serve_health_port(
    host: str, port: int, servicer: health.aio.HealthServicer
) -> HealthPort:
    """Starts a plaintext server with only the given health servicer.

    Args:
        host: Interface to listen on.
        port: Port to listen on; 0 picks a free one.
        servicer: The main server's health servicer, whose statuses this port reports.

    Returns:
        The started server; stop it after the main server.

    Raises:
        RuntimeError: The port could not be bound.
    """
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    address = f"{host}:{port}"
    bound = server.add_insecure_port(address)
    if bound == 0:
        raise RuntimeError(f"cannot listen on {address} (health port)")
    await server.start()
    return HealthPort(server, bound)
