"""Two replicas of every service, each its own process, over one PostgreSQL and one S3.

`ReplicaMesh` starts two gpu-nodes (mock engine), two gpu-proxies (each over both nodes),
two meeting-services (both reaching both proxies, in opposite orders) and two gateways
(both reaching both meeting-services, in opposite orders), as `meeting-mesh dev` starts
its children (`meeting_mesh.dev.Child`). A gRPC target listing two addresses
(`ipv4:a,b`) connects to the first that answers and moves to the other when it goes, so
every replica can die without its callers reconfiguring. A replica can be signalled and
started again on the same port.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator
from pathlib import Path

from meeting_mesh.dev import Child, HealthProbe, grpc_probe, http_probe, wait_healthy
from meeting_mesh.seaweedfs import SeaweedFS
from mesh_common.ports import free_port
from mesh_common.tls import ensure_certificates
from tests.support.meeting import TEST_JWT_SECRET

START_WITHIN_S = 90.0
KINDS = ("gpu-node", "gpu-proxy", "meeting-service", "gateway")


def _either(ports: list[int], first: int) -> str:
    ordered = ports[first:] + ports[:first]
    return "ipv4:" + ",".join(f"127.0.0.1:{port}" for port in ordered)


class ReplicaMesh:
    """The eight processes, by name ("gateway-1", "gpu-node-2", ...), in start order.

    Args:
        directory: Scratch directory (certificates, logs).
        database_url: The PostgreSQL database every meeting-service shares.
        s3: The S3 server; `bucket` holds the recordings.
        bucket: The bucket.
    """

    def __init__(self, directory: Path, database_url: str, s3: SeaweedFS, bucket: str) -> None:
        certs = ensure_certificates(directory / "certs")
        self.directory = directory
        ports = {kind: [free_port(), free_port()] for kind in KINDS}
        self.gateway_urls = [f"http://127.0.0.1:{port}" for port in ports["gateway"]]
        common = {
            "MESH_DATA_DIR": str(directory),
            "MESH_JWT_SECRET": TEST_JWT_SECRET,
            "MESH_LOG_FORMAT": "text",
        }
        proxy_tls = (certs["gpu-proxy"], certs["ca"].cert)
        client_tls = (certs["meeting-service"], certs["ca"].cert)
        self.children: dict[str, Child] = {}
        for i, port in enumerate(ports["gpu-node"]):
            self._add(
                f"gpu-node-{i + 1}",
                "gpu-node",
                {
                    **common,
                    "MESH_GPU_NODE_PORT": str(port),
                    "MESH_GPU_NODE_METRICS_PORT": "0",
                    "MESH_GPU_NODE_ENGINE": "mock",
                },
                grpc_probe(f"127.0.0.1:{port}", "", proxy_tls),
            )
        for i, port in enumerate(ports["gpu-proxy"]):
            self._add(
                f"gpu-proxy-{i + 1}",
                "gpu-proxy",
                {
                    **common,
                    "MESH_GPU_PROXY_PORT": str(port),
                    "MESH_GPU_PROXY_METRICS_PORT": "0",
                    "MESH_GPU_NODES": ",".join(f"127.0.0.1:{p}" for p in ports["gpu-node"]),
                    "MESH_GPU_PROXY_PROBE_INTERVAL_S": "0.2",
                    "MESH_GPU_PROXY_PROBE_INTERVAL_MAX_S": "1",
                    "MESH_GPU_PROXY_HEALTH_INTERVAL_S": "1",
                    "MESH_GPU_PROXY_BACKOFF_INITIAL_S": "0.05",
                    "MESH_GPU_PROXY_BACKOFF_MAX_S": "0.5",
                    "MESH_GRACE_S": "5",
                },
                grpc_probe(f"127.0.0.1:{port}", "", client_tls),
            )
        for i, port in enumerate(ports["meeting-service"]):
            self._add(
                f"meeting-service-{i + 1}",
                "meeting-service",
                {
                    **common,
                    **s3.settings(bucket),
                    # The smallest part S3 allows: an upload cut after it resumes from it.
                    "MESH_S3_PART_BYTES": str(5 * 1024 * 1024),
                    "DATABASE_URL": database_url,
                    "MESH_MEETING_PORT": str(port),
                    "MESH_MEETING_METRICS_PORT": "0",
                    "MESH_GPU_PROXY_TARGET": _either(ports["gpu-proxy"], i),
                    "MESH_GPU_PROXY_TLS_NAME": "gpu-proxy",
                    "MESH_DB_POOL_MAX": "6",
                    "MESH_GRACE_S": "5",
                    "MESH_HEALTH_INTERVAL_S": "0.5",
                    "MESH_PIPELINE_WORKERS": "2",
                    "MESH_PIPELINE_POLL_INTERVAL_S": "0.1",
                    "MESH_PIPELINE_LEASE_S": "3",
                    "MESH_PIPELINE_BACKOFF_INITIAL_S": "0.2",
                    "MESH_PIPELINE_BACKOFF_MAX_S": "1",
                    "MESH_PIPELINE_MAX_ATTEMPTS": "20",
                },
                grpc_probe(f"127.0.0.1:{port}", "meeting.v1.MeetingService", None),
            )
        for i, port in enumerate(ports["gateway"]):
            self._add(
                f"gateway-{i + 1}",
                "gateway",
                {
                    **common,
                    "MESH_GATEWAY_PORT": str(port),
                    "MESH_MEETING_SERVICE_TARGET": _either(ports["meeting-service"], i),
                    "MESH_SHUTDOWN_GRACE_S": "5",
                    "MESH_SSE_HEARTBEAT_S": "1",
                },
                http_probe(f"http://127.0.0.1:{port}/readyz"),
            )

    def _add(self, name: str, subcommand: str, env: dict[str, str], probe: HealthProbe) -> None:
        self.children[name] = Child(
            name,
            subcommand,
            env,
            probe,
            log=self.directory / f"{name}.log",
        )

    async def start(self, name: str) -> None:
        """Starts one replica and waits until it is healthy."""
        child = self.children[name]
        await child.start()
        await wait_healthy(child, START_WITHIN_S)

    async def start_all(self) -> None:
        """Starts every replica, a kind at a time (the ones a kind calls first)."""
        for kind in KINDS:
            await asyncio.gather(*(self.start(f"{kind}-{i}") for i in (1, 2)))

    async def stop(self, name: str, sig: signal.Signals) -> int:
        """Signals one replica's process group and waits for it to exit; returns its status."""
        child = self.children[name]
        assert child.process is not None
        log = self.directory / f"{name}.log"
        logged = log.stat().st_size if log.exists() else 0
        child.signal_group(sig)
        try:
            async with asyncio.timeout(30.0):
                return await child.process.wait()
        except TimeoutError:
            with log.open("rb") as output:
                output.seek(logged)
                since = output.read().decode(errors="replace").splitlines()
            shown = "\n".join([*since[:40], "...", *since[-20:]] if len(since) > 60 else since)
            message = f"{name} still runs 30 s after {sig.name}; its log since:\n{shown}"
            raise AssertionError(message) from None

    async def close(self) -> None:
        """Kills whatever still runs."""
        for child in reversed(self.children.values()):
            if child.process is not None and child.process.returncode is None:
                child.signal_group(signal.SIGKILL)
                await child.process.wait()

    def logs(self) -> str:
        """The last lines of every replica's log (for a failure's message)."""
        tails = []
        for name in self.children:
            path = self.directory / f"{name}.log"
            if path.exists():
                lines = path.read_text(errors="replace").splitlines()[-15:]
                tails.append(f"--- {name}\n" + "\n".join(lines))
        return "\n".join(tails)


@contextlib.asynccontextmanager
async def replica_mesh(
    directory: Path, database_url: str, s3: SeaweedFS, bucket: str
) -> AsyncIterator[ReplicaMesh]:
    """Runs the replicas for the duration of the block; nothing outlives it."""
    mesh = ReplicaMesh(directory, database_url, s3, bucket)
    try:
        await mesh.start_all()
        yield mesh
    finally:
        await mesh.close()
