"""`meeting-mesh export ID --format FORMAT`: a meeting's transcript as a file.

Writes the export (SRT, WebVTT, plain text, Markdown or JSON) to standard output, to
`--output FILE`, or, with `--save`, to the file name the gateway suggests.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

import aiohttp

from gateway.cli_connection import add_connection_arguments, bearer_token
from gateway.client import GatewayClient, GatewayError
from gateway.exports import FORMATS
from mesh_common.settings import SettingsError


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
    add_connection_arguments(parser)


async def _export(args: argparse.Namespace, token: str) -> tuple[bytes, str]:
    async with aiohttp.ClientSession() as session:
        return await GatewayClient(session, args.url, token).export(args.meeting_id, args.format)


def run(args: argparse.Namespace) -> int:
    """Exports; the exit status tells how it ended.

    Args:
        args: The parsed command line.

    Returns:
        0 when written, 1 when the gateway refused or cannot be reached, 2 for bad settings.
    """
    try:
        data, filename = asyncio.run(_export(args, bearer_token(args)))
    except SettingsError as error:
        print(error, file=sys.stderr)
        return 2
    except GatewayError as error:
        print(f"the gateway refused ({error.status}): {error.message}", file=sys.stderr)
        return 1
    except aiohttp.ClientError as error:
        print(f"cannot reach the gateway at {args.url}: {error}", file=sys.stderr)
        return 1
    target: Path | None = args.output or (Path(filename) if args.save else None)
    if target is None:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    else:
        target.write_bytes(data)
        print(f"wrote {target}", file=sys.stderr)
    return 0
