"""`meeting-mesh meeting-service`: serve `meeting.v1.MeetingService` until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import sys

from meeting_service.server import run_meeting_service
from meeting_service.settings import MeetingServiceSettings
from mesh_common.grpc_server import wait_for_shutdown_signal
from mesh_common.logging import configure_logging, logger
from mesh_common.settings import SettingsError, load


def configure(parser: argparse.ArgumentParser) -> None:
    """Adds this subcommand's arguments (each overrides its environment variable)."""
    parser.add_argument("--host", help="interface to bind (MESH_MEETING_HOST, 127.0.0.1)")
    parser.add_argument(
        "--port", type=int, help="port to bind, 0 for any (MESH_MEETING_PORT, 50051)"
    )


def run(args: argparse.Namespace) -> int:
    """Serves until a shutdown signal, then stops gracefully.

    Returns:
        0 after a clean stop, 2 for invalid settings.
    """
    try:
        settings = load(MeetingServiceSettings, meeting_host=args.host, meeting_port=args.port)
    except SettingsError as error:
        print(error, file=sys.stderr)
        return 2
    configure_logging("meeting-service", settings.log_level, settings.log_format)
    asyncio.run(_serve(settings))
    return 0


async def _serve(settings: MeetingServiceSettings) -> None:
    async with run_meeting_service(settings, wait_ready=False) as running:
        # Scripts that start the service on port 0 read the bound address from this line.
        logger.bind(address=running.address, port=running.port).info("meeting service started")
        await wait_for_shutdown_signal()
        logger.info("shutting down")
