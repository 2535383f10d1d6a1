"""The web console at `/`, in headless Chromium over the whole mesh (mock engine).

A user signs in from a `meeting-mesh dev` style link; the list follows meetings made
elsewhere over the per-user stream; the user creates a meeting, uploads a recording
through a connection that drops halfway (the console resumes it), watches it to COMPLETED
with the transcript and summary, renames it, exports it, sees why a live socket is
refused, and records from a (fake) microphone at 48 kHz through a connection that drops
(the console resumes the live socket), with finals appearing as spoken.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import numpy as np
import pytest
import pytest_asyncio
from playwright.async_api import BrowserContext, Page, expect

from meeting_service.server import RunningMeetingService
from tests.support.browser import chromium, dropping_proxy, needs_chromium, screenshot
from tests.support.gateway import (
    RunningGateway,
    bearer,
    error_of,
    gateway_settings,
    route,
    run_gateway,
    wait_until,
)
from tests.support.gpu import as_wav, dialogue, silence, tone
from tests.support.meeting import TEST_JWT_SECRET, make_token
from tests.support.pipeline import run_pipeline_service

WITHIN_MS = 60_000  # a bound, not a timing: the mock engine answers in milliseconds


@pytest_asyncio.fixture(scope="module")
async def meeting_service(
    database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[RunningMeetingService]:
    """meeting_service with its pipeline, in front of gpu_proxy and a mock-engine gpu_node."""
    async with run_pipeline_service(
        database_url, tmp_path_factory, pipeline_live_follow_s=WITHIN_MS / 1000
    ) as running:
        yield running


@pytest_asyncio.fixture(scope="module")
async def gateway(meeting_service: RunningMeetingService) -> AsyncIterator[RunningGateway]:
    """The gateway, cutting uploads into small chunks so a dropped one leaves some stored."""
    settings = gateway_settings(
        meeting_service.address, TEST_JWT_SECRET, upload_chunk_bytes=16 * 1024
    )
    async with run_gateway(settings) as running:
        yield running


@pytest_asyncio.fixture(scope="module")
async def browser(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[BrowserContext]:
    """Chromium whose microphone plays two voices taking turns, in a loop."""
    directory = tmp_path_factory.mktemp("chromium")
    microphone = directory / "microphone.wav"
    turns = [silence(0.5), tone(1.6, 180.0), silence(0.8), tone(1.6, 420.0), silence(0.8)]
    microphone.write_bytes(as_wav(np.concatenate(turns)))
    async with chromium(directory / "profile", microphone) as context:
        yield context


@pytest_asyncio.fixture
async def page(browser: BrowserContext) -> AsyncIterator[Page]:
    """A fresh tab."""
    tab = await browser.new_page()
    try:
        yield tab
    finally:
        await tab.close()


async def _sign_in(page: Page, base_url: str, user: str) -> None:
    await page.goto(f"{base_url}/#token={make_token(user)}")
    await expect(page.locator("#app")).to_be_visible()


async def _create(page: Page, title: str) -> None:
    await page.fill("#new-title", title)
    await page.click("#create-form button")
    await expect(page.locator("#meeting-title")).to_have_text(title)
    await expect(page.locator("#meeting-status")).to_have_text("awaiting audio")


@route("GET", "/", "success")
@route("GET", "/console/{name}", "success")
async def test_the_console_is_served_without_a_token(gateway: RunningGateway) -> None:
    async with aiohttp.ClientSession(gateway.url) as http:
        async with http.get("/") as r:
            assert r.status == 200
            assert r.content_type == "text/html"
            assert "/console/app.js" in await r.text()
            assert "frame-ancestors 'none'" in r.headers["Content-Security-Policy"]
        async with http.get("/console/app.js") as r:
            assert r.status == 200
            assert r.content_type in ("text/javascript", "application/javascript")


@route("GET", "/console/{name}", "failure")
async def test_a_file_the_console_does_not_have_is_a_json_404(gateway: RunningGateway) -> None:
    async with aiohttp.ClientSession(gateway.url) as http:
        for name in ("nothing.js", "..%2Fapp.py"):
            async with http.get(f"/console/{name}") as r:
                assert r.status == 404
                assert (await error_of(r))["status"] == "NOT_FOUND"


@needs_chromium
async def test_a_bad_token_is_shown_and_the_sign_in_form_stays(
    page: Page, gateway: RunningGateway
) -> None:
    await page.goto(f"{gateway.url}/#token=not-a-token")
    await expect(page.locator("#error")).to_contain_text("401 UNAUTHENTICATED")
    await expect(page.locator("#sign-in")).to_be_visible()
    await expect(page.locator("#app")).to_be_hidden()
    # The token left the address bar, and a refused one is not kept.
    assert await page.evaluate("location.hash") == ""
    assert await page.evaluate("sessionStorage.length") == 0


@needs_chromium
async def test_the_list_follows_meetings_made_elsewhere_over_one_stream(
    page: Page, gateway: RunningGateway, user: str
) -> None:
    streams: list[str] = []
    page.on("request", lambda r: streams.append(r.url) if "/events" in r.url else None)
    await _sign_in(page, gateway.url, user)
    listed = page.locator("#meetings li")
    async with aiohttp.ClientSession(gateway.url, headers=bearer(user)) as http:
        async with http.post("/v1/meetings", json={"title": "Made by a script"}) as r:
            meeting_url = f"/v1/meetings/{(await r.json())['meeting']['id']}"
        await expect(listed).to_have_count(1)
        await expect(listed).to_contain_text("Made by a script")
        await expect(listed).to_contain_text("awaiting audio")
        rename = {"title": "Renamed by a script"}
        async with http.patch(meeting_url, params={"updateMask": "title"}, json=rename) as r:
            assert r.status == 200
        await expect(listed).to_contain_text("Renamed by a script")
        async with http.delete(meeting_url) as r:
            assert r.status == 204
        await expect(listed).to_have_count(0)
    await expect(page.locator("#feed-state")).to_have_text("")
    # Every meeting of the list is followed over one connection: the per-user stream.
    assert streams == [f"{gateway.url}/v1/events"]


@needs_chromium
async def test_an_upload_that_drops_halfway_resumes_and_the_meeting_completes(
    page: Page, gateway: RunningGateway, user: str, tmp_path: Path
) -> None:
    recording = tmp_path / "standup.wav"
    recording.write_bytes(as_wav(dialogue(8)))
    size = recording.stat().st_size
    async with dropping_proxy(gateway.port, drop_after=size // 2) as proxy:
        await _sign_in(page, proxy.url, user)
        assert await page.evaluate("location.hash") == ""
        await _create(page, "Weekly standup")
        meeting_id = await page.locator("#meetings button").first.get_attribute("data-id")

        async def part_stored() -> bool:
            async with (
                aiohttp.ClientSession(gateway.url) as http,
                http.head(f"/v1/meetings/{meeting_id}/audio", headers=bearer(user)) as r,
            ):
                return int(r.headers["Upload-Offset"]) > 0

        proxy.before_drop = lambda: wait_until(part_stored)

        audio_requests: list[str] = []
        page.on(
            "request",
            lambda request: (
                audio_requests.append(request.method) if request.url.endswith("/audio") else None
            ),
        )
        # Every progress text the page shows, with the bar's value at that moment.
        await page.evaluate(
            """() => {
                window.progressSeen = [];
                const bar = document.getElementById("upload-progress");
                new MutationObserver(() => window.progressSeen.push(bar.value)).observe(
                    document.getElementById("upload-state"),
                    {childList: true, characterData: true, subtree: true});
            }"""
        )
        await page.set_input_files("#file", str(recording))
        await expect(page.locator("#upload-state")).to_have_text(
            "Uploaded standup.wav.", timeout=WITHIN_MS
        )
        assert proxy.dropped
        assert audio_requests[0] == "PUT"
        assert "PATCH" in audio_requests
        fractions: list[float] = await page.evaluate("window.progressSeen")
        assert any(0 < fraction < 1 for fraction in fractions)  # where the upload resumed
        assert fractions[-1] == 1

        status = page.locator("#meeting-status")
        await expect(status).to_have_text("completed", timeout=WITHIN_MS)
        await expect(page.locator("#transcript li.final")).to_have_count(8)
        await expect(page.locator("#transcript li .speaker-0").first).to_be_visible()
        await expect(page.locator("#transcript li .speaker-1").first).to_be_visible()
        times = page.locator("#transcript li time")
        await expect(times.first).to_have_text("00:00")
        await expect(times.last).to_have_text("00:11")  # the eighth turn starts at 11.6 s
        await expect(page.locator("#summary-text")).not_to_have_text("No summary yet.")
        await expect(page.locator("#meetings button").first).to_contain_text("completed")
        await screenshot(page, "console-completed")

        await page.fill("#rename-title", "Weekly standup (notes)")
        await page.click("#rename-form button")
        await expect(page.locator("#meeting-title")).to_have_text("Weekly standup (notes)")
        await expect(page.locator("#meetings button").first).to_contain_text("(notes)")

        async with page.expect_download() as download_info:
            await page.click("[data-format=srt]")
        download = await download_info.value
        srt = await asyncio.to_thread(Path(await download.path()).read_text)
        assert srt.startswith("1\n00:00:00,") and "SPEAKER_" in srt

        # The live socket of a meeting that has its recording is refused: the page shows
        # the close code and the service's reason.
        await page.click("#record")
        await expect(page.locator("#error")).to_contain_text("code 4400", timeout=WITHIN_MS)
        await expect(page.locator("#error")).to_contain_text("FAILED_PRECONDITION")
        await screenshot(page, "console-live-refused")

        page.once("dialog", lambda dialog: dialog.accept())
        await page.click("#delete")
        await expect(page.locator("#meeting")).to_be_hidden()
        await expect(page.locator("#meetings li")).to_have_count(0)


@needs_chromium
async def test_a_live_recording_at_48_khz_resumes_after_a_drop_and_completes(
    page: Page, gateway: RunningGateway, user: str
) -> None:
    # About 3.5 s of 48 kHz 16-bit audio pass before the connection drops: after the
    # first turn's final, before the recording ends.
    async with dropping_proxy(gateway.port, drop_after=48_000 * 2 * 7 // 2) as proxy:
        sockets: list[str] = []
        page.on("websocket", lambda ws: sockets.append(ws.url))
        await _sign_in(page, proxy.url, user)
        await _create(page, "Hallway chat")
        await page.click("#record")
        await expect(page.locator("#live-state")).to_have_text("Recording…", timeout=WITHIN_MS)
        await expect(page.locator("#meeting-status")).to_have_text("live", timeout=WITHIN_MS)
        finals = page.locator("#transcript li.final")
        await expect(finals.first).to_be_visible(timeout=WITHIN_MS)
        await screenshot(page, "console-recording")

        await expect(page.locator("#live-state")).to_contain_text("resuming", timeout=WITHIN_MS)
        assert proxy.dropped
        await expect(page.locator("#live-state")).to_have_text("Recording…", timeout=WITHIN_MS)
        before = await finals.count()
        await expect(finals.nth(before)).to_be_visible(timeout=WITHIN_MS)  # spoken after

        await page.click("#stop")
        await expect(page.locator("#live-state")).to_have_text(
            "Recording ended.", timeout=WITHIN_MS
        )
        await expect(page.locator("#meeting-status")).to_have_text("completed", timeout=WITHIN_MS)
        await expect(page.locator("#error")).to_be_hidden()
        assert await page.locator("#transcript li.partial").count() == 0
    # The token went in the socket's first frame, never in its URL.
    assert len(sockets) == 2
    assert all("sample_rate=48000" in url and "access_token" not in url for url in sockets)
    assert "resume=true" in sockets[1]
