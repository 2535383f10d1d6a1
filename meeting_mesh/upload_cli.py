"""`meeting-mesh upload FILE`: upload a recording, then print its transcript as it arrives.

Creates a meeting (with its title, language and speaker count), uploads with a progress bar
(resuming after a dropped connection), then follows the meeting (`transcript_view`) until
it is COMPLETED (exit 0) or FAILED (exit 1, with the server's reason). `--resume ID`
continues an upload an earlier run left unfinished: HEAD for the stored size, PATCH for
the rest.
"""

from __future__ import annotations

import argparse
import asyncio
import mimetypes
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from meeting_mesh import connection
from meeting_mesh.client import GatewayClient
from meeting_mesh.transcript_view import COMPLETED, TranscriptView, follow


def configure(parser: argparse.ArgumentParser) -> None:
    """Adds this subcommand's arguments."""
    parser.add_argument("file", type=Path, help="the recording (WAV, MP3, FLAC, OGG, ...)")
    parser.add_argument("--title", help="the meeting's title (default: the file name)")
    parser.add_argument("--language", default="", help="spoken language, BCP-47 ('en', 'de')")
    parser.add_argument("--speakers", type=int, default=0, help="how many people speak, when known")
    parser.add_argument(
        "--resume",
        metavar="MEETING_ID",
        help="continue the unfinished upload of this meeting instead of creating one",
    )
    parser.add_argument(
        "--content-type", help="media type of the file (default: guessed from its name)"
    )
    parser.add_argument("--no-follow", action="store_true", help="stop once the upload is stored")
    connection.add_arguments(parser)


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


async def _upload(
    client: GatewayClient, args: argparse.Namespace, out: Console, progress_to: Console
) -> int:
    path: Path = args.file
    content_type = _content_type(path, args.content_type)
    if args.resume:
        meeting_id = args.resume
    else:
        meeting = await client.create_meeting(
            args.title or path.name, language=args.language, expected_speakers=args.speakers
        )
        meeting_id = meeting["id"]
    progress_to.print(f"meeting [bold]{meeting_id}[/bold]")
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=progress_to,
    ) as progress:
        size = (await asyncio.to_thread(path.stat)).st_size
        task = progress.add_task("uploading", total=size)
        result = await client.upload(
            meeting_id,
            path,
            content_type,
            on_progress=lambda done: progress.update(task, completed=done),
            resume=bool(args.resume),
        )
    duration = result.get("duration") or result.get("meeting", {}).get("duration", "")
    progress_to.print(f"stored {result.get('storedSize')} bytes {duration}".rstrip())
    if args.no_follow:
        if args.json:
            out.print_json(data=await client.meeting(meeting_id))
        return connection.OK
    view = TranscriptView(out, as_json=args.json)
    meeting = await follow(client, meeting_id, view)
    if args.json:
        view.print_document(meeting)
    if view.failure or view.status != COMPLETED:
        reason = escape(view.failure or "the stream ended early")
        Console(stderr=True).print(f"[red]failed:[/red] {reason}")
        return connection.FAILED
    return connection.OK


def run(args: argparse.Namespace) -> int:
    """Uploads and follows; the exit status tells how it ended.

    Args:
        args: The parsed command line.

    Returns:
        0 when the meeting completed, 1 when it failed or the server refused, 2 for a
        local problem (missing file, unknown type, bad settings).
    """
    if not args.file.is_file():
        Console(stderr=True).print(f"[red]no such file:[/red] {escape(str(args.file))}")
        return connection.LOCAL_ERROR
    out = Console()
    # With --json, stdout holds only the document; the progress goes to stderr.
    progress_to = Console(stderr=True) if args.json else out
    return connection.run_client(args, lambda client: _upload(client, args, out, progress_to))
