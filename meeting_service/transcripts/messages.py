"""A stored event as its `meeting.v1.TranscriptEvent` or `meeting.v1.UserEvent` message."""

from __future__ import annotations

from gen.meeting.v1 import meeting_pb2, user_events_pb2
from meeting_service.meetings.messages import meeting_message, timestamp
from meeting_service.transcripts.repository import EventRow, UserEventRow

# Event kinds as stored, and the `TranscriptEvent.kind` field each one fills.
SEGMENT = "segment"
STATUS_CHANGE = "status_change"
SUMMARY = "summary"


def event(row: EventRow) -> meeting_pb2.TranscriptEvent:
    """Builds the `TranscriptEvent` of a stored event."""
    message = meeting_pb2.TranscriptEvent(
        sequence=row.sequence,
        meeting_id=str(row.meeting_id),
        create_time=timestamp(row.create_time),
    )
    if row.kind == SEGMENT:
        message.segment.ParseFromString(row.payload)
    elif row.kind == STATUS_CHANGE:
        message.status_change.ParseFromString(row.payload)
    elif row.kind == SUMMARY:
        message.summary.ParseFromString(row.payload)
    else:  # pragma: no cover - the table's CHECK constraint forbids it
        raise ValueError(f"unknown event kind {row.kind!r}")
    return message


def user_event(row: UserEventRow) -> user_events_pb2.UserEvent:
    """Builds the `UserEvent` of a stored feed event."""
    message = user_events_pb2.UserEvent(
        sequence=row.sequence,
        meeting_id=str(row.meeting_id),
        create_time=timestamp(row.create_time),
    )
    if row.meeting is None:
        message.deleted.SetInParent()
    else:
        message.meeting.CopyFrom(meeting_message(row.meeting))
    return message
