"""The SSE route: replay, live tail, exact resume, heartbeats, errors and shutdown."""

from __future__ import annotations

import asyncio
import contextlib

import aiohttp
import pytest

from meeting_mesh.client import SseEvent, parse_sse
from meeting_service.db.database import Database
from meeting_service.server import RunningMeetingService, run_meeting_service
from tests.support.gateway import (
    RunningGateway,
    bearer,
    error_of,
    gateway_settings,
    play_pipeline,
    route,
    run_gateway,
    take_events,
    wav_bytes,
)
from tests.support.meeting import TEST_JWT_SECRET, meeting_settings

WITHIN = 30.0


async def _upload(http: aiohttp.ClientSession, meeting_id: str, headers: dict[str, str]) -> None:
    async with http.put(
        f"/v1/meetings/{meeting_id}/audio",
        data=wav_bytes(),
        headers={**headers, "Content-Type": "audio/wav"},
    ) as r:
        assert r.status == 200, await r.text()


def _sequences(events: list[SseEvent]) -> list[int]:
    return [int(e.id) for e in events]


@route("GET", "/v1/meetings/{meeting_id}/events", "success")
async def test_replay_then_live_tail_with_sse_framing(
    http: aiohttp.ClientSession,
    as_user: dict[str, str],
    meeting_id: str,
    meeting_service: RunningMeetingService,
) -> None:
    await _upload(http, meeting_id, as_user)  # events 1-3: awaiting, uploading, queued
    async with http.get(f"/v1/meetings/{meeting_id}/events", headers=as_user) as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/event-stream")
        assert r.headers["Cache-Control"] == "no-cache"
        assert r.headers["X-Accel-Buffering"] == "no"
        assert (await r.content.readline()) == b"retry: 500\n"
        events = parse_sse(r.content)
        replayed = await take_events(events, 3)
        assert [e.event for e in replayed] == ["status"] * 3
        assert replayed[-1].data["statusChange"]["status"] == "MEETING_STATUS_QUEUED"
        # Live: what the pipeline stores now arrives on the open stream.
        await play_pipeline(meeting_service, meeting_id, ["One.", "Two."])
        live = await take_events(events, 5)
    assert [e.event for e in live] == ["status", "segment", "segment", "summary", "status"]
    assert _sequences(replayed + live) == list(range(1, 9))
    assert all(e.data["sequence"] == e.id for e in replayed + live)
    assert live[1].data["segment"]["text"] == "One."
    assert live[1].data["segment"]["speaker"] == "SPEAKER_1"
    assert live[-1].data["statusChange"]["status"] == "MEETING_STATUS_COMPLETED"


async def test_last_event_id_and_after_resume_with_no_gap_or_duplicate(
    gateway: RunningGateway,
    as_user: dict[str, str],
    meeting_id: str,
    meeting_service: RunningMeetingService,
) -> None:
    url = f"/v1/meetings/{meeting_id}/events"
    async with aiohttp.ClientSession(gateway.url) as http:
        await _upload(http, meeting_id, as_user)
        async with http.get(url, headers=as_user) as r:
            first = await take_events(parse_sse(r.content), 2)
        # The client went away after event 2; more happens while it is gone.
        await play_pipeline(meeting_service, meeting_id, ["A.", "B.", "C."])
        headers = {**as_user, "Last-Event-ID": first[-1].id}
        async with http.get(url, headers=headers) as r:
            rest = await take_events(parse_sse(r.content), 7)
        async with http.get(url, params={"after": "5"}, headers=as_user) as r:
            after = await take_events(parse_sse(r.content), 1)
    seen = _sequences(first + rest)
    assert seen == list(range(1, 10))
    assert len(set(seen)) == len(seen)
    assert _sequences(after) == [6]


async def test_an_idle_stream_gets_heartbeat_comments(
    http: aiohttp.ClientSession, as_user: dict[str, str], meeting_id: str
) -> None:
    async with http.get(f"/v1/meetings/{meeting_id}/events", headers=as_user) as r:
        lines: list[bytes] = []
        async with asyncio.timeout(WITHIN):
            while b": heartbeat\n" not in lines:
                lines.append(await r.content.readline())
    # Event 1 came first; the heartbeat followed while nothing happened.
    assert b"id: 1\n" in lines


async def test_deletion_is_the_last_event_and_ends_the_stream(
    http: aiohttp.ClientSession, as_user: dict[str, str], meeting_id: str
) -> None:
    async with http.get(f"/v1/meetings/{meeting_id}/events", headers=as_user) as r:
        events = parse_sse(r.content)
        await take_events(events, 1)
        async with http.delete(f"/v1/meetings/{meeting_id}", headers=as_user) as deleted:
            assert deleted.status == 204
        async with asyncio.timeout(WITHIN):
            rest = [e async for e in events]
    assert [e.event for e in rest] == ["deleted"]


@route("GET", "/v1/meetings/{meeting_id}/events", "failure")
async def test_ownership_and_resume_point_are_checked_before_the_stream_opens(
    http: aiohttp.ClientSession, as_user: dict[str, str], meeting_id: str
) -> None:
    url = f"/v1/meetings/{meeting_id}/events"
    async with http.get(url, headers=bearer("mallory")) as r:
        assert r.status == 404
        assert r.headers["Content-Type"].startswith("application/json")
        await error_of(r)
    for headers, params in [
        ({"Last-Event-ID": "seven"}, {}),
        ({}, {"after": "-1"}),
        ({}, {"tail": "1"}),
    ]:
        async with http.get(url, params=params, headers={**as_user, **headers}) as r:
            assert r.status == 400, (headers, params)
            await error_of(r)


async def test_a_failure_mid_stream_is_a_stream_error_event_then_the_end(
    database_url: str,
    tmp_path_factory: pytest.TempPathFactory,
    as_user: dict[str, str],
) -> None:
    settings = meeting_settings(database_url, tmp_path_factory.mktemp("doomed"))
    async with run_meeting_service(settings, database=Database(database_url)) as doomed:
        gateway_config = gateway_settings(doomed.address, TEST_JWT_SECRET)
        async with run_gateway(gateway_config) as gw, aiohttp.ClientSession(gw.url) as http:
            async with http.post("/v1/meetings", json={}, headers=as_user) as r:
                meeting_id = (await r.json())["meeting"]["id"]
            response = await http.get(f"/v1/meetings/{meeting_id}/events", headers=as_user)
            events = parse_sse(response.content)
            await take_events(events, 1)
            # meeting_service stops: its streams end with UNAVAILABLE.
            await doomed.services.hub.close()
            async with asyncio.timeout(WITHIN):
                rest = [e async for e in events]
            response.release()
    assert [e.event for e in rest] == ["stream_error"]
    assert rest[0].id == ""  # no id: the client's resume point stays at the last event
    assert rest[0].data["error"]["code"] == 503
    assert rest[0].data["error"]["status"] == "UNAVAILABLE"


async def test_streams_end_cleanly_when_the_gateway_stops(
    meeting_service: RunningMeetingService, as_user: dict[str, str], meeting_id: str
) -> None:
    settings = gateway_settings(meeting_service.address, TEST_JWT_SECRET)
    async with aiohttp.ClientSession() as http, contextlib.AsyncExitStack() as stack:
        gw = await stack.enter_async_context(run_gateway(settings))
        response = await http.get(f"{gw.url}/v1/meetings/{meeting_id}/events", headers=as_user)
        events = parse_sse(response.content)
        await take_events(events, 1)
        stopping = asyncio.ensure_future(stack.aclose())
        async with asyncio.timeout(WITHIN):
            rest = [e async for e in events]  # the body ends; no connection error
        await stopping
        response.release()
    assert rest == []
