"""`meeting-mesh follow ID`: print a meeting's transcript, live until the meeting is over."""

from __future__ import annotations

import argparse

from rich.console import Console

from meeting_mesh import connection
from meeting_mesh.client import GatewayClient
from meeting_mesh.transcript_view import COMPLETED, TranscriptView, follow


def configure(parser: argparse.ArgumentParser) -> None:
    """Adds this subcommand's arguments."""
    parser.add_argument("meeting_id", metavar="ID", help="the meeting")
    connection.add_arguments(parser)


async def _follow(client: GatewayClient, args: argparse.Namespace) -> int:
    view = TranscriptView(Console(), as_json=args.json)
    meeting = await follow(client, args.meeting_id, view)
    if args.json:
        view.print_document(meeting)
    if view.failure or view.status != COMPLETED:
        Console(stderr=True).print(f"[red]failed:[/red] {view.failure or 'the stream ended'}")
        return connection.FAILED
    return connection.OK


def run(args: argparse.Namespace) -> int:
    """Follows the meeting; 0 when it completed, 1 when it failed or was deleted."""
    return connection.run_client(args, lambda client: _follow(client, args))
