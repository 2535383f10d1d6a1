"""Readiness probe of the mTLS-only services (gpu-node, gpu-proxy), run by the kubelet.

The kubelet's own `grpc:` probe presents no client certificate, so these servers refuse
it; this one checks `grpc.health.v1` on localhost with the pod's own certificate, which
cert-manager issues for both server and client use. The argument is the service's variable
prefix: `MESH_GPU_NODE` reads `MESH_GPU_NODE_PORT`, `_CERT`, `_KEY` and `_CA`. Exit status
0 means SERVING; anything else (NOT_SERVING, refused, timed out) is 1.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2

TIMEOUT_S = 2.0


def serving(prefix: str) -> bool:
    """Returns whether the server on this pod reports its overall status as SERVING.

    Args:
        prefix: The service's variable prefix, such as `MESH_GPU_NODE`.
    """
    port = os.environ[f"{prefix}_PORT"]
    credentials = grpc.ssl_channel_credentials(
        root_certificates=Path(os.environ[f"{prefix}_CA"]).read_bytes(),
        private_key=Path(os.environ[f"{prefix}_KEY"]).read_bytes(),
        certificate_chain=Path(os.environ[f"{prefix}_CERT"]).read_bytes(),
    )
    with grpc.secure_channel(f"localhost:{port}", credentials) as channel:
        # typeshed's HealthStub declares no methods; a typed multicallable says the same.
        check = channel.unary_unary(
            "/grpc.health.v1.Health/Check",
            request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
            response_deserializer=health_pb2.HealthCheckResponse.FromString,
        )
        try:
            reply: health_pb2.HealthCheckResponse = check(
                health_pb2.HealthCheckRequest(), timeout=TIMEOUT_S
            )
        except grpc.RpcError as error:
            print(f"health check failed: {error}", file=sys.stderr)
            return False
    print(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


if __name__ == "__main__":
    sys.exit(0 if serving(sys.argv[1]) else 1)
