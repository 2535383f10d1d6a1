"""SQL for live sessions' leases on their meetings (table `live_leases`, docs/live.md).

Every write here happens with the meeting's row locked by the caller (or, for a renewal,
is a single conditional update), so takeovers and sweeps are ordered by that lock.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import asyncpg

from gen.meeting.v1 import meeting_pb2


@dataclass(frozen=True)
class Lease:
    """A meeting's live lease as stored.

    Attributes:
        session_id: The session holding it; None once released.
        expired: Whether its time is over (or it was released).
        clean: False once a session ended without recognizing all the audio it stored.
    """

    session_id: uuid.UUID | None
    expired: bool
    clean: bool


class LiveLeasesRepository:
    """Reads and writes the `live_leases` table."""

    async def get(self, conn: asyncpg.Connection, meeting_id: uuid.UUID) -> Lease | None:
        """Reads a meeting's lease (the caller holds the meeting's row lock)."""
        record = await conn.fetchrow(
            "SELECT session_id, session_id IS NULL OR lease_until < clock_timestamp() AS expired,"
            " clean FROM live_leases WHERE meeting_id = $1",
            meeting_id,
        )
        return None if record is None else Lease(**dict(record.items()))

    async def take(
        self, conn: asyncpg.Connection, meeting_id: uuid.UUID, session_id: uuid.UUID, lease_s: float
    ) -> None:
        """Gives the meeting's lease to a session for `lease_s` seconds."""
        await conn.execute(
            """
            INSERT INTO live_leases (meeting_id, session_id, lease_until)
            VALUES ($1, $2, clock_timestamp() + make_interval(secs => $3))
            ON CONFLICT (meeting_id) DO UPDATE
                SET session_id = $2, lease_until = clock_timestamp() + make_interval(secs => $3)
            """,
            meeting_id,
            session_id,
            lease_s,
        )

    async def renew(
        self, pool: asyncpg.Pool, meeting_id: uuid.UUID, session_id: uuid.UUID, lease_s: float
    ) -> bool:
        """Extends a session's lease; False when the session no longer holds it."""
        result: str = await pool.execute(
            "UPDATE live_leases SET lease_until = clock_timestamp() + make_interval(secs => $3)"
            " WHERE meeting_id = $1 AND session_id = $2",
            meeting_id,
            session_id,
            lease_s,
        )
        return result != "UPDATE 0"

    async def release(
        self,
        conn: asyncpg.Connection | asyncpg.Pool,
        meeting_id: uuid.UUID,
        session_id: uuid.UUID,
        *,
        clean: bool,
    ) -> None:
        """Releases a session's lease, starting the resume grace; no-op if it lost it."""
        await conn.execute(
            "UPDATE live_leases SET session_id = NULL, lease_until = clock_timestamp(),"
            " clean = clean AND $3 WHERE meeting_id = $1 AND session_id = $2",
            meeting_id,
            session_id,
            clean,
        )

    async def delete(self, conn: asyncpg.Connection | asyncpg.Pool, meeting_id: uuid.UUID) -> None:
        """Forgets a meeting's lease (its live recording is complete)."""
        await conn.execute("DELETE FROM live_leases WHERE meeting_id = $1", meeting_id)

    async def abandoned(self, pool: asyncpg.Pool, grace_s: float, limit: int) -> list[uuid.UUID]:
        """LIVE meetings whose lease ended more than `grace_s` seconds ago."""
        records = await pool.fetch(
            """
            SELECT l.meeting_id FROM live_leases l JOIN meetings m ON m.id = l.meeting_id
            WHERE m.status = $1 AND l.lease_until < clock_timestamp() - make_interval(secs => $2)
            LIMIT $3
            """,
            meeting_pb2.MEETING_STATUS_LIVE,
            grace_s,
            limit,
        )
        return [record["meeting_id"] for record in records]

    async def is_abandoned(
        self, conn: asyncpg.Connection, meeting_id: uuid.UUID, grace_s: float
    ) -> bool:
        """Whether a meeting's lease ended more than `grace_s` seconds ago (row locked)."""
        value: bool = await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM live_leases WHERE meeting_id = $1"
            " AND lease_until < clock_timestamp() - make_interval(secs => $2))",
            meeting_id,
            grace_s,
        )
        return value
