"""`meeting-mesh keys create|list|revoke`: the caller's API keys, over the gateway's HTTP API.

`create` prints the key once (the server keeps only its hash) on standard output, alone on
its line, so that `KEY=$(meeting-mesh keys create ...)` captures it; everything else goes
to standard error. With `--json`, each action prints the API's answer instead.
"""

from __future__ import annotations

import argparse
import json

from rich.console import Console
from rich.table import Table

from meeting_mesh import connection
from meeting_mesh.client import GatewayClient


def configure(parser: argparse.ArgumentParser) -> None:
    """Adds this subcommand's arguments."""
    connection.add_arguments(parser)
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


async def _run(client: GatewayClient, args: argparse.Namespace) -> int:
    out = Console(stderr=False)
    err = Console(stderr=True)
    if args.action == "create":
        created = await client.create_api_key(args.name, args.scopes)
        if args.json:
            print(json.dumps(created, indent=2))
            return connection.OK
        key = created["apiKey"]
        err.print(
            f"created key {key['id']} ({key['prefix']}...) with "
            f"{', '.join(key['scopes'])}; it is shown only this once:"
        )
        out.print(created["secret"], highlight=False, soft_wrap=True)
    elif args.action == "list":
        keys = await client.api_keys()
        if args.json:
            print(json.dumps({"apiKeys": keys}, indent=2))
            return connection.OK
        table = Table("id", "name", "prefix", "scopes", "created", "last used")
        for key in keys:
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
    return connection.OK


def run(args: argparse.Namespace) -> int:
    """Runs the chosen action.

    Returns:
        0 on success, 1 when the gateway refused or cannot be reached, 2 for bad settings.
    """
    return connection.run_client(args, lambda client: _run(client, args))
