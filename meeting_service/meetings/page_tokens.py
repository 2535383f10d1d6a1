"""Opaque page tokens for ListMeetings: a keyset position bound to the caller.

The token carries the (create_time, id) of the last meeting of the page; the next page
starts strictly after it, so meetings created meanwhile (which sort first) never shift a
page. A digest of the owner ties the token to the query: another caller's token is
rejected rather than read.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import uuid

from contract_errors.meeting import MeetingError
from gen.meeting.v1 import meeting_pb2

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def _owner_tag(owner: str) -> str:
    return hashlib.sha256(owner.encode()).hexdigest()[:16]


def encode(owner: str, create_time: dt.datetime, meeting_id: uuid.UUID) -> str:
    """Returns the token for the page after the meeting (create_time, meeting_id)."""
    # Exact integer microseconds: `timestamp()` would round through a float and could
    # repeat or skip a row at the page boundary.
    micros = (create_time - _EPOCH) // dt.timedelta(microseconds=1)
    body = json.dumps({"o": _owner_tag(owner), "t": micros, "i": str(meeting_id)})
    return base64.urlsafe_b64encode(body.encode()).decode().rstrip("=")


def decode(owner: str, token: str) -> tuple[dt.datetime, uuid.UUID]:
    """Reads a token issued by `encode` for this owner.

    Returns:
        The keyset position.

    Raises:
        MeetingError: INVALID_PAGE_TOKEN for anything else.
    """
    try:
        padded = token + "=" * (-len(token) % 4)
        body = json.loads(base64.urlsafe_b64decode(padded.encode()))
        if body["o"] != _owner_tag(owner):
            raise ValueError("token of another caller")
        when = _EPOCH + dt.timedelta(microseconds=int(body["t"]))
        return when, uuid.UUID(body["i"])
    except (ValueError, KeyError, TypeError, OverflowError):
        raise MeetingError(
            meeting_pb2.ERROR_REASON_INVALID_PAGE_TOKEN,
            "page_token is not one this server issued for this query",
            {"field": "page_token"},
        ) from None
