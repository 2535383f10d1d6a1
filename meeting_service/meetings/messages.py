"""A stored meeting as its `meeting.v1.Meeting` message, and the time types it uses."""

from __future__ import annotations

from google.protobuf import duration_pb2, timestamp_pb2

from gen.meeting.v1 import meeting_pb2
from meeting_service.meetings.repository import MeetingRow


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


def meeting_message(row: MeetingRow) -> meeting_pb2.Meeting:
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
        detected_language=row.detected_language,
        vocabulary=row.vocabulary,
    )
    if row.duration_us is not None:
        message.duration.CopyFrom(duration_from_us(row.duration_us))
    return message
