"""Settings of the GPU proxy (`meeting-mesh gpu-proxy`), from `MESH_GPU_PROXY_*` variables."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from pydantic import Field, field_validator, model_validator

from mesh_common.settings import CommonSettings
from mesh_common.tls import KeyPair


class GpuProxySettings(CommonSettings):
    """What the GPU proxy reads at start.

    Attributes:
        gpu_proxy_host: Interface to listen on.
        gpu_proxy_port: Port to listen on; 0 picks a free one (tests).
        gpu_proxy_metrics_port: Port of the Prometheus `/metrics` endpoint (HTTP, on
            `gpu_proxy_host`); 0 picks a free one.
        gpu_proxy_health_port: Port of a plaintext server with only `grpc.health.v1` (on
            `gpu_proxy_host`), for probes without a client certificate such as the
            kubelet's `grpc:` probe; None (the default) for none, 0 picks a free one.
        gpu_nodes: GPU nodes that are always used, "host:port,host:port" (`MESH_GPU_NODES`;
            may be empty when `gpu_nodes_dns` is set).
        gpu_nodes_dns: A DNS name whose every address is a GPU node, "name:port"
            (`MESH_GPU_NODES_DNS`, e.g. a Kubernetes headless Service); "" for none.
        gpu_nodes_dns_interval_s: How often that name is resolved again; nodes that
            appeared join the pool and nodes that vanished leave it.
        gpu_node_tls_name: The name checked in the certificate of a node addressed by IP
            (every node found by `gpu_nodes_dns`; the certificates of `meeting-mesh certs`
            carry "gpu-node"); nodes addressed by DNS name are checked against that name.
        gpu_proxy_cert: The proxy's certificate, presented to nodes and to callers; default
            `<data_dir>/certs/gpu-proxy.pem`.
        gpu_proxy_key: Its key; default `<data_dir>/certs/gpu-proxy.key`.
        gpu_proxy_ca: The CA that nodes' and callers' certificates must chain to; default
            `<data_dir>/certs/ca.pem`.
        gpu_proxy_cert_check_interval_s: How often the certificate files are checked for
            changes; on a change, channels to nodes are rebuilt with the new files.
        gpu_proxy_channels_per_node: Channels (TCP connections) per node.
        gpu_proxy_max_streams_per_node: Calls in flight per node, live recognition aside;
            more wait in the queue.
        gpu_proxy_max_live_streams_per_node: Live recognition streams in flight per node,
            on top of the other calls (`mesh_common.lanes`); more wait in the queue.
        gpu_proxy_queue_length: Calls that may wait for a free node; more fail at once with
            RESOURCE_EXHAUSTED and a retry hint.
        gpu_proxy_queue_timeout_s: Longest wait in the queue (or the call's deadline, if
            sooner) before RESOURCE_EXHAUSTED.
        gpu_proxy_retry_after_s: The retry hint sent with RESOURCE_EXHAUSTED.
        gpu_proxy_max_attempts: Attempts per call, across nodes, for calls that failed
            before any response.
        gpu_proxy_backoff_initial_s: First backoff between attempts (full jitter).
        gpu_proxy_backoff_max_s: Largest backoff.
        gpu_proxy_replay_buffer_bytes: Request bytes kept per call until its first response,
            to replay them on another node; a call that sends more before any response can
            no longer be retried (it fails with UNAVAILABLE if its node fails).
        gpu_proxy_breaker_failures: Consecutive failures that open a node's breaker.
        gpu_proxy_probe_interval_s: First wait between health probes of an open node.
        gpu_proxy_probe_interval_max_s: Largest wait between probes (it doubles each time).
        gpu_proxy_probe_timeout_s: Deadline of one probe (connect and health check).
        gpu_proxy_health_interval_s: How often a node in use is health-checked; a failed
            check opens its breaker.
    """

    gpu_proxy_host: str = "127.0.0.1"
    gpu_proxy_port: int = Field(default=50052, ge=0, le=65535)
    gpu_proxy_metrics_port: int = Field(default=9152, ge=0, le=65535)
    gpu_proxy_health_port: int | None = Field(default=None, ge=0, le=65535)
    gpu_nodes: str = "127.0.0.1:50061"
    gpu_nodes_dns: str = ""
    gpu_nodes_dns_interval_s: float = Field(default=10.0, gt=0)
    gpu_node_tls_name: str = "gpu-node"
    gpu_proxy_cert: Path | None = None
    gpu_proxy_key: Path | None = None
    gpu_proxy_ca: Path | None = None
    gpu_proxy_cert_check_interval_s: float = Field(default=5.0, gt=0)
    gpu_proxy_channels_per_node: int = Field(default=2, ge=1, le=64)
    gpu_proxy_max_streams_per_node: int = Field(default=4, ge=1)
    gpu_proxy_max_live_streams_per_node: int = Field(default=4, ge=1)
    gpu_proxy_queue_length: int = Field(default=32, ge=0)
    gpu_proxy_queue_timeout_s: float = Field(default=30.0, gt=0)
    gpu_proxy_retry_after_s: float = Field(default=2.0, gt=0)
    gpu_proxy_max_attempts: int = Field(default=3, ge=1)
    gpu_proxy_backoff_initial_s: float = Field(default=0.2, gt=0)
    gpu_proxy_backoff_max_s: float = Field(default=5.0, gt=0)
    gpu_proxy_replay_buffer_bytes: int = Field(default=16 << 20, ge=0)
    gpu_proxy_breaker_failures: int = Field(default=3, ge=1)
    gpu_proxy_probe_interval_s: float = Field(default=1.0, gt=0)
    gpu_proxy_probe_interval_max_s: float = Field(default=30.0, gt=0)
    gpu_proxy_probe_timeout_s: float = Field(default=2.0, gt=0)
    gpu_proxy_health_interval_s: float = Field(default=5.0, gt=0)

    @field_validator("gpu_nodes", "gpu_nodes_dns")
    @classmethod
    def _check_nodes(cls, value: str) -> str:
        targets = [part.strip() for part in value.split(",") if part.strip()]
        for target in targets:
            host, sep, port = target.rpartition(":")
            if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"{target!r} is not host:port")
        return ",".join(targets)

    @model_validator(mode="after")
    def _some_nodes(self) -> GpuProxySettings:
        if not self.gpu_nodes and not self.gpu_nodes_dns:
            raise ValueError("name at least one node as host:port, or a DNS name as name:port")
        if "," in self.gpu_nodes_dns:
            raise ValueError("MESH_GPU_NODES_DNS takes one name:port")
        return self

    def node_targets(self) -> list[str]:
        """Returns the static nodes' "host:port" targets, in the configured order."""
        return self.gpu_nodes.split(",") if self.gpu_nodes else []

    def identity(self) -> KeyPair:
        """Returns the proxy's certificate and key files."""
        certs = self.data_dir / "certs"
        return KeyPair(
            self.gpu_proxy_cert or certs / "gpu-proxy.pem",
            self.gpu_proxy_key or certs / "gpu-proxy.key",
        )

    def ca(self) -> Path:
        """Returns the CA file that nodes and callers are checked against."""
        return self.gpu_proxy_ca or self.data_dir / "certs" / "ca.pem"

    def tls_name_for(self, target: str) -> str | None:
        """Returns the certificate name to check for a node, None to use its host name.

        Args:
            target: The node's "host:port".
        """
        host = target.rpartition(":")[0].strip("[]")
        try:
            ipaddress.ip_address(host)
        except ValueError:
            return None
        return self.gpu_node_tls_name
