"""The readiness probe of the mTLS-only services (deploy/kubernetes/base/probes) against a
real gpu_node and gpu_proxy: it passes only when the server reports SERVING to a client that
presents the pod's certificate, exactly as the kubelet runs it (a new Python process, the
settings in the environment)."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from gpu_node.server import run_gpu_node
from gpu_proxy.server import run_gpu_proxy
from mesh_common.tls import KeyPair
from tests.support.gpu import Pki, make_pki, node_settings, proxy_settings

PROBE = Path(__file__).resolve().parents[2] / "deploy/kubernetes/base/probes/mtls_health.py"


async def probe(prefix: str, port: int, identity: KeyPair, ca: Path) -> tuple[int, str]:
    """Runs the probe as the kubelet would; returns its exit status and output."""
    environment = {
        **os.environ,
        f"{prefix}_PORT": str(port),
        f"{prefix}_CERT": str(identity.cert),
        f"{prefix}_KEY": str(identity.key),
        f"{prefix}_CA": str(ca),
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(PROBE),
        prefix,
        env=environment,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    assert process.returncode is not None
    return process.returncode, output.decode()


async def test_a_serving_node_passes_with_its_own_certificate_and_refuses_a_stranger(
    tmp_path: Path,
) -> None:
    pki = make_pki(tmp_path)
    async with run_gpu_node(node_settings(pki)) as node:
        status, output = await probe("MESH_GPU_NODE", node.port, pki.node, pki.ca.cert)
        assert (status, output.strip()) == (0, "SERVING")
        status, output = await probe("MESH_GPU_NODE", node.port, pki.rogue_client, pki.ca.cert)
        assert status == 1, output


async def test_a_proxy_without_a_usable_node_is_not_ready(tmp_path: Path) -> None:
    pki: Pki = make_pki(tmp_path)
    async with (
        run_gpu_node(node_settings(pki, identity=pki.rogue_node)) as node,
        run_gpu_proxy(proxy_settings(pki, [node.address])) as proxy,
    ):
        status, output = await probe("MESH_GPU_PROXY", proxy.port, pki.proxy, pki.ca.cert)
        assert (status, output.strip()) == (1, "NOT_SERVING")
