"""`meeting-mesh voices`: the caller's voice profiles, over the gateway's HTTP API.

A profile is made from a recording of the voice alone (`enroll`) or from a speaker of one
of the caller's processed meetings (`from-meeting`), and improved with more of either
(`add`, `add-speaker`); meetings processed after it name a speaker with that voice. The
answers never hold the voice itself. With `--json`, each action prints the API's answer.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from meeting_mesh import connection
from meeting_mesh.client import GatewayClient


def configure(parser: argparse.ArgumentParser) -> None:
    """Adds this subcommand's arguments."""
    connection.add_arguments(parser)
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser("list", help="list the profiles")
    enroll = actions.add_parser("enroll", help="make a profile from a recording of one voice")
    enroll.add_argument("name", help="the name a matching speaker gets")
    enroll.add_argument("file", type=Path, help="the recording (WAV, MP3, Opus, M4A...)")
    add = actions.add_parser("add", help="add a recording of the voice to a profile")
    add.add_argument("profile_id", help="the profile's id (from `list`)")
    add.add_argument("file", type=Path, help="the recording")
    from_meeting = actions.add_parser(
        "from-meeting", help="make a profile from a speaker of a processed meeting"
    )
    from_meeting.add_argument("name", help="the name a matching speaker gets")
    from_meeting.add_argument("meeting_id", help="the meeting")
    from_meeting.add_argument("speaker", help="the speaker's label there (SPEAKER_2)")
    add_speaker = actions.add_parser(
        "add-speaker", help="add a speaker of a processed meeting to a profile"
    )
    add_speaker.add_argument("profile_id", help="the profile's id")
    add_speaker.add_argument("meeting_id", help="the meeting")
    add_speaker.add_argument("speaker", help="the speaker's label there")
    rename = actions.add_parser("rename", help="rename a profile")
    rename.add_argument("profile_id", help="the profile's id")
    rename.add_argument("name", help="the new name")
    delete = actions.add_parser("delete", help="delete a profile and every sample of the voice")
    delete.add_argument("profile_id", help="the profile's id")


def _recording(args: argparse.Namespace) -> bytes:
    try:
        recording: bytes = args.file.read_bytes()
    except OSError as error:
        raise ValueError(f"cannot read {args.file}: {error.strerror}") from None
    return recording


async def _act(client: GatewayClient, args: argparse.Namespace) -> dict[str, Any]:
    profiles = "/v1/voiceProfiles"
    if args.action == "list":
        return await client.call("GET", profiles)
    if args.action == "enroll":
        return await client.send_body(
            f"{profiles}:fromAudio", _recording(args), params={"name": args.name}
        )
    if args.action == "add":
        return await client.send_body(f"{profiles}/{args.profile_id}/audio", _recording(args))
    if args.action in ("from-meeting", "add-speaker"):
        sample = {"meetingId": args.meeting_id, "speaker": args.speaker}
        if args.action == "from-meeting":
            return await client.call("POST", profiles, body={"name": args.name, "sample": sample})
        return await client.call(
            "POST", f"{profiles}/{args.profile_id}/samples", body={"sample": sample}
        )
    if args.action == "rename":
        return await client.call("PATCH", f"{profiles}/{args.profile_id}", body={"name": args.name})
    return await client.call("DELETE", f"{profiles}/{args.profile_id}")


async def _run(client: GatewayClient, args: argparse.Namespace) -> int:
    answer = await _act(client, args)
    if args.json:
        print(json.dumps(answer, indent=2))
        return connection.OK
    if args.action == "list":
        table = Table("id", "name", "samples", "updated")
        for profile in answer.get("voiceProfiles", []):
            table.add_row(
                profile["id"], profile["name"], str(profile["sampleCount"]), profile["updateTime"]
            )
        Console(stderr=False).print(table)
    elif args.action == "delete":
        Console(stderr=True).print(f"deleted voice profile {args.profile_id}")
    else:
        profile = answer["voiceProfile"]
        Console(stderr=True).print(
            f"voice profile {profile['id']} {profile['name']!r}: "
            f"{profile['sampleCount']} sample(s)",
            highlight=False,
        )
    return connection.OK


def run(args: argparse.Namespace) -> int:
    """Runs the chosen action.

    Returns:
        0 on success, 1 when the gateway refused or cannot be reached, 2 for bad settings
        or an unreadable file.
    """
    return connection.run_client(args, lambda client: _run(client, args))
