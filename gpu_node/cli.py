"""`meeting-mesh gpu-node`: a GPU node serving `gpu.v1` over mTLS."""

from __future__ import annotations

import argparse
import asyncio

from gpu_node.engines.factory import EngineUnavailableError
from gpu_node.settings import GpuNodeSettings
from mesh_common.logging import configure_logging, logger
from mesh_common.settings import SettingsError, load


def configure(parser: argparse.ArgumentParser) -> None:
    """Adds this subcommand's arguments."""
    parser.add_argument(
        "--engine",
        choices=("mock", "whisper", "auto"),
        help="engine to serve with (default: MESH_GPU_NODE_ENGINE, else auto: whisper when "
        "installed, else mock)",
    )
    parser.add_argument("--host", help="interface (default: MESH_GPU_NODE_HOST, 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default: MESH_GPU_NODE_PORT, 50061)")


def run(args: argparse.Namespace) -> int:
    """Serves until SIGINT or SIGTERM.

    Returns:
        0 after a clean stop; 2 when the settings, certificates or engine are unusable.
    """
    try:
        settings = load(
            GpuNodeSettings,
            gpu_node_engine=args.engine,
            gpu_node_host=args.host,
            gpu_node_port=args.port,
        )
    except SettingsError as error:
        print(error)
        return 2
    configure_logging("gpu-node", settings.log_level, settings.log_format)
    missing = [
        str(path)
        for path in (settings.identity().cert, settings.identity().key, settings.client_ca())
        if not path.exists()
    ]
    if missing:
        logger.error("missing certificate files {} (run `meeting-mesh certs`)", missing)
        return 2
    try:
        asyncio.run(_serve(settings))
    except EngineUnavailableError as error:
        logger.error("{}", error)
        return 2
    return 0


async def _serve(settings: GpuNodeSettings) -> None:
    from gpu_node.server import run_gpu_node
    from mesh_common.grpc_server import wait_for_shutdown_signal

    async with run_gpu_node(settings) as node:
        await wait_for_shutdown_signal()
        logger.info("stopping")
        await node.stop(grace=10.0)
