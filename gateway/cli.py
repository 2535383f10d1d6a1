"""`meeting-mesh gateway`: run the HTTP gateway (REST, SSE, WebSocket over gRPC).

Configured by environment (`MESH_GATEWAY_HOST`, `MESH_GATEWAY_PORT`,
`MESH_MEETING_SERVICE_TARGET`, see `gateway.settings`); flags win over the environment.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from aiohttp import web

from gateway.app import create_app
from gateway.connections import GatewayRunner
from gateway.settings import GatewaySettings
from mesh_common.grpc_server import wait_for_shutdown_signal
from mesh_common.logging import configure_logging, logger
from mesh_common.settings import SettingsError, load


def configure(parser: argparse.ArgumentParser) -> None:
    """Adds this subcommand's arguments."""
    parser.add_argument("--host", dest="gateway_host", help="listen address (127.0.0.1)")
    parser.add_argument("--port", dest="gateway_port", type=int, help="listen port (8080)")
    parser.add_argument(
        "--meeting-service",
        dest="meeting_service_target",
        help="meeting_service gRPC target (127.0.0.1:50051)",
    )


async def serve(settings: GatewaySettings) -> None:
    """Serves until SIGINT or SIGTERM, then lets open streams end and stops.

    Args:
        settings: The gateway's settings.
    """
    runner = GatewayRunner(create_app(settings), settings)
    await runner.setup()
    site = web.TCPSite(runner, settings.gateway_host, settings.gateway_port)
    await site.start()
    for address in runner.addresses:
        host, port = address[0], address[1]
        logger.bind(url=f"http://{host}:{port}").info("gateway listening")
    try:
        await wait_for_shutdown_signal()
    finally:
        logger.info("gateway stopping")
        await runner.cleanup()


def run(args: argparse.Namespace) -> int:
    """Runs the gateway.

    Args:
        args: The parsed command line.

    Returns:
        0 after a clean stop, 2 for invalid settings.
    """
    try:
        settings = load(
            GatewaySettings,
            gateway_host=args.gateway_host,
            gateway_port=args.gateway_port,
            meeting_service_target=args.meeting_service_target,
        )
    except SettingsError as error:
        print(error, file=sys.stderr)
        return 2
    configure_logging("gateway", settings.log_level, settings.log_format)
    asyncio.run(serve(settings))
    return 0
