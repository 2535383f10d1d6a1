"""SQL for quotas: what a caller holds now, counted under a per-caller lock."""

from __future__ import annotations

import uuid

import asyncpg

# The per-minute rate counts upload starts over this window.
RATE_WINDOW_S = 60.0


class QuotasRepository:
    """Counts a caller's uploads, stored bytes and live sessions."""

    async def lock_owner(self, conn: asyncpg.Connection, owner: str) -> None:
        """Serialises, until the transaction ends, every quota check of one caller.

        Two calls of the same caller on different replicas then count each other: the
        second waits for the first's commit and sees what it added.
        """
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended('quota:' || $1, 0))", owner
        )

    async def upload_starts(self, conn: asyncpg.Connection, owner: str) -> tuple[int, float]:
        """Counts the caller's upload starts in the last `RATE_WINDOW_S`; deletes older ones.

        Returns:
            How many, and seconds until the oldest leaves the window (0 when none).
        """
        await conn.execute(
            "DELETE FROM upload_starts WHERE owner = $1"
            " AND start_time < clock_timestamp() - make_interval(secs => $2)",
            owner,
            RATE_WINDOW_S,
        )
        record = await conn.fetchrow(
            """
            SELECT count(*) AS starts,
                   coalesce(extract(epoch FROM min(start_time) + make_interval(secs => $2)
                                               - clock_timestamp()), 0)::float8 AS frees_in_s
            FROM upload_starts WHERE owner = $1
            """,
            owner,
            RATE_WINDOW_S,
        )
        assert record is not None
        return int(record["starts"]), max(0.0, float(record["frees_in_s"]))

    async def record_upload_start(self, conn: asyncpg.Connection, owner: str) -> None:
        """Counts one upload start of the caller."""
        await conn.execute("INSERT INTO upload_starts (owner) VALUES ($1)", owner)

    async def held_bytes(
        self, conn: asyncpg.Connection, owner: str, except_meeting: uuid.UUID
    ) -> int:
        """Returns the bytes the caller's other recordings hold or were declared to hold.

        An unfinished upload counts its declared total (accepted, so reserved); a finished
        one, or one without a declared total, what is stored.
        """
        held: int = await conn.fetchval(
            """
            SELECT coalesce(sum(CASE WHEN u.complete THEN u.stored_size
                                     ELSE greatest(u.stored_size, coalesce(u.total_size, 0))
                                END), 0)::bigint
            FROM uploads u JOIN meetings m ON m.id = u.meeting_id
            WHERE m.owner = $1 AND m.id <> $2
            """,
            owner,
            except_meeting,
        )
        return held

    async def live_sessions(self, conn: asyncpg.Connection, owner: str, live_status: int) -> int:
        """Counts the caller's meetings in the live status."""
        sessions: int = await conn.fetchval(
            "SELECT count(*) FROM meetings WHERE owner = $1 AND status = $2", owner, live_status
        )
        return sessions
