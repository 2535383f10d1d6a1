"""gateway → meeting_service through fault proxies: a replica that goes silent is found.

A blackhole keeps the TCP connection up (the proxy's kernel acknowledges every byte), so
only the gateway's HTTP/2 keepalive can tell that meeting_service stopped answering. An
open event stream then ends with a `stream_error`, and a client that reconnects with
`Last-Event-ID`, as an EventSource does, continues exactly after its last event: on the
target's other address at once when it lists two, or after the network heals when it
lists one. No event is lost or seen twice, and no request hangs.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio

from gen.meeting.v1 import meeting_pb2
from meeting_mesh.client import GatewayClient, SseEvent, parse_sse
from meeting_service.db.database import Database
from meeting_service.server import RunningMeetingService, run_meeting_service
from tests.support.fault_proxy import FaultProxy
from tests.support.gateway import bearer, gateway_settings, run_gateway, wait_until
from tests.support.log_capture import captured_logs
from tests.support.meeting import TEST_JWT_SECRET, make_token, meeting_settings
from tests.support.transcripts import change_status

KEEPALIVE_S = 0.5
UNARY_TIMEOUT_S = 2.0
# Keepalive finds the silence within KEEPALIVE_S * 2; the rest is reconnecting and
# replaying, on a loaded machine.
WITHIN_S = 20.0
STATUSES = [
    meeting_pb2.MEETING_STATUS_QUEUED,
    meeting_pb2.MEETING_STATUS_TRANSCRIBING,
    meeting_pb2.MEETING_STATUS_SUMMARIZING,
]


@pytest_asyncio.fixture(scope="module")
async def meeting_service(
    database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[RunningMeetingService]:
    """A meeting_service that accepts the gateway's frequent pings."""
    settings = meeting_settings(
        database_url,
        tmp_path_factory.mktemp("meeting-service"),
        pipeline_workers=0,
        webhook_workers=0,
        grpc_keepalive_s=KEEPALIVE_S,
        grpc_keepalive_min_s=KEEPALIVE_S / 5,
    )
    async with run_meeting_service(settings, database=Database(database_url)) as running:
        yield running


class EventSource:
    """Follows a meeting's events as a browser's EventSource does: every time the response
    ends (the meeting is not over) or cannot be had, it reconnects with `Last-Event-ID`.

    Attributes:
        events: Every event received with an `id:`, in order.
        errors: The `stream_error` events received.
        refusals: The statuses of refused reconnections.
    """

    def __init__(self, http: aiohttp.ClientSession, meeting_id: str, user: str) -> None:
        self._http = http
        self._path = f"/v1/meetings/{meeting_id}/events"
        self._headers = bearer(user)
        self.events: list[SseEvent] = []
        self.errors: list[SseEvent] = []
        self.refusals: list[int] = []
        self._task = asyncio.create_task(self._follow())

    @property
    def sequences(self) -> list[int]:
        """The sequences received, in order."""
        return [int(event.id) for event in self.events]

    async def _follow(self) -> None:
        while True:
            headers = dict(self._headers)
            if self.events:
                headers["Last-Event-ID"] = self.events[-1].id
            try:
                async with self._http.get(self._path, headers=headers) as response:
                    if response.status != 200:
                        self.refusals.append(response.status)
                        assert response.status in (503, 504), await response.text()
                    else:
                        async for event in parse_sse(response.content):
                            if event.event == "stream_error":
                                self.errors.append(event)
                            elif event.id:
                                self.events.append(event)
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.1)  # the stream's `retry:` hint

    async def close(self) -> None:
        """Stops following (and raises what went wrong, if anything)."""
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


async def _new_meeting(http: aiohttp.ClientSession, user: str) -> str:
    async with http.post("/v1/meetings", json={"title": "silent"}, headers=bearer(user)) as r:
        assert r.status == 201, await r.text()
        meeting_id: str = (await r.json())["meeting"]["id"]
        return meeting_id


async def _status_within_deadline(http: aiohttp.ClientSession, path: str, user: str) -> int:
    # The deadline is the gateway's; the bound only keeps a broken gateway from hanging
    # the test.
    async with asyncio.timeout(UNARY_TIMEOUT_S + 10), http.get(path, headers=bearer(user)) as r:
        await r.read()
        if r.status == 503:
            assert int(r.headers["Retry-After"]) >= 1
        return r.status


@pytest.mark.parametrize("addresses", [2, 1], ids=["another-replica", "same-replica-later"])
async def test_a_silent_replica_is_found_and_the_stream_resumes_exactly(
    meeting_service: RunningMeetingService, addresses: int, tmp_path: Path
) -> None:
    host, _, port = meeting_service.address.rpartition(":")
    user = f"user-{uuid.uuid4().hex[:12]}"
    async with AsyncExitStack() as stack:
        proxies = [
            await stack.enter_async_context(FaultProxy(host, int(port))) for _ in range(addresses)
        ]
        target = "ipv4:" + ",".join(proxy.address for proxy in proxies)
        settings = gateway_settings(
            target,
            TEST_JWT_SECRET,
            unary_timeout_s=UNARY_TIMEOUT_S,
            sse_retry_ms=100,
            grpc_keepalive_s=KEEPALIVE_S,
            grpc_keepalive_timeout_s=KEEPALIVE_S,
            grpc_keepalive_min_s=KEEPALIVE_S,
        )
        gateway = await stack.enter_async_context(run_gateway(settings))
        http = await stack.enter_async_context(aiohttp.ClientSession(gateway.url))
        with captured_logs() as logs:
            meeting_id = await _new_meeting(http, user)
            mid = uuid.UUID(meeting_id)
            source = EventSource(http, meeting_id, user)
            try:
                await wait_until(lambda: _has(source, 1), within=WITHIN_S)

                proxies[0].blackhole()
                # Events written while the stream's connection is silent.
                for status in STATUSES[:2]:
                    await change_status(meeting_service.services, mid, status)
                await wait_until(lambda: _errored(source), within=WITHIN_S)
                # Whatever the channel is doing, a request is answered within its deadline.
                path = f"/v1/meetings/{meeting_id}"
                assert await _status_within_deadline(http, path, user) in (200, 503, 504)
                if addresses == 1:
                    await wait_until(lambda: _refused(source), within=WITHIN_S)
                    proxies[0].heal()
                await change_status(meeting_service.services, mid, STATUSES[2])
                await wait_until(lambda: _has(source, 4), within=WITHIN_S)
                assert source.sequences == [1, 2, 3, 4]  # nothing lost, nothing twice
                assert await _status_within_deadline(http, path, user) == 200
            finally:
                await source.close()
        assert source.errors[0].data["error"]["status"] == "UNAVAILABLE"
        assert not logs.errors()


async def test_the_cli_follows_a_meeting_through_a_silent_replica(
    meeting_service: RunningMeetingService,
) -> None:
    # `meeting-mesh follow` reads the stream through GatewayClient.events(): the gateway's
    # `stream_error` UNAVAILABLE is not shown to the user but resumed from, on the target's
    # other address, until the meeting's final status ends the stream.
    host, _, port = meeting_service.address.rpartition(":")
    user = f"user-{uuid.uuid4().hex[:12]}"
    async with AsyncExitStack() as stack:
        proxies = [await stack.enter_async_context(FaultProxy(host, int(port))) for _ in range(2)]
        settings = gateway_settings(
            "ipv4:" + ",".join(proxy.address for proxy in proxies),
            TEST_JWT_SECRET,
            unary_timeout_s=UNARY_TIMEOUT_S,
            grpc_keepalive_s=KEEPALIVE_S,
            grpc_keepalive_timeout_s=KEEPALIVE_S,
            grpc_keepalive_min_s=KEEPALIVE_S,
        )
        gateway = await stack.enter_async_context(run_gateway(settings))
        http = await stack.enter_async_context(aiohttp.ClientSession())
        client = GatewayClient(http, gateway.url, make_token(user))
        meeting_id = (await client.call("POST", "/v1/meetings", body={"title": "cli"}))["meeting"][
            "id"
        ]
        seen: list[SseEvent] = []

        async def follow() -> None:
            async for event in client.events(meeting_id):
                seen.append(event)

        following = asyncio.create_task(follow())
        try:
            await wait_until(lambda: _seen(seen, 1), within=WITHIN_S)
            proxies[0].blackhole()
            mid = uuid.UUID(meeting_id)
            for status in [*STATUSES, meeting_pb2.MEETING_STATUS_COMPLETED]:
                await change_status(meeting_service.services, mid, status)
            async with asyncio.timeout(WITHIN_S * 2):
                await following  # ends after COMPLETED
        finally:
            following.cancel()
    assert [event.event for event in seen if event.event == "stream_error"] == []
    assert [int(event.id) for event in seen] == [1, 2, 3, 4, 5]


async def _seen(events: list[SseEvent], count: int) -> bool:
    return len(events) >= count


async def _has(source: EventSource, count: int) -> bool:
    return len(source.events) >= count


async def _errored(source: EventSource) -> bool:
    return bool(source.errors)


async def _refused(source: EventSource) -> bool:
    return bool(source.refusals)
