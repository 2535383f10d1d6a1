"""`meeting-mesh keys create|list|revoke`: the caller's API keys, over the gateway's HTTP API.

`create` prints the key once (the server keeps only its hash) on standard output, alone on
its line, so that `KEY=$(meeting-mesh keys create ...)` captures it; everything else goes
to standard error.
"""

from __future__ import annotations

import argparse
import asyncio
import os

import aiohttp
from rich.console import Console
from rich.table import Table

from gateway.client import GatewayClient, GatewayError
from mesh_common.auth import issue_token
from mesh_common.settings import CommonSettings, SettingsError, load

DEFAULT_URL = "http://127.0.0.1:8080"


def configure(parser: argparse.ArgumentParser) -> None:
    """Adds this subcommand's arguments."""
    parser.add_argument(
        "--url",
        default=os.environ.get("MESH_GATEWAY_URL", DEFAULT_URL),
        help=f"the gateway (default: $MESH_GATEWAY_URL or {DEFAULT_URL})",
    )
    parser.add_argument(
        "--token",
        default=os.environ.get("MESH_TOKEN"),
        help="bearer token or API key with keys:manage (default: $MESH_TOKEN, else one "
        "minted from the data directory's dev secret)",
    )
    parser.add_argument("--user", default="dev", help="user of the minted dev token (dev)")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = actions.add_parser("create", help="create a key and print it (shown once)")
    create.add_argument(
        "--scope",
        dest="scopes",
        action="append",
        required=True,
        help="a scope the key gets (repeat): meetings:read, meetings:write, audio:upload, "
        "webhooks:manage, keys:manage",
    )
    create.add_argument("--name", default="", help="a name to tell the key by")
    actions.add_parser("list", help="list the keys that are not revoked")
    revoke = actions.add_parser("revoke", help="revoke a key by its id")
    revoke.add_argument("key_id", help="the key's id (from `list`)")


async def _act(args: argparse.Namespace, token: str, out: Console, err: Console) -> None:
    async with aiohttp.ClientSession() as session:
        client = GatewayClient(session, args.url, token)
        if args.action == "create":
            created = await client.create_api_key(args.name, args.scopes)
            key = created["apiKey"]
            err.print(
                f"created key {key['id']} ({key['prefix']}...) with "
                f"{', '.join(key['scopes'])}; it is shown only this once:"
            )
            out.print(created["secret"], highlight=False, soft_wrap=True)
        elif args.action == "list":
            table = Table("id", "name", "prefix", "scopes", "created", "last used")
            for key in await client.api_keys():
                table.add_row(
                    key["id"],
                    key.get("name", ""),
                    key["prefix"],
                    " ".join(key["scopes"]),
                    key["createTime"],
                    key.get("lastUseTime", "never"),
                )
            out.print(table)
        else:
            await client.revoke_api_key(args.key_id)
            err.print(f"revoked key {args.key_id}")


def run(args: argparse.Namespace) -> int:
    """Runs the chosen action.

    Args:
        args: The parsed command line.

    Returns:
        0 on success, 1 when the gateway refused or cannot be reached, 2 for bad settings.
    """
    out = Console(stderr=False)
    err = Console(stderr=True)
    try:
        token = args.token or issue_token(args.user, load(CommonSettings).signing_secret())
        asyncio.run(_act(args, token, out, err))
    except SettingsError as error:
        err.print(f"[red]{error}[/red]")
        return 2
    except GatewayError as error:
        err.print(f"[red]the gateway refused ({error.status}):[/red] {error.message}")
        return 1
    except aiohttp.ClientError as error:
        err.print(f"[red]cannot reach the gateway at {args.url}:[/red] {error}")
        return 1
    return 0
