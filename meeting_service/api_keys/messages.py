"""A stored API key as its `meeting.v1.ApiKey` message."""

from __future__ import annotations

from gen.meeting.v1 import api_keys_pb2
from meeting_service.api_keys.repository import ApiKeyRow
from meeting_service.meetings.messages import timestamp


def api_key_message(row: ApiKeyRow) -> api_keys_pb2.ApiKey:
    """Builds the `ApiKey` message of a row (the key itself is never in it)."""
    message = api_keys_pb2.ApiKey(
        id=str(row.id),
        name=row.name,
        scopes=row.scopes,
        prefix=row.prefix,
        create_time=timestamp(row.create_time),
    )
    if row.last_use_time is not None:
        message.last_use_time.CopyFrom(timestamp(row.last_use_time))
    return message
