"""Delivering webhook events: claimed from the outbox, signed, POSTed, retried, recorded.

`WebhookDispatcher` runs `workers` loops per process. Each claims the delivery that has been
due longest (`WebhooksRepository.claim`: any replica may deliver, none takes a delivery
another holds), makes one attempt and records it. An attempt succeeds on a 2xx answer;
anything else (another status, a redirect, which is never followed, no answer within the
timeout, an address that is not allowed) is retried after an exponential delay with full
jitter until the retry window has passed, then the delivery is FAILED. A run of
consecutive failures disables the endpoint. A process that dies mid-attempt leaves its
claim to lapse; another replica then makes the attempt again (at least once).
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
import time
import uuid
from dataclasses import dataclass

import aiohttp
import asyncpg

from meeting_service.db.database import CONNECTION_ERRORS
from meeting_service.webhooks.addresses import (
    AddressRefused,
    CheckedResolver,
    parse_target,
    resolve_allowed,
)
from meeting_service.webhooks.events import message_id
from meeting_service.webhooks.repository import Claim, Outcome, WebhooksRepository
from meeting_service.webhooks.signing import SecretBox, SecretUnavailable, signature
from mesh_common.logging import logger

# What is kept of an answer's body: enough to see what a receiver said, never its content.
RESPONSE_PREFIX_BYTES = 256
_USER_AGENT = "meeting-mesh-webhooks/1"


@dataclass(frozen=True)
class DeliveryPolicy:
    """How deliveries are made and retried (the `webhook_*` settings).

    Attributes:
        workers: Deliveries one process makes at once; 0 makes none.
        poll_interval_s: How often an idle loop looks for a due delivery.
        timeout_s: Longest attempt, from connecting to the end of the answer's prefix.
        backoff_initial_s: Ceiling of the first retry's delay.
        backoff_max_s: Highest ceiling of a retry's delay.
        retry_for_s: How long after it is queued (or redelivered) a delivery is retried.
        disable_after: Consecutive failed attempts that disable an endpoint.
        allow_private: Whether non-public addresses may be reached.
    """

    workers: int
    poll_interval_s: float
    timeout_s: float
    backoff_initial_s: float
    backoff_max_s: float
    retry_for_s: float
    disable_after: int
    allow_private: bool

    @property
    def lease_s(self) -> float:
        """How long a claim holds: an attempt ends within the timeout, recording it soon after."""
        return 2 * self.timeout_s

    def retry_in(self, claim: Claim, elapsed_s: float) -> float | None:
        """Seconds until the next attempt after a failed one; None once the window is spent.

        Args:
            claim: The claim the failed attempt was made under.
            elapsed_s: How long the attempt took.
        """
        ceiling = min(self.backoff_max_s, self.backoff_initial_s * 2 ** (claim.attempt - 1))
        delay = random.uniform(0, ceiling)
        spent = (claim.claimed_at - claim.retry_since).total_seconds() + elapsed_s
        return None if spent + delay > self.retry_for_s else delay


def signed_headers(key: bytes, event_id: uuid.UUID, body: bytes) -> dict[str, str]:
    """The Standard Webhooks headers of one attempt (timestamped now)."""
    msg_id = message_id(event_id)
    timestamp = int(time.time())
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature(key, msg_id, timestamp, body),
        "content-type": "application/json",
        "user-agent": _USER_AGENT,
    }


async def send(
    session: aiohttp.ClientSession,
    url: str,
    headers: dict[str, str],
    body: bytes,
    policy: DeliveryPolicy,
) -> Outcome:
    """Makes one attempt: checks the address, POSTs, reads a prefix of the answer.

    The session's resolver checks the addresses it connects to (`CheckedResolver`); an
    address literal, which aiohttp does not resolve, is checked here first.
    """
    started = time.perf_counter()

    def elapsed_ms() -> int:
        return round((time.perf_counter() - started) * 1000)

    try:
        await resolve_allowed(parse_target(url), allow_private=policy.allow_private)
        async with session.post(
            url,
            data=body,
            headers=headers,
            allow_redirects=False,
            timeout=aiohttp.ClientTimeout(total=policy.timeout_s),
        ) as response:
            latency = elapsed_ms()
            prefix = await response.content.read(RESPONSE_PREFIX_BYTES)
            status = response.status
    except AddressRefused as error:
        return Outcome(0, elapsed_ms(), f"not delivered: {error}")
    except aiohttp.ClientConnectorError as error:
        if isinstance(error.os_error, AddressRefused):
            return Outcome(0, elapsed_ms(), f"not delivered: {error.os_error}")
        return Outcome(0, elapsed_ms(), f"cannot connect: {error.os_error}")
    except TimeoutError:
        return Outcome(0, elapsed_ms(), f"no answer within {policy.timeout_s:g} s")
    except aiohttp.ClientError as error:
        return Outcome(0, elapsed_ms(), f"request failed: {type(error).__name__}: {error}")
    if 200 <= status < 300:
        return Outcome(status, latency, "", prefix)
    if 300 <= status < 400:
        return Outcome(status, latency, f"HTTP {status}: redirects are not followed", prefix)
    return Outcome(status, latency, f"HTTP {status}", prefix)


class WebhookDispatcher:
    """The delivery loops of one process.

    Args:
        pool: The pool.
        webhooks: SQL for webhooks.
        box: Opens the stored secrets.
        policy: How to deliver and retry.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        webhooks: WebhooksRepository,
        box: SecretBox,
        policy: DeliveryPolicy,
    ) -> None:
        self._pool = pool
        self._webhooks = webhooks
        self._box = box
        self._policy = policy
        self._name = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._loops: list[asyncio.Task[None]] = []
        self._session: aiohttp.ClientSession | None = None

    def start(self) -> None:
        """Starts the loops (none with `workers` 0)."""
        if self._policy.workers == 0:
            return
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(
                resolver=CheckedResolver(allow_private=self._policy.allow_private),
                use_dns_cache=False,
            ),
            trust_env=False,  # a proxy would connect to addresses nobody checked
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        for number in range(self._policy.workers):
            worker = f"{self._name}:{number}"
            self._loops.append(asyncio.create_task(self._loop(worker), name=f"webhook-{worker}"))
        logger.bind(workers=len(self._loops), name=self._name).info("webhook delivery started")

    async def stop(self) -> None:
        """Stops the loops; an attempt in flight is abandoned and made again after its lease."""
        for task in self._loops:
            task.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        self._loops.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _loop(self, worker: str) -> None:
        while True:
            try:
                claim = await self._webhooks.claim(self._pool, worker, self._policy.lease_s)
                if claim is not None:
                    await self._deliver(claim, worker)
                    continue
            except CONNECTION_ERRORS as error:
                logger.bind(error=repr(error)).warning("webhook delivery: database unavailable")
            except Exception:
                # A bug must not end the loop; the claim lapses and is taken over.
                logger.bind(worker=worker).exception("webhook delivery: unexpected error")
            await asyncio.sleep(self._policy.poll_interval_s)

    async def _deliver(self, claim: Claim, worker: str) -> None:
        assert self._session is not None
        log = logger.bind(
            delivery_id=str(claim.delivery_id),
            webhook_id=str(claim.endpoint_id),
            attempt=claim.attempt,
        )
        try:
            key = self._box.open(claim.endpoint_id, claim.secret, claim.secret_sealed)
        except SecretUnavailable as error:
            outcome = Outcome(0, 0, f"cannot sign: {error}")
        else:
            headers = signed_headers(key, claim.event_id, claim.body)
            outcome = await send(self._session, claim.url, headers, claim.body, self._policy)
        retry_in = None
        if not outcome.succeeded:
            retry_in = self._policy.retry_in(claim, outcome.latency_ms / 1000)
        async with self._pool.acquire() as conn, conn.transaction():
            disabled = await self._webhooks.finish(
                conn,
                claim,
                worker,
                outcome,
                retry_in=retry_in,
                disable_after=self._policy.disable_after,
            )
        log = log.bind(status_code=outcome.status_code, latency_ms=outcome.latency_ms)
        if outcome.succeeded:
            log.info("webhook delivered")
            return
        log.bind(error=outcome.error, retry_in=retry_in).warning("webhook attempt failed")
        if disabled:
            log.warning("webhook endpoint disabled after consecutive failures")
