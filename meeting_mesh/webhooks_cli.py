"""`meeting-mesh webhooks add|list|remove|deliveries|redeliver`: manage webhook endpoints.

Talks to the gateway's REST API like any client (docs/webhooks.md). Output is a table, or
the API's JSON with `--json`.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from rich.console import Console
from rich.table import Table

from meeting_mesh import connection
from meeting_mesh.client import GatewayClient
from meeting_service.webhooks.events import EVENT_TYPES


def configure(parser: argparse.ArgumentParser) -> None:
    """Adds this subcommand's arguments."""
    connection.add_arguments(parser)
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = actions.add_parser("add", help="register an endpoint; prints its secret once")
    add.add_argument("endpoint", help="the http(s) URL events are POSTed to")
    add.add_argument(
        "--event",
        dest="events",
        action="append",
        choices=EVENT_TYPES,
        help="an event type to send (repeat it; default: every type)",
    )
    add.add_argument("--description", default="", help="a note for yourself")
    actions.add_parser("list", help="list your endpoints")
    remove = actions.add_parser("remove", help="delete an endpoint")
    remove.add_argument("webhook_id")
    deliveries = actions.add_parser("deliveries", help="list an endpoint's deliveries")
    deliveries.add_argument("webhook_id")
    deliveries.add_argument("--limit", type=int, default=20, help="most deliveries (20)")
    redeliver = actions.add_parser("redeliver", help="send a delivery again now")
    redeliver.add_argument("webhook_id")
    redeliver.add_argument("delivery_id")


async def _call(args: argparse.Namespace, client: GatewayClient) -> dict[str, Any]:
    if args.action == "add":
        body = {
            "url": args.endpoint,
            "eventTypes": args.events or list(EVENT_TYPES),
            "description": args.description,
        }
        return await client.call("POST", "/v1/webhooks", body=body)
    if args.action == "list":
        return await client.call("GET", "/v1/webhooks")
    if args.action == "remove":
        return await client.call("DELETE", f"/v1/webhooks/{args.webhook_id}")
    if args.action == "deliveries":
        return await client.call(
            "GET",
            f"/v1/webhooks/{args.webhook_id}/deliveries",
            params={"pageSize": str(args.limit)},
        )
    return await client.call(
        "POST", f"/v1/webhooks/{args.webhook_id}/deliveries/{args.delivery_id}/redeliver"
    )


def _endpoints_table(webhooks: list[dict[str, Any]]) -> Table:
    table = Table("id", "url", "events", "state")
    for webhook in webhooks:
        state = webhook.get("disabledReason") or "enabled"
        table.add_row(webhook["id"], webhook["url"], ", ".join(webhook["eventTypes"]), state)
    return table


def _deliveries_table(deliveries: list[dict[str, Any]]) -> Table:
    table = Table("delivery", "event", "meeting", "status", "attempts", "last")
    for delivery in deliveries:
        attempts = delivery.get("attempts", [])
        last = ""
        if attempts:
            newest = attempts[-1]
            last = newest.get("error") or f"HTTP {newest['statusCode']}"
            last += f" ({newest['latency']})"
        table.add_row(
            delivery["id"],
            delivery["eventType"],
            delivery["meetingId"],
            delivery["status"].removeprefix("WEBHOOK_DELIVERY_STATUS_").lower(),
            str(len(attempts)),
            last,
        )
    return table


def _show(args: argparse.Namespace, answer: dict[str, Any], console: Console) -> None:
    if args.json:
        print(json.dumps(answer, indent=2))
        return
    if args.action == "add":
        console.print(_endpoints_table([answer["webhook"]]))
        console.print(f"secret (shown only now): {answer['secret']}", highlight=False)
    elif args.action == "list":
        console.print(_endpoints_table(answer.get("webhooks", [])))
    elif args.action == "remove":
        console.print(f"removed {args.webhook_id}")
    elif args.action == "deliveries":
        console.print(_deliveries_table(answer.get("deliveries", [])))
    else:
        console.print(_deliveries_table([answer["delivery"]]))


async def _run(client: GatewayClient, args: argparse.Namespace) -> int:
    _show(args, await _call(args, client), Console())
    return connection.OK


def run(args: argparse.Namespace) -> int:
    """Runs the action.

    Returns:
        0 on success, 1 when the gateway refused or cannot be reached, 2 for bad settings
        (no secret to mint a token with).
    """
    return connection.run_client(args, lambda client: _run(client, args))
