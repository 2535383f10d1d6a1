"""Opaque page tokens: a keyset position bound to the caller and to the query.

A token carries the sort key of the last row of a page; the next page starts strictly
after it, so rows added meanwhile never shift a page. A digest of the owner and of the
query's scope (filters and terms) ties the token to the query: a token of another caller
or of another query is rejected rather than read.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import uuid
from typing import Any

from contract_errors.meeting import MeetingError
from gen.meeting.v1 import meeting_pb2

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def _tag(owner: str, scope: str) -> str:
    bound = owner if not scope else f"{owner}\0{scope}"
    return hashlib.sha256(bound.encode()).hexdigest()[:16]


def seal(owner: str, position: dict[str, Any], scope: str = "") -> str:
    """Returns a token holding a keyset position, for this owner and query scope.

    Args:
        owner: The caller.
        position: JSON-serializable sort key of the last row of the page.
        scope: What else the token is valid for (the query and its filters), "" for none.
    """
    body = json.dumps({"o": _tag(owner, scope), "p": position})
    return base64.urlsafe_b64encode(body.encode()).decode().rstrip("=")


def unseal(owner: str, token: str, scope: str = "") -> dict[str, Any]:
    """Reads a token issued by `seal` for this owner and scope.

    Returns:
        The position.

    Raises:
        MeetingError: INVALID_PAGE_TOKEN for anything else.
    """
    try:
        padded = token + "=" * (-len(token) % 4)
        body = json.loads(base64.urlsafe_b64decode(padded.encode()))
        if body["o"] != _tag(owner, scope):
            raise ValueError("token of another caller or query")
        position = body["p"]
        if not isinstance(position, dict):
            raise TypeError("position is not an object")
        return position
    except (ValueError, KeyError, TypeError):
        raise invalid_token() from None


def invalid_token() -> MeetingError:
    """The error for a page token that is not one this server issued for the query."""
    return MeetingError(
        meeting_pb2.ERROR_REASON_INVALID_PAGE_TOKEN,
        "page_token is not one this server issued for this query",
        {"field": "page_token"},
    )


def encode(owner: str, create_time: dt.datetime, meeting_id: uuid.UUID) -> str:
    """Returns the ListMeetings token for the page after the meeting (create_time, id)."""
    # Exact integer microseconds: `timestamp()` would round through a float and could
    # repeat or skip a row at the page boundary.
    micros = (create_time - _EPOCH) // dt.timedelta(microseconds=1)
    return seal(owner, {"t": micros, "i": str(meeting_id)})


def decode(owner: str, token: str) -> tuple[dt.datetime, uuid.UUID]:
    """Reads a ListMeetings token issued by `encode` for this owner.

    Returns:
        The keyset position.

    Raises:
        MeetingError: INVALID_PAGE_TOKEN for anything else.
    """
    position = unseal(owner, token)
    try:
        when = _EPOCH + dt.timedelta(microseconds=int(position["t"]))
        return when, uuid.UUID(position["i"])
    except (ValueError, KeyError, TypeError, OverflowError):
        raise invalid_token() from None
