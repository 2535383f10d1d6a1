"""Fixtures of the gateway suite: the real app on port 0 in front of a real meeting_service.

Every test module gets its own database, meeting_service and gateway (module scope); an HTTP
session per test. Tests mark the routes they exercise with `@route(METHOD, PATH, outcome)`
so that `test_route_table.py` can prove every route has a success and a failure test.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import aiohttp
import pytest
import pytest_asyncio

from meeting_service.db.database import Database
from meeting_service.server import RunningMeetingService, run_meeting_service
from tests.support.gateway import (
    HEARTBEAT_S,
    RunningGateway,
    bearer,
    gateway_settings,
    run_gateway,
)
from tests.support.meeting import TEST_JWT_SECRET, meeting_settings


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "route(method, path, outcome): the route a test covers")


@pytest_asyncio.fixture(scope="module")
async def meeting_service(
    database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[RunningMeetingService]:
    """The module's meeting_service, with no pipeline workers: the tests play the pipeline
    themselves (`play_pipeline`), so no worker adds events they do not expect; nor does it
    deliver webhooks (tests/meeting_service/test_webhooks.py does)."""
    settings = meeting_settings(
        database_url,
        tmp_path_factory.mktemp("meeting-service"),
        pipeline_workers=0,
        webhook_workers=0,
    )
    async with run_meeting_service(settings, database=Database(database_url)) as running:
        yield running


@pytest_asyncio.fixture(scope="module")
async def gateway(meeting_service: RunningMeetingService) -> AsyncIterator[RunningGateway]:
    """The gateway in front of the module's meeting_service."""
    settings = gateway_settings(
        meeting_service.address,
        TEST_JWT_SECRET,
        sse_heartbeat_s=HEARTBEAT_S,
        sse_retry_ms=500,
        upload_chunk_bytes=64 * 1024,
        max_upload_bytes=1024**3,
        shutdown_grace_s=2.0,
    )
    async with run_gateway(settings) as running:
        yield running


@pytest_asyncio.fixture
async def http(gateway: RunningGateway) -> AsyncIterator[aiohttp.ClientSession]:
    """An HTTP session with the gateway's URL as base."""
    async with aiohttp.ClientSession(gateway.url) as session:
        yield session


@pytest.fixture
def user() -> str:
    """A user of its own for each test, so tests never see each other's meetings."""
    return f"user-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def as_user(user: str) -> dict[str, str]:
    """The test user's Authorization header."""
    return bearer(user)


@pytest_asyncio.fixture
async def meeting_id(http: aiohttp.ClientSession, as_user: dict[str, str]) -> str:
    """A meeting of the test user, awaiting audio."""
    async with http.post("/v1/meetings", json={"title": "standup"}, headers=as_user) as r:
        assert r.status == 201, await r.text()
        meeting_id: str = (await r.json())["meeting"]["id"]
        return meeting_id
