"""Stored rows to `meeting.v1` messages."""

from __future__ import annotations

from google.protobuf import duration_pb2, timestamp_pb2

from gen.meeting.v1 import meeting_pb2
from meeting_service.repositories.events import EventRow
from meeting_service.repositories.meetings import MeetingRow

# Event kinds as stored, and the `TranscriptEvent.kind` field each one fills.
SEGMENT = "segment"
STATUS_CHANGE = "status_change"
SUMMARY = "summary"


def timestamp(value: object) -> timestamp_pb2.Timestamp:
    """Converts an aware datetime to a Timestamp."""
    result = timestamp_pb2.Timestamp()
    result.FromDatetime(value)  # type: ignore[arg-type]
    return result


def duration_from_us(value: int) -> duration_pb2.Duration:
    """Converts microseconds to a Duration."""
    result = duration_pb2.Duration()
    result.FromMicroseconds(value)
    return result


def meeting(row: MeetingRow) -> meeting_pb2.Meeting:
    """Builds the `Meeting` message of a row."""
    message = meeting_pb2.Meeting(
        id=str(row.id),
        owner=row.owner,
        title=row.title,
        language=row.language,
        expected_speakers=row.expected_speakers,
        status=row.status,  # type: ignore[arg-type]
        failure_reason=row.failure_reason,
        create_time=timestamp(row.create_time),
        update_time=timestamp(row.update_time),
        content_type=row.content_type,
        audio_size_bytes=row.audio_size_bytes,
    )
    if row.duration_us is not None:
        message.duration.CopyFrom(duration_from_us(row.duration_us))
    return message


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
