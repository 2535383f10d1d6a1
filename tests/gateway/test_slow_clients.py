"""Hostile HTTP never holds a connection: slow headers, slow bodies, idle keep-alives.

The gateway here has short timeouts, so each bound is checked in a fraction of a second:
a connection is closed (or answered 408) after its timeout and before the timeout plus
`SLACK_S`. Raw sockets play the clients, since a well-behaved HTTP client cannot be made
to stop halfway through its headers.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest_asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meeting_service.server import RunningMeetingService
from tests.support.gateway import RunningGateway, bearer, gateway_settings, run_gateway
from tests.support.log_capture import captured_logs
from tests.support.meeting import TEST_JWT_SECRET

HEADER_S = 0.4
BODY_S = 0.4
UPLOAD_IDLE_S = 0.4
KEEPALIVE_S = 0.4
SLACK_S = 2.0  # scheduling on a loaded test machine; the bound is what is checked

_GET = b"GET /healthz HTTP/1.1\r\nHost: gateway\r\n\r\n"


@pytest_asyncio.fixture(scope="module")
async def strict(meeting_service: RunningMeetingService) -> AsyncIterator[RunningGateway]:
    """A gateway with short connection timeouts."""
    settings = gateway_settings(
        meeting_service.address,
        TEST_JWT_SECRET,
        header_timeout_s=HEADER_S,
        body_timeout_s=BODY_S,
        upload_idle_timeout_s=UPLOAD_IDLE_S,
        keepalive_timeout_s=KEEPALIVE_S,
    )
    async with run_gateway(settings) as running:
        yield running


async def _closed_after(gateway: RunningGateway, sent: bytes) -> tuple[float, bytes]:
    """Sends `sent`, then reads until the gateway closes; returns the time taken and the
    bytes received."""
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        writer.write(sent)
        await writer.drain()
        async with asyncio.timeout(30):
            received = await reader.read()
        return loop.time() - started, received
    finally:
        writer.close()


async def test_a_connection_that_sends_half_its_headers_is_closed_in_time(
    strict: RunningGateway,
) -> None:
    with captured_logs() as logs:
        took, received = await _closed_after(strict, b"GET /healthz HTTP/1.1\r\nHost: gat")
    assert received == b""
    assert HEADER_S - 0.05 <= took < HEADER_S + SLACK_S
    logs.assert_clean()


async def test_a_connection_that_sends_nothing_is_closed_in_time(strict: RunningGateway) -> None:
    took, received = await _closed_after(strict, b"")
    assert received == b"" and took < HEADER_S + SLACK_S


async def test_an_idle_keep_alive_connection_is_closed_and_a_busy_one_is_not(
    strict: RunningGateway,
) -> None:
    # Three requests spaced under the header timeout but whose total exceeds it: the
    # first request stopped the header timer; the keep-alive timer restarts each time.
    reader, writer = await asyncio.open_connection("127.0.0.1", strict.port)
    try:
        for _ in range(3):
            writer.write(_GET)
            await writer.drain()
            async with asyncio.timeout(10):
                head = await reader.readuntil(b"\r\n\r\n")
                assert head.startswith(b"HTTP/1.1 200"), head
                length = head.lower().split(b"content-length: ", 1)[1].split(b"\r\n", 1)[0]
                await reader.readexactly(int(length))
            await asyncio.sleep(KEEPALIVE_S / 2)
        loop = asyncio.get_running_loop()
        started = loop.time()
        async with asyncio.timeout(30):
            assert await reader.read() == b""
        assert loop.time() - started < KEEPALIVE_S + SLACK_S
    finally:
        writer.close()


async def test_a_json_body_that_trickles_is_408(strict: RunningGateway) -> None:
    token = bearer("slow-json")["Authorization"]
    head = (
        "POST /v1/meetings HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n"
        f"Authorization: {token}\r\nContent-Length: 100\r\n\r\n"
    ).encode()
    with captured_logs() as logs:
        took, received = await _closed_after(strict, head + b'{"title": "s')
    assert received.startswith(b"HTTP/1.1 408"), received[:200]
    assert b"REQUEST_TIMEOUT" in received
    assert took < BODY_S + SLACK_S
    logs.assert_clean()


async def test_an_upload_that_stalls_is_408_and_keeps_what_arrived(
    strict: RunningGateway, http: aiohttp.ClientSession, as_user: dict[str, str], meeting_id: str
) -> None:
    head = (
        f"PUT /v1/meetings/{meeting_id}/audio HTTP/1.1\r\nHost: gateway\r\n"
        f"Content-Type: audio/wav\r\nAuthorization: {as_user['Authorization']}\r\n"
        "Content-Length: 1000000\r\n\r\n"
    ).encode()
    with captured_logs() as logs:
        took, received = await _closed_after(strict, head + bytes(1000))
    assert received.startswith(b"HTTP/1.1 408"), received[:200]
    assert took < UPLOAD_IDLE_S + SLACK_S
    logs.assert_clean()
    async with http.head(f"/v1/meetings/{meeting_id}/audio", headers=as_user) as r:
        assert r.status == 200  # the upload can be resumed from what it stored


_request_prefixes = st.sampled_from(
    [
        _GET,
        b"POST /v1/meetings HTTP/1.1\r\nHost: g\r\nContent-Length: 40\r\n\r\n{}",
        b"PUT /v1/meetings/x/audio HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nab",
    ]
).flatmap(lambda request: st.integers(0, len(request)).map(lambda cut: request[:cut]))


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(sent=_request_prefixes | st.binary(max_size=64))
async def test_no_partial_request_or_garbage_holds_a_connection(
    strict: RunningGateway, sent: bytes
) -> None:
    with captured_logs() as logs:
        took, _ = await _closed_after(strict, sent)
    # Whatever arrived, the connection ends within the longest of its timeouts.
    assert took < max(HEADER_S, BODY_S, UPLOAD_IDLE_S, KEEPALIVE_S) + SLACK_S
    assert not logs.errors()
