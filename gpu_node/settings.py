"""Settings of a GPU node (`meeting-mesh gpu-node`), from `MESH_GPU_NODE_*` variables."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from mesh_common.settings import CommonSettings
from mesh_common.tls import KeyPair

EngineName = Literal["mock", "whisper", "auto"]


class GpuNodeSettings(CommonSettings):
    """What a GPU node reads at start.

    Attributes:
        gpu_node_host: Interface to listen on.
        gpu_node_port: Port to listen on; 0 picks a free one (tests).
        gpu_node_metrics_port: Port of the Prometheus `/metrics` endpoint (HTTP, on
            `gpu_node_host`); 0 picks a free one.
        gpu_node_health_port: Port of a plaintext server with only `grpc.health.v1` (on
            `gpu_node_host`), for probes without a client certificate such as the kubelet's
            `grpc:` probe; None (the default) for none, 0 picks a free one.
        gpu_node_cert: The node's certificate (PEM); default `<data_dir>/certs/gpu-node.pem`.
        gpu_node_key: Its private key; default `<data_dir>/certs/gpu-node.key`.
        gpu_node_ca: The CA that client certificates must chain to; default
            `<data_dir>/certs/ca.pem`.
        gpu_node_engine: "mock", "whisper", or "auto" (whisper when installed, else mock).
        gpu_node_max_concurrent_calls: Calls served at once, live recognition aside; more
            fail fast with RESOURCE_EXHAUSTED (the proxy keeps its own, lower, cap per node).
        gpu_node_max_concurrent_live_calls: Live recognition streams served at once, on top
            of the other calls (`mesh_common.lanes`), so live audio never waits behind
            batch work.
        gpu_node_max_diarize_s: Longest recording one Diarize call may send; the whole
            recording is held in memory (4 bytes per sample, twice that for a moment
            when it arrives without spans and is joined into one array).
    """

    gpu_node_host: str = "127.0.0.1"
    gpu_node_port: int = Field(default=50061, ge=0, le=65535)
    gpu_node_metrics_port: int = Field(default=9161, ge=0, le=65535)
    gpu_node_health_port: int | None = Field(default=None, ge=0, le=65535)
    gpu_node_cert: Path | None = None
    gpu_node_key: Path | None = None
    gpu_node_ca: Path | None = None
    gpu_node_engine: EngineName = "auto"
    gpu_node_max_concurrent_calls: int = Field(default=16, ge=1)
    gpu_node_max_concurrent_live_calls: int = Field(default=16, ge=1)
    gpu_node_max_diarize_s: float = Field(default=4 * 3600.0, gt=0)

    def identity(self) -> KeyPair:
        """Returns the node's certificate and key files."""
        certs = self.data_dir / "certs"
        return KeyPair(
            self.gpu_node_cert or certs / "gpu-node.pem",
            self.gpu_node_key or certs / "gpu-node.key",
        )

    def client_ca(self) -> Path:
        """Returns the CA file client certificates are checked against."""
        return self.gpu_node_ca or self.data_dir / "certs" / "ca.pem"
