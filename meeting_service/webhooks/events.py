"""The event types a webhook may ask for, and the body each is sent with.

Each type is announced once per meeting (`webhook_events` is unique on meeting and type),
with the meeting as it was in the transaction that caused it.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Mapping

from google.protobuf import json_format

from gen.meeting.v1 import meeting_pb2

MEETING_COMPLETED = "meeting.completed"
MEETING_FAILED = "meeting.failed"
TRANSCRIPT_READY = "transcript.ready"
MEETING_DELETED = "meeting.deleted"
EVENT_TYPES = (MEETING_COMPLETED, MEETING_FAILED, TRANSCRIPT_READY, MEETING_DELETED)

# A meeting enters DIARIZING only once recognition is done and every final segment is
# stored (a job's stage order, and a live session that ended cleanly), so that is when its
# transcript is ready to read.
STATUS_EVENTS: Mapping[int, str] = {
    meeting_pb2.MEETING_STATUS_COMPLETED: MEETING_COMPLETED,
    meeting_pb2.MEETING_STATUS_FAILED: MEETING_FAILED,
    meeting_pb2.MEETING_STATUS_DIARIZING: TRANSCRIPT_READY,
}


def message_id(event_id: uuid.UUID) -> str:
    """The `webhook-id` of an event: the same on every attempt, for receivers to de-duplicate."""
    return f"msg_{event_id.hex}"


def event_body(event_type: str, meeting: meeting_pb2.Meeting, when: dt.datetime) -> bytes:
    """The JSON body of an event: `{"type", "timestamp", "data": {"meeting": ...}}`.

    The meeting is in the proto3 JSON form the REST API answers with. The timestamp always
    has six fraction digits, so receivers can order events by comparing the strings.
    """
    payload = {
        "type": event_type,
        "timestamp": when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "data": {
            "meeting": json_format.MessageToDict(meeting, always_print_fields_with_no_presence=True)
        },
    }
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
