"""Search across a caller's transcripts: ranked hits with highlighted snippets, paged.

Pages are keyset pages over the ranking (rank, meeting, segment): a page starts strictly
after the last hit of the previous one, so a meeting deleted between pages removes its own
hits and shifts nothing else. The page token is bound to the caller and to the query and
its filters (docs/search.md).
"""

from __future__ import annotations

import datetime as dt
import json
import uuid

import asyncpg
from google.protobuf import timestamp_pb2

from gen.meeting.v1 import search_pb2
from meeting_service import validation
from meeting_service.meetings import page_tokens
from meeting_service.meetings.messages import duration_from_us, timestamp
from meeting_service.transcripts.search_repository import (
    MATCH_END,
    MATCH_START,
    SearchFilters,
    SearchHitRow,
    SearchPosition,
    SearchRepository,
)

DEFAULT_PAGE_SIZE = 20


class TranscriptSearch:
    """Searches the final segments of the caller's meetings, and no one else's."""

    def __init__(self, pool: asyncpg.Pool, search: SearchRepository) -> None:
        self._pool = pool
        self._search = search

    async def search(
        self, owner: str, request: search_pb2.SearchTranscriptsRequest
    ) -> tuple[list[search_pb2.SearchHit], str]:
        """Runs one page of a search.

        Args:
            owner: The caller.
            request: The query, its filters and the page.

        Returns:
            The hits, best first, and the next page's token ("" on the last page).

        Raises:
            MeshError: INVALID_FIELD for a missing or malformed field; INVALID_PAGE_TOKEN
                for a token of another caller or another query.
        """
        for name in ("query", "speaker", "page_size"):
            validation.check(request, name, name)
        filters = SearchFilters(
            created_after=(
                _time(request.created_after) if request.HasField("created_after") else None
            ),
            created_before=(
                _time(request.created_before) if request.HasField("created_before") else None
            ),
            statuses=sorted(set(request.statuses)),
            speaker=request.speaker,
        )
        size = request.page_size or DEFAULT_PAGE_SIZE
        scope = _scope(request.query, filters)
        after = _position(owner, request.page_token, scope) if request.page_token else None
        # One extra row tells whether another page exists without a second query.
        async with self._pool.acquire() as conn:
            rows = await self._search.search(
                conn,
                owner=owner,
                query=request.query,
                filters=filters,
                after=after,
                limit=size + 1,
            )
        page, more = rows[:size], len(rows) > size
        token = _token(owner, page[-1].position, scope) if more else ""
        return [hit_message(row) for row in page], token


def hit_message(row: SearchHitRow) -> search_pb2.SearchHit:
    """Builds the `SearchHit` message of a row, its match marks turned into spans."""
    snippet, spans = highlights(row.snippet)
    hit = search_pb2.SearchHit(
        meeting_id=str(row.meeting_id),
        meeting_title=row.title,
        meeting_create_time=timestamp(row.create_time),
        meeting_status=row.status,  # type: ignore[arg-type]
        segment_id=f"{row.meeting_id}:{row.segment_index}",
        segment_index=row.segment_index,
        start_offset=duration_from_us(row.start_us),
        end_offset=duration_from_us(row.end_us),
        speaker=row.speaker,
        snippet=snippet,
        score=row.rank,
    )
    for start, end in spans:
        hit.highlights.add(start=start, end=end)
    return hit


def highlights(marked: str) -> tuple[str, list[tuple[int, int]]]:
    """Removes the match marks from a snippet.

    Args:
        marked: The snippet with each match between MATCH_START and MATCH_END.

    Returns:
        The plain snippet and each match's (start, end) in code points.
    """
    plain: list[str] = []
    spans: list[tuple[int, int]] = []
    length = 0
    start = -1
    for char in marked:
        if char == MATCH_START:
            start = length
        elif char == MATCH_END:
            if start >= 0:
                spans.append((start, length))
            start = -1
        else:
            plain.append(char)
            length += 1
    return "".join(plain), spans


def _time(value: timestamp_pb2.Timestamp) -> dt.datetime:
    return value.ToDatetime(tzinfo=dt.UTC)


def _scope(query: str, filters: SearchFilters) -> str:
    return json.dumps(
        [
            query,
            filters.created_after.isoformat() if filters.created_after else "",
            filters.created_before.isoformat() if filters.created_before else "",
            list(filters.statuses),
            filters.speaker,
        ]
    )


def _token(owner: str, position: SearchPosition, scope: str) -> str:
    # The rank is a float4 read as a Python float: its repr reads back to the same value,
    # so the next page starts exactly after this hit.
    return page_tokens.seal(
        owner,
        {"r": position.rank, "m": str(position.meeting_id), "i": position.segment_index},
        scope,
    )


def _position(owner: str, token: str, scope: str) -> SearchPosition:
    body = page_tokens.unseal(owner, token, scope)
    try:
        return SearchPosition(float(body["r"]), uuid.UUID(body["m"]), int(body["i"]))
    except (ValueError, KeyError, TypeError):
        raise page_tokens.invalid_token() from None
