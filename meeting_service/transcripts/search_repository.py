"""SQL for full-text search over the final segments of an owner's meetings.

The vectors are the database's (migration 0003): each final segment's text under the
text search configuration of its language. A query is parsed once per configuration with
`websearch_to_tsquery`, and each segment is matched against the query parsed in its own
configuration, so English segments match by English stems and the rest by theirs.

The parsed queries are read first and sent back as a constant: the planner then sees the
words, estimates their frequency from the statistics and reads the GIN index for a rare
word (a query parsed inside the statement is unknown at planning time, and PostgreSQL
scanned every segment). For the same reason every run of the statement is planned for its
own words (`plan_cache_mode`, set for the search's read-only transaction): after five runs
of a prepared statement PostgreSQL may keep a generic plan, made without the parameters'
values, and that plan took a word found in a third of the segments from about 0.2 s to 1.2 s
(docs/search.md).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

# Around each match in a snippet; control characters no transcript holds, so the marks
# cannot be confused with the text (search.py turns them into highlight spans).
MATCH_START = "\x02"
MATCH_END = "\x03"
_HEADLINE = f"StartSel={MATCH_START}, StopSel={MATCH_END}, MaxWords=30, MinWords=12"


@dataclass(frozen=True)
class SearchFilters:
    """What narrows a search beyond its words.

    Attributes:
        created_after: Only meetings created at or after this time.
        created_before: Only meetings created before this time.
        statuses: Only meetings in one of these statuses (empty: any).
        speaker: Only segments of this speaker label ("": any).
    """

    created_after: dt.datetime | None = None
    created_before: dt.datetime | None = None
    statuses: Sequence[int] = ()
    speaker: str = ""


@dataclass(frozen=True)
class SearchPosition:
    """A hit's place in the ranking: best rank first, then meeting and segment order."""

    rank: float
    meeting_id: uuid.UUID
    segment_index: int


@dataclass(frozen=True)
class SearchHitRow:
    """One matching segment with its meeting.

    Attributes:
        meeting_id: The meeting.
        title: The meeting's title.
        create_time: When the meeting was created.
        status: The meeting's status (a `meeting.v1.MeetingStatus` value).
        segment_index: The segment's index.
        start_us: Its start in the recording.
        end_us: Its end in the recording.
        speaker: Its speaker label.
        snippet: Its text around the matches, each between MATCH_START and MATCH_END.
        rank: Cover density of the match (`ts_rank_cd`).
    """

    meeting_id: uuid.UUID
    title: str
    create_time: dt.datetime
    status: int
    segment_index: int
    start_us: int
    end_us: int
    speaker: str
    snippet: str
    rank: float

    @property
    def position(self) -> SearchPosition:
        """Where the next page starts after this hit."""
        return SearchPosition(self.rank, self.meeting_id, self.segment_index)


class SearchRepository:
    """Reads the search index of `segments`."""

    async def search(
        self,
        conn: asyncpg.Connection,
        *,
        owner: str,
        query: str,
        filters: SearchFilters,
        after: SearchPosition | None,
        limit: int,
    ) -> list[SearchHitRow]:
        """Finds an owner's final segments matching a query, best first.

        Args:
            conn: The connection, outside a transaction (the search opens its own).
            owner: Whose meetings to search; no other meeting is read.
            query: The query in web-search syntax.
            filters: The filters.
            after: The last hit of the previous page (the page starts strictly after
                it), or None for the first page.
            limit: Most hits to return.

        Returns:
            The hits, ordered by rank (highest first), then meeting id and segment index.
        """
        async with conn.transaction(readonly=True):
            await conn.execute("SET LOCAL plan_cache_mode = force_custom_plan")
            # The query in every configuration a segment may have; a query of stop words
            # only parses to nothing.
            parses = await conn.fetch(
                """
                SELECT q.config, q.query::text AS query
                FROM (
                    SELECT c.config, websearch_to_tsquery(c.config::regconfig, $1) AS query
                    FROM (SELECT config FROM search_configs UNION SELECT 'simple') AS c (config)
                ) AS q
                WHERE numnode(q.query) > 0
                """,
                query,
            )
            if not parses:
                return []
            records = await conn.fetch(
                """
                WITH hits AS (
                    SELECT s.meeting_id, s.segment_index, s.start_us, s.end_us, s.speaker,
                           s.text, q.config, q.query, m.title, m.create_time, m.status,
                           ts_rank_cd(s.search_vector, q.query) AS rank
                    FROM segments s
                    JOIN unnest($2::text[], $3::text[]::tsquery[]) AS q (config, query)
                      ON q.config = s.search_config
                    JOIN meetings m ON m.id = s.meeting_id
                    WHERE s.search_vector @@ ANY ($13::text[]::tsquery[])
                      AND s.search_vector @@ q.query
                      AND m.owner = $1
                      AND ($4::timestamptz IS NULL OR m.create_time >= $4)
                      AND ($5::timestamptz IS NULL OR m.create_time < $5)
                      AND (cardinality($6::smallint[]) = 0 OR m.status = ANY ($6))
                      AND ($7 = '' OR s.speaker = $7)
                ),
                page AS (
                    SELECT * FROM hits
                    WHERE $8::real IS NULL
                       OR hits.rank < $8
                       OR (hits.rank = $8 AND (hits.meeting_id, hits.segment_index) > ($9, $10))
                    ORDER BY hits.rank DESC, hits.meeting_id, hits.segment_index
                    LIMIT $11
                )
                SELECT page.meeting_id, page.title, page.create_time, page.status,
                       page.segment_index, page.start_us, page.end_us, page.speaker, page.rank,
                       ts_headline(page.config::regconfig, page.text, page.query, $12) AS snippet
                FROM page
                ORDER BY page.rank DESC, page.meeting_id, page.segment_index
                """,
                owner,
                [p["config"] for p in parses],
                [p["query"] for p in parses],
                filters.created_after,
                filters.created_before,
                list(filters.statuses),
                filters.speaker,
                after.rank if after else None,
                after.meeting_id if after else None,
                after.segment_index if after else None,
                limit,
                _HEADLINE,
                sorted({p["query"] for p in parses}),
            )
        return [SearchHitRow(**dict(r.items())) for r in records]
