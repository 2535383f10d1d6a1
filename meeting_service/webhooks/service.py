"""Webhook endpoints and their deliveries, every call scoped to its owner."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from contract_errors.meeting import invalid_field, webhook_not_found
from gen.meeting.v1 import webhooks_pb2
from meeting_service import validation
from meeting_service.meetings import page_tokens
from meeting_service.webhooks.addresses import AddressRefused, parse_target, resolve_allowed
from meeting_service.webhooks.events import EVENT_TYPES
from meeting_service.webhooks.repository import (
    AttemptRow,
    DeliveryRow,
    EndpointRow,
    WebhooksRepository,
)
from meeting_service.webhooks.signing import SecretBox, new_secret, secret_text

DEFAULT_PAGE_SIZE = 20


@dataclass(frozen=True)
class Delivery:
    """A delivery with its attempts, oldest first."""

    row: DeliveryRow
    attempts: list[AttemptRow]


class WebhooksService:
    """The webhook rules: registration checks, one-time secrets, owner-scoped reads.

    Args:
        pool: The pool.
        webhooks: SQL for webhooks.
        box: Seals secrets for storage.
        allow_private: Whether endpoints may resolve to non-public addresses.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        webhooks: WebhooksRepository,
        box: SecretBox,
        *,
        allow_private: bool,
    ) -> None:
        self._pool = pool
        self._webhooks = webhooks
        self._box = box
        self._allow_private = allow_private

    async def create(self, owner: str, webhook: webhooks_pb2.Webhook) -> tuple[EndpointRow, str]:
        """Registers an endpoint.

        Args:
            owner: The caller.
            webhook: Only url, event_types and description are read.

        Returns:
            The endpoint and its secret (`whsec_...`), which is not kept in a readable form
            anywhere else the caller can reach.

        Raises:
            MeshError: INVALID_FIELD for a bad field, an unknown event type, or a URL that
                does not resolve or resolves to an address deliveries may not reach.
        """
        validation.check(webhook, "url", "webhook.url")
        validation.check(webhook, "description", "webhook.description")
        event_types = _event_types(webhook.event_types)
        try:
            target = parse_target(webhook.url)
            await resolve_allowed(target, allow_private=self._allow_private)
        except AddressRefused as error:
            raise invalid_field("webhook.url", f"webhook.url is not deliverable: {error}") from None
        endpoint_id = uuid.uuid4()
        key = new_secret()
        stored, sealed = self._box.seal(endpoint_id, key)
        row = await self._webhooks.create_endpoint(
            self._pool,
            endpoint_id=endpoint_id,
            owner=owner,
            url=webhook.url,
            event_types=event_types,
            description=webhook.description,
            secret=stored,
            secret_sealed=sealed,
        )
        return row, secret_text(key)

    async def endpoints(self, owner: str) -> list[EndpointRow]:
        """Lists the caller's endpoints, newest first."""
        return await self._webhooks.list_endpoints(self._pool, owner)

    async def delete(self, owner: str, webhook_id: str) -> None:
        """Deletes the caller's endpoint with its deliveries.

        Raises:
            MeshError: INVALID_FIELD; WEBHOOK_NOT_FOUND, also for another owner's endpoint.
        """
        endpoint_id = validation.webhook_id(webhook_id)
        if not await self._webhooks.delete_endpoint(self._pool, owner, endpoint_id):
            raise webhook_not_found(endpoint_id)

    async def deliveries(
        self, owner: str, webhook_id: str, page_size: int, page_token: str
    ) -> tuple[list[Delivery], str]:
        """Lists a page of the caller's endpoint's deliveries, newest first.

        Returns:
            The page and the next page's token ("" on the last page).

        Raises:
            MeshError: INVALID_FIELD; INVALID_PAGE_TOKEN; WEBHOOK_NOT_FOUND.
        """
        endpoint_id = validation.webhook_id(webhook_id)
        size = validation.webhook_page_size(page_size) or DEFAULT_PAGE_SIZE
        before = page_tokens.decode(owner, page_token) if page_token else None
        if await self._webhooks.get_endpoint(self._pool, owner, endpoint_id) is None:
            raise webhook_not_found(endpoint_id)
        rows = await self._webhooks.list_deliveries(
            self._pool, endpoint_id, limit=size + 1, before=before
        )
        page, more = rows[:size], len(rows) > size
        attempts = await self._webhooks.attempts_of(self._pool, [r.id for r in page])
        token = page_tokens.encode(owner, page[-1].create_time, page[-1].id) if more else ""
        return [Delivery(r, attempts[r.id]) for r in page], token

    async def redeliver(self, owner: str, webhook_id: str, delivery_id: str) -> Delivery:
        """Makes a delivery due again now, enabling its endpoint if it was disabled.

        Raises:
            MeshError: INVALID_FIELD; WEBHOOK_NOT_FOUND for a missing endpoint or delivery.
        """
        endpoint_id = validation.webhook_id(webhook_id)
        did = validation.webhook_id(delivery_id, "delivery_id")
        async with self._pool.acquire() as conn, conn.transaction():
            row = await self._webhooks.redeliver(conn, owner, endpoint_id, did)
            if row is None:
                raise webhook_not_found(endpoint_id, did)
            attempts = await self._webhooks.attempts_of(conn, [row.id])
        return Delivery(row, attempts[row.id])


def _event_types(values: Sequence[str]) -> list[str]:
    if not values:
        return list(EVENT_TYPES)
    unknown = sorted(set(values) - set(EVENT_TYPES))
    if unknown:
        raise invalid_field(
            "webhook.event_types",
            f"unknown event type {', '.join(unknown)}; known: {', '.join(EVENT_TYPES)}",
        )
    return sorted(set(values), key=EVENT_TYPES.index)
