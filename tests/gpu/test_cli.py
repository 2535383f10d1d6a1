"""`meeting-mesh certs`, `gpu-node` and `gpu-proxy` as an operator runs them."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

from grpc_health.v1 import health_pb2

from gen.gpu.v1 import gpu_pb2
from gpu_client.channel import GpuStubs, connect
from mesh_common.ports import free_port
from mesh_common.tls import KeyPair
from tests.support.gpu import WAIT, wait_health

COMMAND = [sys.executable, "-m", "meeting_mesh.cli"]


async def start(args: list[str], env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *COMMAND, *args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )


async def stop(process: asyncio.subprocess.Process) -> tuple[int | None, str]:
    process.send_signal(signal.SIGTERM)
    output, _ = await asyncio.wait_for(process.communicate(), WAIT)
    return process.returncode, output.decode()


async def test_node_and_proxy_from_the_command_line(tmp_path: Path) -> None:
    env = {**os.environ, "MESH_DATA_DIR": str(tmp_path), "MESH_LOG_FORMAT": "json"}
    certs_cli = await start(["certs"], env)
    assert await asyncio.wait_for(certs_cli.wait(), WAIT) == 0
    node_port, proxy_port = free_port(), free_port()
    env |= {
        "MESH_GPU_NODE_PORT": str(node_port),
        "MESH_GPU_PROXY_PORT": str(proxy_port),
        "MESH_GPU_NODES": f"127.0.0.1:{node_port}",
    }
    node = await start(["gpu-node", "--engine", "mock"], env)
    proxy = await start(["gpu-proxy"], env)
    try:
        certs = tmp_path / "certs"
        client = KeyPair(certs / "meeting-service.pem", certs / "meeting-service.key")
        async with connect(f"127.0.0.1:{proxy_port}", client, certs / "ca.pem") as channel:
            await asyncio.wait_for(channel.channel_ready(), WAIT)
            await wait_health(channel, health_pb2.HealthCheckResponse.SERVING)
            summary = await GpuStubs.of(channel).summarization.Summarize(
                gpu_pb2.SummarizeRequest(
                    lines=[gpu_pb2.TranscriptLine(text="Erin will review the draft.")]
                ),
                timeout=WAIT,
            )
            assert [a.owner for a in summary.action_items] == ["Erin"]
    finally:
        proxy_status, proxy_log = await stop(proxy)
        node_status, node_log = await stop(node)
    assert (proxy_status, node_status) == (0, 0), proxy_log + node_log
    assert '"service": "gpu-proxy"' in proxy_log
    assert '"service": "gpu-node"' in node_log


def test_bad_settings_are_all_named_at_once(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "MESH_DATA_DIR": str(tmp_path),
        "MESH_GPU_NODES": "nowhere",
        "MESH_GPU_PROXY_MAX_ATTEMPTS": "0",
    }
    result = subprocess.run(
        [*COMMAND, "gpu-proxy"], env=env, capture_output=True, text=True, timeout=WAIT
    )
    assert result.returncode == 2
    assert "MESH_GPU_NODES" in result.stdout
    assert "MESH_GPU_PROXY_MAX_ATTEMPTS" in result.stdout


def test_a_node_without_certificates_says_how_to_make_them(tmp_path: Path) -> None:
    env = {**os.environ, "MESH_DATA_DIR": str(tmp_path), "MESH_LOG_FORMAT": "text"}
    result = subprocess.run(
        [*COMMAND, "gpu-node", "--engine", "mock"],
        env=env,
        capture_output=True,
        text=True,
        timeout=WAIT,
    )
    assert result.returncode == 2
    assert "meeting-mesh certs" in result.stdout
