"""A real browser against the gateway: headless Chromium (the Debian `chromium` package,
driven by Playwright) on a page of another origin creates a meeting with `fetch`, follows
it with `EventSource` until the stream ends for good, reads the live socket's close code,
and the API page at /docs renders offline."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web
from playwright.async_api import Browser, Page, async_playwright

from meeting_service.server import RunningMeetingService
from tests.support.gateway import (
    HEARTBEAT_S,
    RunningGateway,
    gateway_settings,
    play_pipeline,
    run_gateway,
)
from tests.support.meeting import TEST_JWT_SECRET, make_token

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
WITHIN_MS = 30_000
pytestmark = pytest.mark.skipif(
    shutil.which("chromium") is None, reason="needs the Debian chromium package (.ci/run)"
)


@pytest_asyncio.fixture(scope="module")
async def gateway(meeting_service: RunningMeetingService) -> AsyncIterator[RunningGateway]:
    """The gateway, letting pages of any local port call it (as `meeting-mesh dev`)."""
    settings = gateway_settings(
        meeting_service.address,
        TEST_JWT_SECRET,
        sse_heartbeat_s=HEARTBEAT_S,
        sse_retry_ms=200,
        cors_origins=["http://127.0.0.1:*"],
    )
    async with run_gateway(settings) as running:
        yield running


@pytest_asyncio.fixture
async def other_origin() -> AsyncIterator[str]:
    """The URL of an empty page served from another port: another origin."""

    async def page(_request: web.Request) -> web.StreamResponse:
        return web.Response(
            text="<!doctype html><title>elsewhere</title>", content_type="text/html"
        )

    app = web.Application()
    app.router.add_get("/", page)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/"
    finally:
        await runner.cleanup()


@pytest_asyncio.fixture
async def page() -> AsyncIterator[Page]:
    """A fresh page of headless Chromium."""
    async with async_playwright() as playwright:
        browser: Browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS
        )
        try:
            yield await browser.new_page()
        finally:
            await browser.close()


async def test_a_page_of_another_origin_follows_a_meeting_until_its_stream_closes(
    page: Page,
    other_origin: str,
    gateway: RunningGateway,
    meeting_service: RunningMeetingService,
    user: str,
) -> None:
    await page.goto(other_origin)
    token = make_token(user)
    meeting_id: str = await page.evaluate(
        """async ([base, token]) => {
            const r = await fetch(base + "/v1/meetings", {
                method: "POST",
                headers: {"Authorization": "Bearer " + token, "Content-Type": "application/json"},
                body: JSON.stringify({title: "from a browser"}),
            });
            if (r.status !== 201) throw new Error("create: " + r.status);
            const id = (await r.json()).meeting.id;
            window.seen = [];
            window.opens = 0;
            window.errors = [];
            const url = base + "/v1/meetings/" + id + "/events?access_token=" + token;
            const es = new EventSource(url);
            window.es = es;
            es.onopen = () => { window.opens += 1; };
            es.onerror = () => { window.errors.push(es.readyState); };
            for (const name of ["status", "segment", "summary"]) {
                es.addEventListener(name, (e) => window.seen.push([name, e.lastEventId]));
            }
            return id;
        }""",
        [gateway.url, token],
    )
    await page.wait_for_function("window.seen.length >= 1", timeout=WITHIN_MS)
    await play_pipeline(meeting_service, meeting_id, ["Hello from Chromium."])
    # The server ends the stream after COMPLETED; the EventSource reconnects once, gets
    # 204, and stops for good.
    await page.wait_for_function("window.es.readyState === EventSource.CLOSED", timeout=WITHIN_MS)
    seen: list[list[str]] = await page.evaluate("window.seen")
    assert [name for name, _ in seen] == ["status", "status", "segment", "summary", "status"]
    assert [int(sequence) for _, sequence in seen] == [1, 2, 3, 4, 5]
    # The end of the stream made it reconnect (CONNECTING); the 204 closed it (CLOSED),
    # with no second `open`.
    assert await page.evaluate("window.errors") == [0, 2]
    assert await page.evaluate("window.opens") == 1


async def test_a_page_reads_why_the_live_socket_was_refused(
    page: Page, other_origin: str, gateway: RunningGateway, user: str
) -> None:
    await page.goto(other_origin)
    closed: dict[str, Any] = await page.evaluate(
        """([url, token]) => new Promise((resolve) => {
            const ws = new WebSocket(url);
            ws.onopen = () => ws.send(JSON.stringify({type: "auth", token}));
            ws.onclose = (e) => resolve({code: e.code, reason: e.reason});
        })""",
        [
            gateway.url.replace("http", "ws") + f"/v1/meetings/{uuid.UUID(int=9)}/live",
            make_token(user),
        ],
    )
    assert closed["code"] == 4404
    assert closed["reason"].startswith("NOT_FOUND: ")


async def test_the_api_page_renders_offline(page: Page, gateway: RunningGateway) -> None:
    await page.goto(gateway.url + "/")
    await page.wait_for_selector("#op-CreateMeeting", timeout=WITHIN_MS)
    await page.wait_for_selector("#schema-UserEvent", timeout=WITHIN_MS)
    assert await page.text_content("#error") == ""
    assert "Server-assigned identifier" in (await page.text_content("#schema-Meeting") or "")
