"""`meeting-mesh gpu-proxy`: forwards `gpu.v1` calls to GPU nodes over pooled mTLS."""

from __future__ import annotations

import argparse
import asyncio

from gpu_proxy.credentials import CredentialError
from gpu_proxy.settings import GpuProxySettings
from mesh_common.logging import configure_logging, logger
from mesh_common.settings import SettingsError, load


def configure(parser: argparse.ArgumentParser) -> None:
    """Adds this subcommand's arguments."""
    parser.add_argument("--host", help="interface (default: MESH_GPU_PROXY_HOST, 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default: MESH_GPU_PROXY_PORT, 50052)")
    parser.add_argument("--nodes", help="GPU nodes, host:port,host:port (default: MESH_GPU_NODES)")


def run(args: argparse.Namespace) -> int:
    """Serves until SIGINT or SIGTERM.

    Returns:
        0 after a clean stop; 2 when the settings or certificates are unusable.
    """
    try:
        settings = load(
            GpuProxySettings,
            gpu_proxy_host=args.host,
            gpu_proxy_port=args.port,
            gpu_nodes=args.nodes,
        )
    except SettingsError as error:
        print(error)
        return 2
    configure_logging("gpu-proxy", settings.log_level, settings.log_format)
    try:
        asyncio.run(_serve(settings))
    except CredentialError as error:
        logger.error("{} (run `meeting-mesh certs`)", error)
        return 2
    return 0


async def _serve(settings: GpuProxySettings) -> None:
    from gpu_proxy.server import run_gpu_proxy
    from mesh_common.grpc_server import wait_for_shutdown_signal

    async with run_gpu_proxy(settings) as proxy:
        await wait_for_shutdown_signal()
        logger.info("stopping")
        await proxy.stop(grace=10.0)
