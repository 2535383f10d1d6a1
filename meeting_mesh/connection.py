"""What the commands that talk to a running mesh share: gateway, caller, exit statuses.

Where the gateway is (`--url`), who the caller is (`--token`, or a token minted for
`--user` with the secret of the mesh's `--data-dir`), whether to print JSON (`--json`),
and how failures become exit statuses.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
from rich.console import Console
from rich.markup import escape

from meeting_mesh.client import GatewayClient, GatewayError

DEFAULT_URL = "http://127.0.0.1:8080"

# 0: done; 1: the mesh refused or could not be reached, or the meeting failed; 2: a local
# problem (arguments, files, settings).
OK, FAILED, LOCAL_ERROR = 0, 1, 2


def add_arguments(parser: argparse.ArgumentParser, *, output_json: bool = True) -> None:
    """Adds the gateway and caller options, and `--json` unless the command prints a file.

    Args:
        parser: The subcommand's parser.
        output_json: Whether the command can print JSON instead of a table.
    """
    parser.add_argument(
        "--url",
        default=os.environ.get("MESH_GATEWAY_URL", DEFAULT_URL),
        help=f"the gateway (default: $MESH_GATEWAY_URL or {DEFAULT_URL})",
    )
    parser.add_argument(
        "--token",
        default=os.environ.get("MESH_TOKEN"),
        help="bearer token (default: $MESH_TOKEN, else one minted for --user with the "
        "secret of the mesh's data directory)",
    )
    parser.add_argument("--user", default="dev", help="user of the minted token (dev)")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=os.environ.get("MESH_DATA_DIR"),
        help="the mesh's data directory, for a minted token (default: $MESH_DATA_DIR or .mesh)",
    )
    if output_json:
        parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def run_client(args: argparse.Namespace, work: Callable[[GatewayClient], Awaitable[int]]) -> int:
    """Runs a command's work with a client of the gateway; failures become exit statuses.

    Args:
        args: The parsed command line (with `add_arguments`' options).
        work: What the command does; returns its exit status.

    Returns:
        The exit status: `work`'s, FAILED when the gateway refused or could not be
        reached, LOCAL_ERROR for a bad value or setting.
    """
    err = Console(stderr=True)

    async def with_client() -> int:
        token = args.token or _mint(args)
        async with aiohttp.ClientSession() as session:
            return await work(GatewayClient(session, args.url, token))

    try:
        return asyncio.run(with_client())
    except ValueError as error:
        err.print(f"[red]{escape(str(error))}[/red]")
        return LOCAL_ERROR
    except GatewayError as error:
        err.print(f"[red]the gateway refused ({error.status}):[/red] {escape(error.message)}")
        return FAILED
    except aiohttp.ClientError as error:
        err.print(f"[red]cannot reach the gateway at {escape(args.url)}:[/red] {error}")
        return FAILED
    except KeyboardInterrupt:
        return 130


def _mint(args: argparse.Namespace) -> str:
    # Imported here: settings and JWT signing cost a command with --token a second.
    from meeting_mesh.tokens import mint
    from mesh_common.settings import SettingsError

    try:
        return mint(args.user, data_dir=args.data_dir)
    except SettingsError as error:
        raise ValueError(str(error)) from None
