"""gateway → meeting_service through a fault proxy: no request hangs, none is answered 500.

With meeting_service's network blackholed, a unary request is answered within the
gateway's `unary_timeout_s` (504, its deadline passed), and works again once the network
heals; after every connection is reset, requests are 503 (with `Retry-After`) until the
channel reconnects,
then 200; with latency, they are slower and nothing else.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest_asyncio

from meeting_service.server import RunningMeetingService
from tests.support.fault_proxy import FaultProxy
from tests.support.gateway import RunningGateway, gateway_settings, run_gateway
from tests.support.log_capture import captured_logs
from tests.support.meeting import TEST_JWT_SECRET

UNARY_TIMEOUT_S = 1.0
SLACK_S = 2.0


@pytest_asyncio.fixture
async def network(meeting_service: RunningMeetingService) -> AsyncIterator[FaultProxy]:
    host, _, port = meeting_service.address.rpartition(":")
    async with FaultProxy(host, int(port)) as proxy:
        yield proxy


@pytest_asyncio.fixture
async def behind(network: FaultProxy) -> AsyncIterator[RunningGateway]:
    settings = gateway_settings(network.address, TEST_JWT_SECRET, unary_timeout_s=UNARY_TIMEOUT_S)
    async with run_gateway(settings) as running:
        yield running


async def _status(http: aiohttp.ClientSession, path: str, headers: dict[str, str]) -> int:
    async with http.get(path, headers=headers) as response:
        await response.read()
        if response.status == 503:
            assert int(response.headers["Retry-After"]) >= 1
        return response.status


async def test_no_request_hangs_or_fails_with_500_when_the_network_to_meeting_service_fails(
    behind: RunningGateway, network: FaultProxy, as_user: dict[str, str], meeting_id: str
) -> None:
    path = f"/v1/meetings/{meeting_id}"
    loop = asyncio.get_running_loop()
    with captured_logs() as logs:
        async with aiohttp.ClientSession(behind.url) as http:
            assert await _status(http, path, as_user) == 200

            network.blackhole()
            started = loop.time()
            assert await _status(http, path, as_user) == 504
            assert loop.time() - started < UNARY_TIMEOUT_S + SLACK_S
            network.heal()
            assert await _status(http, path, as_user) == 200

            await network.reset()
            async with asyncio.timeout(30):
                while (status := await _status(http, path, as_user)) != 200:
                    assert status == 503

            network.latency(0.05)
            assert await _status(http, path, as_user) == 200
            network.latency(0)
    assert not logs.errors()
