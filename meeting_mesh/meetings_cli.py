"""`meeting-mesh meetings list|get|delete`: the caller's meetings."""

from __future__ import annotations

import argparse
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from meeting_mesh import connection
from meeting_mesh.client import GatewayClient
from meeting_mesh.transcript_view import status_label


def configure(parser: argparse.ArgumentParser) -> None:
    """Adds this subcommand's actions and their arguments."""
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="the caller's meetings, newest first")
    listing.add_argument("--page-size", type=int, default=0, help="meetings per page (20)")
    listing.add_argument("--page-token", default="", help="the page after a previous one")
    listing.add_argument("--all", action="store_true", help="every page, not just the first")
    get = actions.add_parser("get", help="one meeting")
    get.add_argument("meeting_id", metavar="ID")
    delete = actions.add_parser("delete", help="delete a meeting with its audio and transcript")
    delete.add_argument("meeting_id", metavar="ID")
    for action in (listing, get, delete):
        connection.add_arguments(action)


def _created(meeting: dict[str, Any]) -> str:
    return str(meeting.get("createTime", ""))[:19].replace("T", " ")


async def _list(client: GatewayClient, args: argparse.Namespace, out: Console) -> int:
    page = await client.list_meetings(args.page_size, args.page_token)
    meetings = list(page.get("meetings", []))
    while args.all and page.get("nextPageToken"):
        page = await client.list_meetings(args.page_size, page["nextPageToken"])
        meetings += page.get("meetings", [])
    token = page.get("nextPageToken", "")
    if args.json:
        out.print_json(data={"meetings": meetings, "nextPageToken": token})
        return connection.OK
    table = Table("id", "title", "status", "created (UTC)", "duration", "language")
    for meeting in meetings:
        table.add_row(
            meeting["id"],
            escape(meeting.get("title", "")),
            status_label(meeting.get("status", "")),
            _created(meeting),
            meeting.get("duration", ""),
            meeting.get("language", ""),
        )
    out.print(table)
    if token:
        out.print(f"[dim]more: --page-token {token}[/dim]")
    return connection.OK


async def _get(client: GatewayClient, args: argparse.Namespace, out: Console) -> int:
    meeting = await client.meeting(args.meeting_id)
    if args.json:
        out.print_json(data=meeting)
        return connection.OK
    table = Table("field", "value", show_header=False)
    for name, value in meeting.items():
        shown = status_label(value) if name == "status" else str(value)
        table.add_row(name, escape(shown))
    out.print(table)
    return connection.OK


async def _delete(client: GatewayClient, args: argparse.Namespace, out: Console) -> int:
    await client.delete_meeting(args.meeting_id)
    if args.json:
        out.print_json(data={"deleted": args.meeting_id})
    else:
        out.print(f"deleted {args.meeting_id}")
    return connection.OK


_ACTIONS = {"list": _list, "get": _get, "delete": _delete}


def run(args: argparse.Namespace) -> int:
    """Runs the chosen action; 1 when the gateway refused (404 for another's meeting)."""
    action = _ACTIONS[args.action]
    return connection.run_client(args, lambda client: action(client, args, Console()))
