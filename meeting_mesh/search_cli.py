"""`meeting-mesh search QUERY`: find words across the caller's transcripts."""

from __future__ import annotations

import argparse
import datetime as dt
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from meeting_mesh import connection
from meeting_mesh.client import GatewayClient
from meeting_mesh.transcript_view import clock


def _moment(value: str) -> str:
    """An ISO date or date-time (local time unless it says otherwise) as RFC 3339."""
    try:
        when = dt.datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO date or date-time: {value!r}") from None
    return when.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def _status(value: str) -> str:
    name = value.strip().upper()
    return name if name.startswith("MEETING_STATUS_") else f"MEETING_STATUS_{name}"


def configure(parser: argparse.ArgumentParser) -> None:
    """Adds this subcommand's arguments."""
    parser.add_argument(
        "query",
        help='words to find: all must occur; "a phrase", `or` between alternatives, '
        "-word to exclude",
    )
    parser.add_argument("--after", type=_moment, help="meetings created at or after (ISO)")
    parser.add_argument("--before", type=_moment, help="meetings created before (ISO)")
    parser.add_argument(
        "--status",
        type=_status,
        action="append",
        default=[],
        help="meetings in this status (completed, failed...); repeatable",
    )
    parser.add_argument("--speaker", default="", help="segments of this speaker label")
    parser.add_argument("--page-size", type=int, default=0, help="hits per page (20)")
    parser.add_argument("--page-token", default="", help="the page after a previous one")
    connection.add_arguments(parser)


def _params(args: argparse.Namespace) -> list[tuple[str, str]]:
    params = [("q", args.query)]
    params += [("statuses", status) for status in args.status]
    named = {
        "createdAfter": args.after,
        "createdBefore": args.before,
        "speaker": args.speaker,
        "pageSize": str(args.page_size) if args.page_size else "",
        "pageToken": args.page_token,
    }
    return params + [(name, value) for name, value in named.items() if value]


def _snippet(hit: dict[str, Any]) -> Text:
    text = Text(hit.get("snippet", ""))
    for span in hit.get("highlights", []):
        text.stylize("bold yellow", int(span.get("start", 0)), int(span["end"]))
    return text


async def _search(client: GatewayClient, args: argparse.Namespace, out: Console) -> int:
    page = await client.search(_params(args))
    if args.json:
        out.print_json(data=page)
        return connection.OK
    table = Table("meeting", "at", "speaker", "snippet")
    for hit in page.get("hits", []):
        table.add_row(
            Text(f"{hit.get('meetingTitle', '')}\n{hit['meetingId']}"),
            clock(hit.get("startOffset", "0s")),
            Text(hit.get("speaker", "")),
            _snippet(hit),
        )
    out.print(table)
    if page.get("nextPageToken"):
        out.print(f"[dim]more: --page-token {page['nextPageToken']}[/dim]")
    return connection.OK


def run(args: argparse.Namespace) -> int:
    """Prints one page of hits, best first."""
    return connection.run_client(args, lambda client: _search(client, args, Console()))
