"""`meeting-mesh upload FILE`: upload a recording, then print its transcript as it arrives.

Creates a meeting, uploads with a progress bar (resuming after a dropped connection), then
follows the meeting's event stream and prints each final segment with its speaker until the
meeting is COMPLETED (exit 0) or FAILED (exit 1, with the server's reason).
"""

from __future__ import annotations

import argparse
import asyncio
import mimetypes
from pathlib import Path
from typing import Any

import aiohttp
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from gateway.cli_connection import add_connection_arguments, bearer_token
from gateway.client import GatewayClient, GatewayError, SseEvent
from mesh_common.settings import SettingsError

_FINAL_STATUSES = {"MEETING_STATUS_COMPLETED", "MEETING_STATUS_FAILED"}


def configure(parser: argparse.ArgumentParser) -> None:
    """Adds this subcommand's arguments."""
    parser.add_argument("file", type=Path, help="the recording (WAV, MP3, FLAC, OGG, ...)")
    parser.add_argument("--title", help="the meeting's title (default: the file name)")
    add_connection_arguments(parser)
    parser.add_argument(
        "--content-type", help="media type of the file (default: guessed from its name)"
    )
    parser.add_argument("--no-follow", action="store_true", help="stop once the upload is stored")


def _content_type(path: Path, given: str | None) -> str:
    if given:
        return given
    guessed, _ = mimetypes.guess_type(path.name)
    if guessed and guessed.startswith("audio/"):
        return guessed
    if guessed == "video/mp4" or path.suffix.lower() in (".m4a", ".mp4"):
        return "audio/mp4"
    if path.suffix.lower() in (".webm",):
        return "audio/webm"
    raise ValueError(f"cannot tell the audio type of {path.name}; pass --content-type")


def _clock(offset: str) -> str:
    seconds = float(offset.rstrip("s") or 0)
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes:02d}:{rest:02d}"


class _Printer:
    """Prints the events of one meeting the way a person reads a transcript."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.printed: dict[str, str] = {}  # segment id -> speaker printed with it
        self.status = ""
        self.failure = ""

    def show(self, event: SseEvent) -> None:
        if event.event == "segment":
            self._segment(event.data["segment"])
        elif event.event == "status":
            change = event.data["statusChange"]
            self.status = change["status"]
            label = self.status.removeprefix("MEETING_STATUS_").lower()
            reason = f": {change['reason']}" if change.get("reason") else ""
            self.console.print(f"[dim]-- {label}{reason}[/dim]")
            if self.status == "MEETING_STATUS_FAILED":
                self.failure = change.get("reason", "") or "processing failed"
        elif event.event == "summary":
            summary = event.data["summary"]
            self.console.print(f"\n[bold]Summary[/bold]\n{summary.get('text', '')}")
            for item in summary.get("actionItems", []):
                self.console.print(f"  - {item['text']}")
        elif event.event == "error":
            self.failure = event.data.get("error", {}).get("message", "stream error")
        elif event.event == "deleted":
            self.failure = "the meeting was deleted"

    def _segment(self, segment: dict[str, Any]) -> None:
        if not segment.get("final"):
            return
        speaker = segment.get("speaker", "")
        key = segment["segmentId"]
        if key in self.printed and (self.printed[key] == speaker or not speaker):
            return
        self.printed[key] = speaker
        who = f"[bold cyan]{speaker}[/bold cyan]" if speaker else "[dim]speaker ?[/dim]"
        start = _clock(segment.get("startOffset", "0s"))
        self.console.print(f"[dim]{start}[/dim] {who}: {segment.get('text', '').strip()}")

    @property
    def finished(self) -> bool:
        return self.status in _FINAL_STATUSES or bool(self.failure)


async def _upload_and_follow(args: argparse.Namespace, token: str, console: Console) -> int:
    path: Path = args.file
    content_type = _content_type(path, args.content_type)
    async with aiohttp.ClientSession() as session:
        client = GatewayClient(session, args.url, token)
        meeting = await client.create_meeting(args.title or path.name)
        meeting_id = meeting["id"]
        console.print(f"meeting [bold]{meeting_id}[/bold]")
        with Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=console,
        ) as progress:
            size = (await asyncio.to_thread(path.stat)).st_size
            task = progress.add_task("uploading", total=size)
            result = await client.upload(
                meeting_id,
                path,
                content_type,
                on_progress=lambda done: progress.update(task, completed=done),
            )
        duration = result.get("duration") or result.get("meeting", {}).get("duration", "")
        console.print(f"stored {result.get('storedSize')} bytes {duration}".rstrip())
        if args.no_follow:
            return 0
        printer = _Printer(console)
        async for event in client.events(meeting_id):
            printer.show(event)
            if printer.finished:
                break
        if printer.failure or printer.status != "MEETING_STATUS_COMPLETED":
            console.print(f"[red]failed:[/red] {printer.failure or 'the stream ended early'}")
            return 1
        return 0


def run(args: argparse.Namespace) -> int:
    """Uploads and follows; the exit status tells how it ended.

    Args:
        args: The parsed command line.

    Returns:
        0 when the meeting completed, 1 when it failed or the server refused, 2 for a
        local problem (missing file, unknown type, bad settings).
    """
    console = Console(stderr=False)
    err = Console(stderr=True)
    if not args.file.is_file():
        err.print(f"[red]no such file:[/red] {args.file}")
        return 2
    try:
        token = bearer_token(args)
        return asyncio.run(_upload_and_follow(args, token, console))
    except (ValueError, SettingsError) as error:
        err.print(f"[red]{error}[/red]")
        return 2
    except GatewayError as error:
        err.print(f"[red]the gateway refused ({error.status}):[/red] {error.message}")
        return 1
    except aiohttp.ClientError as error:
        err.print(f"[red]cannot reach the gateway at {args.url}:[/red] {error}")
        return 1
    except KeyboardInterrupt:
        return 130
