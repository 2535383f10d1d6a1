"""Speaker names: what a meeting calls its speaker labels, and how segments and summaries show it.

A name lives in the meeting's speaker map (`speaker_names`, label to name) and in every
segment of that label (`Segment.speaker_name`) and action item it owns
(`ActionItem.owner`, found by `owner_speaker`). A rename changes all three in one
transaction, storing the changed segments and summary again as events: readers of the
transcript and open streams see names without a kind of event of their own, and exports
read them from the segments.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence

import asyncpg

from contract_errors.meeting import not_found, speaker_not_found
from gen.meeting.v1 import meeting_pb2, speakers_pb2
from meeting_service import validation
from meeting_service.meetings.repository import MeetingsRepository
from meeting_service.transcripts.event_log import EventLog
from meeting_service.transcripts.repository import EventsRepository
from meeting_service.transcripts.writer import TranscriptWriter

_REQUEST = speakers_pb2.RenameSpeakerRequest


def named(
    segments: Sequence[meeting_pb2.Segment], names: Mapping[str, str]
) -> list[meeting_pb2.Segment]:
    """Returns new versions of the segments whose shown name differs from the map's.

    Args:
        segments: Segments as stored.
        names: Label to name.

    Returns:
        Copies with `speaker_name` set from the map (cleared for an unnamed label), only
        for the segments that change.
    """
    changed: list[meeting_pb2.Segment] = []
    for segment in segments:
        name = names.get(segment.speaker, "") if segment.speaker else ""
        if name != segment.speaker_name:
            updated = meeting_pb2.Segment()
            updated.CopyFrom(segment)
            updated.speaker_name = name
            changed.append(updated)
    return changed


def shown(label: str, names: Mapping[str, str]) -> str:
    """The name a speaker label is shown as: its name when it has one, else the label."""
    return names.get(label, label) if label else ""


def owners_named(summary: meeting_pb2.Summary, names: Mapping[str, str]) -> bool:
    """Sets the owner of each action item owned by a speaker to how that speaker is shown.

    Returns:
        Whether an owner changed.
    """
    changed = False
    for item in summary.action_items:
        if item.owner_speaker:
            owner = shown(item.owner_speaker, names)
            changed |= owner != item.owner
            item.owner = owner
    return changed


class SpeakerNaming:
    """Renames speakers of a caller's meeting (owner-scoped), and names them for the pipeline."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        meetings: MeetingsRepository,
        events: EventsRepository,
        log: EventLog,
        writer: TranscriptWriter,
    ) -> None:
        self._pool = pool
        self._meetings = meetings
        self._events = events
        self._log = log
        self._writer = writer

    async def rename(self, owner: str, meeting_id: str, speaker: str, name: str) -> dict[str, str]:
        """Names a speaker label of a caller's meeting ("" removes the name).

        Args:
            owner: The caller.
            meeting_id: The meeting.
            speaker: A label its transcript shows ("SPEAKER_2").
            name: The name; blanks around it are dropped.

        Returns:
            The meeting's speaker map after the change: label to name.

        Raises:
            MeetingError: MEETING_NOT_FOUND; INVALID_FIELD for a bad field; SPEAKER_NOT_FOUND
                for a label the transcript does not have.
        """
        mid = validation.meeting_id(meeting_id)
        request = _REQUEST(speaker=speaker, name=name.strip())
        validation.check(request, "speaker", "speaker")
        validation.check(request, "name", "name")
        async with self._pool.acquire() as conn, conn.transaction():
            row = await self._meetings.get(conn, mid, owner=owner, for_update=True)
            if row is None:
                raise not_found(mid)
            segments = [
                meeting_pb2.Segment.FromString(stored.payload)
                for stored in await self._events.segments(conn, mid)
            ]
            labels = dict.fromkeys(s.speaker for s in segments if s.speaker)
            if speaker not in labels:
                raise speaker_not_found(
                    speaker,
                    list(labels),
                    f"the transcript has no speaker {speaker!r}; its speakers: "
                    f"{', '.join(labels) or 'none yet'}",
                )
            await self._events.set_speaker_names(conn, mid, {speaker: request.name})
            names = await self._events.speaker_names(conn, mid)
            await self._writer.store(conn, mid, named(segments, names))
            if row.summary is not None:
                summary = meeting_pb2.Summary.FromString(row.summary)
                if owners_named(summary, names):
                    await self._log.put_summary(conn, mid, summary)
        return names

    async def name_unnamed(
        self, conn: asyncpg.Connection, meeting_id: uuid.UUID, names: Mapping[str, str]
    ) -> dict[str, str]:
        """Names labels that have no name yet (internal: voice profiles matched by a job).

        A name the caller gave stays. Run it before the labelled segments are stored,
        which then take the names.

        Args:
            conn: The connection, in the job's transaction.
            meeting_id: The meeting.
            names: Label to name.

        Returns:
            The meeting's speaker map after the change.
        """
        current = await self._events.speaker_names(conn, meeting_id)
        new = {label: name for label, name in names.items() if label not in current}
        if new:
            await self._events.set_speaker_names(conn, meeting_id, new)
        return {**current, **new}
