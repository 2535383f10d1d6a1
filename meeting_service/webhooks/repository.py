"""SQL for webhooks: endpoints, the event outbox, deliveries with leases, attempts.

Events and their deliveries are written inside the transaction that changes a meeting's
status, so a committed change always has its deliveries and a rolled-back one has none.
A deliverer `claim`s one due delivery with `FOR UPDATE SKIP LOCKED` and moves its
`next_attempt_at` forward by a lease: no other deliverer (in any replica) gets it until the
lease has run out, which happens only when its deliverer died. `finish` records the attempt
and is fenced by the claim, so a deliverer whose lease lapsed changes nothing but the log.
"""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg


class DeliveryStatus(enum.StrEnum):
    """Where a delivery is."""

    PENDING = "PENDING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"


@dataclass(frozen=True)
class EndpointRow:
    """A registered endpoint (its secret is not read here)."""

    id: uuid.UUID
    owner: str
    url: str
    event_types: list[str]
    description: str
    consecutive_failures: int
    disabled_reason: str
    create_time: dt.datetime


@dataclass(frozen=True)
class AttemptRow:
    """One attempt at a delivery."""

    delivery_id: uuid.UUID
    attempt: int
    status_code: int
    latency_ms: int
    error: str
    response_prefix: bytes
    create_time: dt.datetime


@dataclass(frozen=True)
class DeliveryRow:
    """A delivery with what it carries."""

    id: uuid.UUID
    endpoint_id: uuid.UUID
    event_id: uuid.UUID
    event_type: str
    meeting_id: uuid.UUID
    status: DeliveryStatus
    attempts: int
    next_attempt_at: dt.datetime
    last_error: str
    create_time: dt.datetime


@dataclass(frozen=True)
class Claim:
    """A delivery claimed for one attempt.

    Attributes:
        delivery_id: The delivery.
        attempt: The number of this attempt (the claim's fence).
        claimed_at: The database's time at the claim.
        retry_since: Start of the delivery's retry window.
        endpoint_id: The endpoint.
        url: Where to send it.
        secret: The stored secret (sealed when `secret_sealed`).
        secret_sealed: Whether `secret` is sealed.
        event_id: The event.
        body: The exact body to send.
    """

    delivery_id: uuid.UUID
    attempt: int
    claimed_at: dt.datetime
    retry_since: dt.datetime
    endpoint_id: uuid.UUID
    url: str
    secret: bytes
    secret_sealed: bool
    event_id: uuid.UUID
    body: bytes


@dataclass(frozen=True)
class Outcome:
    """How an attempt ended.

    Attributes:
        status_code: The answer's HTTP status; 0 when none came.
        latency_ms: How long it took.
        error: Why it failed; "" when it succeeded.
        response_prefix: The first bytes of the answer's body.
    """

    status_code: int
    latency_ms: int
    error: str
    response_prefix: bytes = b""

    @property
    def succeeded(self) -> bool:
        """Whether the endpoint took the event (no error)."""
        return not self.error


_ENDPOINT = (
    "id, owner, url, event_types, description, consecutive_failures, disabled_reason, create_time"
)
_DELIVERY = """
    d.id, d.endpoint_id, d.event_id, v.type AS event_type, v.meeting_id, d.status, d.attempts,
    d.next_attempt_at, d.last_error, d.create_time
"""


def _delivery(record: asyncpg.Record) -> DeliveryRow:
    values = dict(record.items())
    values["status"] = DeliveryStatus(values["status"])
    return DeliveryRow(**values)


class WebhooksRepository:
    """Reads and writes the `webhook_*` tables."""

    async def create_endpoint(
        self,
        conn: asyncpg.Connection | asyncpg.Pool,
        *,
        endpoint_id: uuid.UUID,
        owner: str,
        url: str,
        event_types: Sequence[str],
        description: str,
        secret: bytes,
        secret_sealed: bool,
    ) -> EndpointRow:
        """Registers an endpoint."""
        record = await conn.fetchrow(
            f"""
            INSERT INTO webhook_endpoints
                (id, owner, url, event_types, description, secret, secret_sealed)
            VALUES ($1, $2, $3, $4, $5, $6, $7)
            RETURNING {_ENDPOINT}
            """,  # noqa: S608
            endpoint_id,
            owner,
            url,
            list(event_types),
            description,
            secret,
            secret_sealed,
        )
        assert record is not None
        return EndpointRow(**dict(record.items()))

    async def list_endpoints(
        self, conn: asyncpg.Connection | asyncpg.Pool, owner: str
    ) -> list[EndpointRow]:
        """Lists an owner's endpoints, newest first."""
        records = await conn.fetch(
            f"SELECT {_ENDPOINT} FROM webhook_endpoints WHERE owner = $1"  # noqa: S608
            " ORDER BY create_time DESC, id DESC",
            owner,
        )
        return [EndpointRow(**dict(r.items())) for r in records]

    async def get_endpoint(
        self, conn: asyncpg.Connection | asyncpg.Pool, owner: str, endpoint_id: uuid.UUID
    ) -> EndpointRow | None:
        """Reads an owner's endpoint (another owner's reads as missing)."""
        record = await conn.fetchrow(
            f"SELECT {_ENDPOINT} FROM webhook_endpoints WHERE id = $1 AND owner = $2",  # noqa: S608
            endpoint_id,
            owner,
        )
        return None if record is None else EndpointRow(**dict(record.items()))

    async def delete_endpoint(
        self, conn: asyncpg.Connection | asyncpg.Pool, owner: str, endpoint_id: uuid.UUID
    ) -> bool:
        """Deletes an owner's endpoint and its deliveries; False when there was none."""
        deleted = await conn.fetchval(
            "DELETE FROM webhook_endpoints WHERE id = $1 AND owner = $2 RETURNING id",
            endpoint_id,
            owner,
        )
        return deleted is not None

    async def record_event(
        self,
        conn: asyncpg.Connection,
        *,
        owner: str,
        meeting_id: uuid.UUID,
        event_type: str,
        body: bytes,
    ) -> int:
        """Stores an event with a delivery to each enabled endpoint of the owner that wants it.

        Call it inside the transaction that causes the event. Nothing is stored when no
        endpoint wants it, or when the meeting already announced an event of this type.

        Returns:
            How many deliveries were queued.
        """
        queued: int = await conn.fetchval(
            """
            WITH targets AS (
                SELECT id FROM webhook_endpoints
                WHERE owner = $1 AND disabled_reason = '' AND $3 = ANY (event_types)
            ), event AS (
                INSERT INTO webhook_events (id, meeting_id, type, body)
                SELECT $4, $2, $3, $5 WHERE EXISTS (SELECT 1 FROM targets)
                ON CONFLICT (meeting_id, type) DO NOTHING
                RETURNING id
            ), queued AS (
                INSERT INTO webhook_deliveries (id, endpoint_id, event_id, status)
                SELECT gen_random_uuid(), targets.id, event.id, 'PENDING' FROM targets, event
                RETURNING 1
            )
            SELECT count(*) FROM queued
            """,
            owner,
            meeting_id,
            event_type,
            uuid.uuid4(),
            body,
        )
        return queued

    async def claim(
        self, conn: asyncpg.Connection | asyncpg.Pool, worker: str, lease_s: float
    ) -> Claim | None:
        """Takes the delivery that has been due longest, for one attempt.

        Args:
            conn: The connection or pool.
            worker: A name for the deliverer (unique per process and task).
            lease_s: How long the claim holds; the attempt must end well within it.

        Returns:
            The claim, or None when nothing is due.
        """
        record = await conn.fetchrow(
            """
            WITH due AS (
                SELECT d.id FROM webhook_deliveries d
                JOIN webhook_endpoints e ON e.id = d.endpoint_id
                WHERE d.status = 'PENDING' AND d.next_attempt_at <= clock_timestamp()
                  AND e.disabled_reason = ''
                ORDER BY d.next_attempt_at
                LIMIT 1
                FOR UPDATE OF d SKIP LOCKED
            )
            UPDATE webhook_deliveries d SET attempts = d.attempts + 1, lease_owner = $1,
                next_attempt_at = clock_timestamp() + make_interval(secs => $2),
                update_time = clock_timestamp()
            FROM due, webhook_endpoints e, webhook_events v
            WHERE d.id = due.id AND e.id = d.endpoint_id AND v.id = d.event_id
            RETURNING d.id AS delivery_id, d.attempts AS attempt,
                clock_timestamp() AS claimed_at, d.retry_since, e.id AS endpoint_id, e.url,
                e.secret, e.secret_sealed, v.id AS event_id, v.body
            """,
            worker,
            lease_s,
        )
        return None if record is None else Claim(**dict(record.items()))

    async def finish(
        self,
        conn: asyncpg.Connection,
        claim: Claim,
        worker: str,
        outcome: Outcome,
        *,
        retry_in: float | None,
        disable_after: int,
    ) -> bool:
        """Records an attempt and what follows from it, in the caller's transaction.

        Args:
            conn: The connection, in a transaction.
            claim: The claim the attempt was made under.
            worker: The deliverer that claimed it.
            outcome: How the attempt ended.
            retry_in: Seconds until the next attempt after a failure; None gives up.
            disable_after: Consecutive failures that disable the endpoint.

        Returns:
            Whether this failure disabled the endpoint (its pending deliveries are then
            FAILED).
        """
        # The endpoint's row first, as a redelivery takes it: a failure that disables the
        # endpoint then writes the other deliveries of it, so every writer of an endpoint's
        # deliveries must queue on its row before touching theirs.
        await conn.execute(
            "SELECT 1 FROM webhook_endpoints WHERE id = $1 FOR NO KEY UPDATE", claim.endpoint_id
        )
        await conn.execute(
            """
            INSERT INTO webhook_attempts
                (delivery_id, attempt, status_code, latency_ms, error, response_prefix)
            VALUES ($1, $2, $3, $4, $5, $6)
            ON CONFLICT (delivery_id, attempt) DO NOTHING
            """,
            claim.delivery_id,
            claim.attempt,
            outcome.status_code,
            outcome.latency_ms,
            outcome.error,
            outcome.response_prefix,
        )
        if outcome.succeeded:
            status = DeliveryStatus.SUCCEEDED
        else:
            status = DeliveryStatus.FAILED if retry_in is None else DeliveryStatus.PENDING
        still_ours = await conn.fetchval(
            """
            UPDATE webhook_deliveries SET status = $4, last_error = $5, lease_owner = NULL,
                next_attempt_at = clock_timestamp() + make_interval(secs => COALESCE($6, 0)),
                update_time = clock_timestamp()
            WHERE id = $1 AND lease_owner = $2 AND attempts = $3 AND status = 'PENDING'
            RETURNING true
            """,
            claim.delivery_id,
            worker,
            claim.attempt,
            status.value,
            outcome.error,
            retry_in,
        )
        if not still_ours:
            return False
        if outcome.succeeded:
            await conn.execute(
                "UPDATE webhook_endpoints SET consecutive_failures = 0 WHERE id = $1",
                claim.endpoint_id,
            )
            return False
        reason = f"disabled after {disable_after} consecutive failed attempts"
        disabled = await conn.fetchval(
            """
            UPDATE webhook_endpoints SET consecutive_failures = consecutive_failures + 1,
                disabled_reason = CASE
                    WHEN disabled_reason = '' AND consecutive_failures + 1 >= $2 THEN $3
                    ELSE disabled_reason END,
                update_time = clock_timestamp()
            WHERE id = $1
            RETURNING disabled_reason = $3 AND consecutive_failures = $2
            """,
            claim.endpoint_id,
            disable_after,
            reason,
        )
        if disabled:
            await conn.execute(
                """
                UPDATE webhook_deliveries SET status = 'FAILED', lease_owner = NULL,
                    last_error = $2, update_time = clock_timestamp()
                WHERE endpoint_id = $1 AND status = 'PENDING'
                """,
                claim.endpoint_id,
                f"the endpoint was {reason}",
            )
        return bool(disabled)

    async def list_deliveries(
        self,
        conn: asyncpg.Connection | asyncpg.Pool,
        endpoint_id: uuid.UUID,
        *,
        limit: int,
        before: tuple[dt.datetime, uuid.UUID] | None,
    ) -> list[DeliveryRow]:
        """Lists an endpoint's deliveries, newest first, strictly after a keyset position."""
        records = await conn.fetch(
            f"""
            SELECT {_DELIVERY}
            FROM webhook_deliveries d JOIN webhook_events v ON v.id = d.event_id
            WHERE d.endpoint_id = $1
              AND ($2::timestamptz IS NULL OR (d.create_time, d.id) < ($2, $3::uuid))
            ORDER BY d.create_time DESC, d.id DESC
            LIMIT $4
            """,  # noqa: S608
            endpoint_id,
            before[0] if before else None,
            before[1] if before else None,
            limit,
        )
        return [_delivery(r) for r in records]

    async def attempts_of(
        self, conn: asyncpg.Connection | asyncpg.Pool, delivery_ids: Sequence[uuid.UUID]
    ) -> dict[uuid.UUID, list[AttemptRow]]:
        """Reads the attempts of deliveries, oldest first per delivery."""
        records = await conn.fetch(
            """
            SELECT delivery_id, attempt, status_code, latency_ms, error, response_prefix,
                   create_time
            FROM webhook_attempts WHERE delivery_id = ANY ($1::uuid[])
            ORDER BY delivery_id, attempt
            """,
            list(delivery_ids),
        )
        found: dict[uuid.UUID, list[AttemptRow]] = {d: [] for d in delivery_ids}
        for record in records:
            found[record["delivery_id"]].append(AttemptRow(**dict(record.items())))
        return found

    async def redeliver(
        self,
        conn: asyncpg.Connection,
        owner: str,
        endpoint_id: uuid.UUID,
        delivery_id: uuid.UUID,
    ) -> DeliveryRow | None:
        """Makes an owner's delivery due now with a fresh retry window, enabling its endpoint.

        Returns:
            The delivery, or None when the owner has no such endpoint or delivery.
        """
        enabled = await conn.fetchval(
            """
            UPDATE webhook_endpoints SET disabled_reason = '',
                consecutive_failures = CASE WHEN disabled_reason = '' THEN consecutive_failures
                                            ELSE 0 END,
                update_time = clock_timestamp()
            WHERE id = $1 AND owner = $2
              AND EXISTS (SELECT 1 FROM webhook_deliveries
                          WHERE id = $3 AND endpoint_id = webhook_endpoints.id)
            RETURNING true
            """,
            endpoint_id,
            owner,
            delivery_id,
        )
        if not enabled:
            return None
        record = await conn.fetchrow(
            f"""
            UPDATE webhook_deliveries d SET status = 'PENDING', lease_owner = NULL,
                next_attempt_at = clock_timestamp(), retry_since = clock_timestamp(),
                update_time = clock_timestamp()
            FROM webhook_events v
            WHERE d.id = $1 AND v.id = d.event_id
            RETURNING {_DELIVERY}
            """,  # noqa: S608
            delivery_id,
        )
        assert record is not None
        return _delivery(record)
