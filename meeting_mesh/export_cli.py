"""`meeting-mesh export ID --format FORMAT`: a meeting's transcript as a file.

Writes the export (SRT, WebVTT, plain text, Markdown or JSON) to standard output, to
`--output FILE`, or, with `--save`, to the file name the gateway suggests.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from gateway.exports import FORMATS
from meeting_mesh import connection
from meeting_mesh.client import GatewayClient


def configure(parser: argparse.ArgumentParser) -> None:
    """Adds this subcommand's arguments."""
    parser.add_argument("meeting_id", metavar="ID", help="the meeting")
    parser.add_argument(
        "--format", "-f", required=True, choices=sorted(FORMATS), help="the file format"
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--output", "-o", type=Path, help="write to this file (default: stdout)")
    where.add_argument(
        "--save", action="store_true", help="write to the file name the gateway suggests"
    )
    connection.add_arguments(parser, output_json=False)


async def _export(client: GatewayClient, args: argparse.Namespace) -> int:
    data, filename = await client.export(args.meeting_id, args.format)
    target: Path | None = args.output or (Path(filename) if args.save else None)
    if target is None:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    else:
        await asyncio.to_thread(target.write_bytes, data)
        print(f"wrote {target}", file=sys.stderr)
    return connection.OK


def run(args: argparse.Namespace) -> int:
    """Exports the transcript.

    Returns:
        0 when written, 1 when the gateway refused or cannot be reached, 2 for a local
        problem (settings, no secret to mint a token with).
    """
    return connection.run_client(args, lambda client: _export(client, args))
