"""What a browser needs of the gateway: CORS for the allowed origins, streams that end,
one stream for all of a user's meetings, uploads typed as browsers type them, and the API
described where a client author looks (/openapi.json, /docs)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from gateway.cors import ALLOWED_HEADERS, EXPOSED_HEADERS
from gateway.settings import GatewaySettings
from gen.meeting.v1 import meeting_pb2
from meeting_mesh.client import SseEvent, parse_sse
from meeting_service.server import RunningMeetingService
from tests.support.gateway import (
    HEARTBEAT_S,
    RunningGateway,
    bearer,
    error_of,
    gateway_settings,
    play_pipeline,
    reason_of,
    route,
    run_gateway,
    take_events,
)
from tests.support.gpu import dialogue
from tests.support.media import as_video
from tests.support.meeting import TEST_JWT_SECRET, make_token
from tests.support.transcripts import change_status

WITHIN = 30.0
PAGE = "https://console.example.com"
ORIGINS = [PAGE, "http://localhost:*"]


@pytest_asyncio.fixture(scope="module")
async def gateway(meeting_service: RunningMeetingService) -> AsyncIterator[RunningGateway]:
    """This module's gateway lets pages of `ORIGINS` call it."""
    settings = gateway_settings(
        meeting_service.address,
        TEST_JWT_SECRET,
        sse_heartbeat_s=HEARTBEAT_S,
        sse_retry_ms=500,
        cors_origins=ORIGINS,
    )
    async with run_gateway(settings) as running:
        yield running


async def _all(response: aiohttp.ClientResponse) -> list[SseEvent]:
    """Every event until the server ends the stream (it must end by itself)."""
    async with asyncio.timeout(WITHIN):
        return [event async for event in parse_sse(response.content)]


def _preflight(origin: str, method: str = "PUT") -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "authorization,content-type,upload-offset",
    }


# --- CORS ---


async def test_a_preflight_from_an_allowed_origin_is_answered_without_a_token(
    http: aiohttp.ClientSession, meeting_id: str
) -> None:
    for origin in (PAGE, "http://localhost:5173", "http://localhost:8080"):
        async with http.options(
            f"/v1/meetings/{meeting_id}/audio", headers=_preflight(origin)
        ) as r:
            assert r.status == 204, origin
            assert r.headers["Access-Control-Allow-Origin"] == origin
            methods = r.headers["Access-Control-Allow-Methods"]
            assert {"GET", "PUT", "PATCH", "DELETE", "HEAD", "POST"} <= set(methods.split(", "))
            allowed = r.headers["Access-Control-Allow-Headers"].lower().split(", ")
            assert {h.lower() for h in ALLOWED_HEADERS} <= set(allowed)
            assert "last-event-id" in allowed
            assert "Origin" in r.headers["Vary"]


async def test_a_preflight_from_any_other_origin_gets_no_cors_header(
    http: aiohttp.ClientSession,
) -> None:
    for origin in (
        "https://evil.example.com",
        "https://console.example.com.evil.net",
        "http://console.example.com",  # another scheme is another origin
        "https://localhost:5173",  # the wildcard is for http only
        "http://localhost.evil.net:80",
        "null",
    ):
        async with http.options("/v1/meetings", headers=_preflight(origin, "POST")) as r:
            assert "Access-Control-Allow-Origin" not in r.headers, origin
            assert r.status == 405, origin


async def test_answers_to_an_allowed_origin_name_it_and_expose_the_upload_headers(
    http: aiohttp.ClientSession, as_user: dict[str, str], meeting_id: str
) -> None:
    origin = {"Origin": PAGE}
    async with http.get(f"/v1/meetings/{meeting_id}", headers={**as_user, **origin}) as r:
        assert r.status == 200
        assert r.headers["Access-Control-Allow-Origin"] == PAGE
        assert set(EXPOSED_HEADERS) <= set(r.headers["Access-Control-Expose-Headers"].split(", "))
        assert {"Upload-Offset", "Location", "Retry-After"} <= set(EXPOSED_HEADERS)
    # Errors too, or a page could not read why it was refused.
    async with http.get(f"/v1/meetings/{meeting_id}", headers=origin) as r:
        assert r.status == 401
        assert r.headers["Access-Control-Allow-Origin"] == PAGE
    # And event streams, whose headers go out before the first event.
    events = f"/v1/meetings/{meeting_id}/events"
    async with http.get(events, headers={**as_user, **origin}) as r:
        assert r.status == 200
        assert r.headers["Access-Control-Allow-Origin"] == PAGE
    async with http.get(
        f"/v1/meetings/{meeting_id}", headers={**as_user, "Origin": "https://x.org"}
    ) as r:
        assert "Access-Control-Allow-Origin" not in r.headers


async def test_without_configured_origins_there_is_no_cors_at_all(
    meeting_service: RunningMeetingService, meeting_id: str, as_user: dict[str, str]
) -> None:
    assert GatewaySettings().cors_origins == []
    settings = gateway_settings(meeting_service.address, TEST_JWT_SECRET)
    async with run_gateway(settings) as plain, aiohttp.ClientSession(plain.url) as http:
        async with http.options("/v1/meetings", headers=_preflight("http://localhost:3000")) as r:
            assert "Access-Control-Allow-Origin" not in r.headers
        async with http.get(
            f"/v1/meetings/{meeting_id}", headers={**as_user, "Origin": "http://localhost:3000"}
        ) as r:
            assert r.status == 200
            assert not any(h.startswith("Access-Control-") for h in r.headers)


def test_origins_are_read_from_a_list_or_a_comma_separated_string(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MESH_CORS_ORIGINS", "http://localhost:*, https://a.example")
    assert GatewaySettings().cors_origins == ["http://localhost:*", "https://a.example"]
    monkeypatch.setenv("MESH_CORS_ORIGINS", '["https://b.example"]')
    assert GatewaySettings().cors_origins == ["https://b.example"]


# --- a meeting's stream ends ---


async def test_the_stream_ends_after_completed_and_a_resume_past_it_is_204(
    http: aiohttp.ClientSession,
    as_user: dict[str, str],
    meeting_id: str,
    meeting_service: RunningMeetingService,
) -> None:
    url = f"/v1/meetings/{meeting_id}/events"
    async with http.get(url, headers=as_user) as r:
        first = await take_events(parse_sse(r.content), 1)
        await play_pipeline(meeting_service, meeting_id, ["Hello.", "Bye."])
        rest = await _all(r)  # ends by itself after COMPLETED
    events = first + rest
    assert [e.event for e in events] == [
        "status",
        "status",
        "segment",
        "segment",
        "summary",
        "status",
    ]
    assert events[-1].data["statusChange"]["status"] == "MEETING_STATUS_COMPLETED"
    last = events[-1].id
    # A resume from before the end replays what is left, then ends.
    async with http.get(url, headers={**as_user, "Last-Event-ID": "4"}) as r:
        assert r.status == 200
        assert [e.id for e in await _all(r)] == ["5", "6"]
    # At or after the final event: 204, which makes an EventSource stop reconnecting.
    for resume in (last, str(int(last) + 5)):
        async with http.get(url, headers={**as_user, "Last-Event-ID": resume}) as r:
            assert r.status == 204, resume
            assert await r.read() == b""


async def test_a_failed_meeting_ends_its_stream_too(
    http: aiohttp.ClientSession,
    as_user: dict[str, str],
    meeting_id: str,
    meeting_service: RunningMeetingService,
) -> None:
    mid = uuid.UUID(meeting_id)
    await change_status(meeting_service.services, mid, meeting_pb2.MEETING_STATUS_FAILED, "no")
    async with http.get(f"/v1/meetings/{meeting_id}/events", headers=as_user) as r:
        events = await _all(r)
    assert [e.data["statusChange"]["status"] for e in events] == [
        "MEETING_STATUS_AWAITING_AUDIO",
        "MEETING_STATUS_FAILED",
    ]
    async with http.get(
        f"/v1/meetings/{meeting_id}/events", params={"after": events[-1].id}, headers=as_user
    ) as r:
        assert r.status == 204


# --- the caller's feed: every meeting on one connection ---


async def _create(http: aiohttp.ClientSession, headers: dict[str, str], title: str) -> str:
    async with http.post("/v1/meetings", json={"title": title}, headers=headers) as r:
        assert r.status == 201
        meeting_id: str = (await r.json())["meeting"]["id"]
        return meeting_id


def _feed(events: list[SseEvent]) -> list[tuple[str, str, str]]:
    """(event name, meeting id, status or "") of each feed event."""
    return [
        (e.event, e.data["meetingId"], e.data.get("meeting", {}).get("status", "")) for e in events
    ]


@route("GET", "/v1/events", "success")
async def test_one_stream_follows_every_meeting_of_the_caller_and_resumes_exactly(
    http: aiohttp.ClientSession,
    as_user: dict[str, str],
    meeting_service: RunningMeetingService,
) -> None:
    services = meeting_service.services
    first = await _create(http, as_user, "one")
    await _create(http, bearer("someone-else"), "not mine")
    async with http.get("/v1/events", headers={**as_user, "Origin": PAGE}) as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/event-stream")
        assert r.headers["Access-Control-Allow-Origin"] == PAGE
        events = parse_sse(r.content)
        replayed = await take_events(events, 1)
        second = await _create(http, as_user, "two")
        await change_status(services, uuid.UUID(first), meeting_pb2.MEETING_STATUS_QUEUED)
        await change_status(services, uuid.UUID(second), meeting_pb2.MEETING_STATUS_QUEUED)
        async with http.patch(
            f"/v1/meetings/{second}", json={"title": "renamed"}, headers=as_user
        ) as patched:
            assert patched.status == 200
        live = await take_events(events, 4)
    seen = replayed + live
    assert _feed(seen) == [
        ("meeting", first, "MEETING_STATUS_AWAITING_AUDIO"),
        ("meeting", second, "MEETING_STATUS_AWAITING_AUDIO"),
        ("meeting", first, "MEETING_STATUS_QUEUED"),
        ("meeting", second, "MEETING_STATUS_QUEUED"),
        ("meeting", second, "MEETING_STATUS_QUEUED"),
    ]
    assert [e.id for e in seen] == ["1", "2", "3", "4", "5"]
    assert all(e.data["sequence"] == e.id for e in seen)
    assert seen[-1].data["meeting"]["title"] == "renamed"
    assert seen[1].data["meeting"]["title"] == "two"

    # Gone for a while: a deletion and a status change happen; the resume misses nothing.
    async with http.delete(f"/v1/meetings/{first}", headers=as_user) as deleted:
        assert deleted.status == 204
    await change_status(services, uuid.UUID(second), meeting_pb2.MEETING_STATUS_FAILED, "why")
    async with http.get("/v1/events", headers={**as_user, "Last-Event-ID": "3"}) as r:
        resumed = await take_events(parse_sse(r.content), 4)
    assert [e.id for e in resumed] == ["4", "5", "6", "7"]
    assert _feed(resumed) == [
        ("meeting", second, "MEETING_STATUS_QUEUED"),
        ("meeting", second, "MEETING_STATUS_QUEUED"),
        ("deleted", first, ""),
        ("meeting", second, "MEETING_STATUS_FAILED"),
    ]
    assert resumed[-1].data["meeting"]["failureReason"] == "why"
    # From the start: the deleted meeting's earlier events gave way to its deletion.
    async with http.get("/v1/events", headers=as_user) as r:
        whole = await take_events(parse_sse(r.content), 5)
    assert [e.id for e in whole] == ["2", "4", "5", "6", "7"]


async def test_the_feed_takes_a_query_token_and_sends_heartbeats(
    http: aiohttp.ClientSession, user: str
) -> None:
    async with http.get("/v1/events", params={"access_token": make_token(user)}) as r:
        assert r.status == 200
        lines: list[bytes] = []
        async with asyncio.timeout(WITHIN):
            while b": heartbeat\n" not in lines:
                lines.append(await r.content.readline())
    assert lines[0] == b"retry: 500\n"


@route("GET", "/v1/events", "failure")
async def test_the_feed_checks_its_token_and_resume_point(
    http: aiohttp.ClientSession, as_user: dict[str, str]
) -> None:
    async with http.get("/v1/events") as r:
        assert r.status == 401
    for headers, params in [({"Last-Event-ID": "x"}, {}), ({}, {"after": "-1"}), ({}, {"m": "1"})]:
        async with http.get("/v1/events", params=params, headers={**as_user, **headers}) as r:
            assert r.status == 400, (headers, params)
            assert reason_of(await error_of(r)) == "INVALID_FIELD"


# --- uploads typed as browsers type them ---


async def test_a_file_without_audio_is_refused_and_the_meeting_stays_as_it_was(
    http: aiohttp.ClientSession, as_user: dict[str, str], meeting_id: str
) -> None:
    async with http.put(
        f"/v1/meetings/{meeting_id}/audio",
        data=as_video(None, "mp4"),
        headers={**as_user, "Content-Type": "video/mp4"},
    ) as r:
        assert r.status == 400
        error = await error_of(r)
    assert reason_of(error) == "NOT_AUDIO"
    assert "no audio stream" in error["message"]
    async with http.get(f"/v1/meetings/{meeting_id}", headers=as_user) as r:
        meeting = (await r.json())["meeting"]
    assert meeting["status"] == "MEETING_STATUS_AWAITING_AUDIO"
    assert "no audio stream" in meeting["failureReason"]
    assert meeting.get("audioSizeBytes", "0") == "0"
    async with http.head(f"/v1/meetings/{meeting_id}/audio", headers=as_user) as r:
        assert r.headers["Upload-Offset"] == "0"


async def test_video_and_octet_stream_recordings_with_audio_are_accepted(
    http: aiohttp.ClientSession, as_user: dict[str, str]
) -> None:
    for title, data, content_type in [
        ("zoom", as_video(dialogue(1), "mp4"), "video/mp4"),
        ("browser", as_video(dialogue(1), "webm"), "video/webm"),
        ("unnamed", as_video(dialogue(1), "webm"), "application/octet-stream"),
    ]:
        meeting_id = await _create(http, as_user, title)
        async with http.put(
            f"/v1/meetings/{meeting_id}/audio",
            data=data,
            headers={**as_user, "Content-Type": content_type},
        ) as r:
            assert r.status == 200, (content_type, await r.text())
            body: dict[str, Any] = await r.json()
        assert body["complete"] is True, content_type
        assert body["meeting"]["status"] == "MEETING_STATUS_QUEUED"
        assert body["meeting"]["contentType"] == content_type


# --- the API described ---


def _undescribed(node: Any, where: str) -> list[str]:
    """Paths of schema properties (anywhere in the document) that have no description."""
    missing: list[str] = []
    if isinstance(node, dict):
        for name, schema in (node.get("properties") or {}).items():
            if not (isinstance(schema, dict) and str(schema.get("description", "")).strip()):
                missing.append(f"{where}.{name}")
        for key, value in node.items():
            missing += _undescribed(value, f"{where}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            missing += _undescribed(value, f"{where}[{index}]")
    return missing


async def test_every_field_route_and_parameter_is_described(http: aiohttp.ClientSession) -> None:
    async with http.get("/openapi.json") as r:
        document = await r.json()
    assert _undescribed(document, "") == []
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            assert operation["summary"].strip(), (method, path)
            for parameter in operation.get("parameters", []):
                assert parameter.get("description", "").strip(), (method, path, parameter)
    schemas = document["components"]["schemas"]
    assert "Server-assigned identifier" in schemas["Meeting"]["properties"]["id"]["description"]
    status = schemas["Meeting"]["properties"]["status"]["description"]
    assert "`MEETING_STATUS_FAILED`: Processing gave up" in status
    assert "UserEvent" in schemas


async def test_the_streaming_protocols_are_described(http: aiohttp.ClientSession) -> None:
    async with http.get("/openapi.json") as r:
        paths = (await r.json())["paths"]
    events = paths["/v1/meetings/{meeting_id}/events"]["get"]
    assert "204" in events["responses"]
    for words in ("Last-Event-ID", "stream_error", "segmentId", "COMPLETED", "204"):
        assert words in events["description"], words
    feed = paths["/v1/events"]["get"]["description"]
    for words in ("`meeting`", "`deleted`", "Last-Event-ID", "per user"):
        assert words in feed, words
    live = paths["/v1/meetings/{meeting_id}/live"]["get"]["description"]
    for words in ('{"type": "end"}', '{"type": "auth"', "4401", "4404", "1003", "segmentId"):
        assert words in live, words


@route("GET", "/docs", "success")
async def test_the_api_is_a_readable_page(http: aiohttp.ClientSession) -> None:
    async with http.get("/docs") as r:
        assert r.status == 200
        assert r.content_type == "text/html"
        page = await r.text()
    assert "openapi.json" in page
    assert "<script src=" not in page and "//cdn" not in page  # served offline, whole
