"""The NOTIFY that announces new events: its channel and its payload, both ways.

Writers queue one on commit (`EventsRepository`); each process's `EventHub` listens and
reads the events itself, so the payload only says which meeting and how far its log now
goes: `{"m": meeting id, "s": newest sequence}`, plus `"d": 1` when the meeting was
deleted (that sequence is the stream's last). No payload nears NOTIFY's 8000-byte limit.

A user's feed is announced on `USER_CHANNEL` by the trigger of migration 0008 with
`{"o": owner, "s": newest sequence of the owner's feed}`.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass

CHANNEL = "meeting_events"
USER_CHANNEL = "user_events"


@dataclass(frozen=True)
class Notification:
    """A meeting's log moved on to `sequence` (or the meeting was deleted at it)."""

    meeting_id: uuid.UUID
    sequence: int
    deleted: bool = False


def encode(meeting_id: uuid.UUID, sequence: int, *, deleted: bool = False) -> str:
    """Returns the payload announcing a meeting's newest sequence."""
    message: dict[str, object] = {"m": str(meeting_id), "s": sequence}
    if deleted:
        message["d"] = 1
    return json.dumps(message)


def decode(payload: str) -> Notification:
    """Reads a payload made by `encode`.

    Raises:
        ValueError: The payload is not one.
    """
    try:
        message = json.loads(payload)
        return Notification(uuid.UUID(message["m"]), int(message["s"]), bool(message.get("d")))
    except (KeyError, TypeError, AttributeError) as error:
        raise ValueError(f"not an event notification: {payload[:200]!r}") from error


@dataclass(frozen=True)
class UserNotification:
    """An owner's feed moved on to `sequence`."""

    owner: str
    sequence: int


def decode_user(payload: str) -> UserNotification:
    """Reads a payload of `USER_CHANNEL`.

    Raises:
        ValueError: The payload is not one.
    """
    try:
        message = json.loads(payload)
        return UserNotification(str(message["o"]), int(message["s"]))
    except (KeyError, TypeError, AttributeError) as error:
        raise ValueError(f"not a user feed notification: {payload[:200]!r}") from error
