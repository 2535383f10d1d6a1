"""Uploads through the gateway: streamed, limited, typed, and resumable the tus way."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import aiohttp

from meeting_service.server import RunningMeetingService
from tests.gateway.conftest import error_of, reason_of, route
from tests.support.gateway import (
    RunningGateway,
    gateway_settings,
    run_gateway,
    wait_until,
    wav_bytes,
)
from tests.support.meeting import TEST_JWT_SECRET


async def _head(http: aiohttp.ClientSession, meeting_id: str, headers: dict[str, str]) -> int:
    async with http.head(f"/v1/meetings/{meeting_id}/audio", headers=headers) as r:
        assert r.status == 200
        return int(r.headers["Upload-Offset"])


@route("PUT", "/v1/meetings/{meeting_id}/audio", "success")
async def test_put_stores_the_recording_and_queues_the_meeting(
    http: aiohttp.ClientSession, as_user: dict[str, str], meeting_id: str
) -> None:
    audio = wav_bytes(seconds=2.0)
    async with http.put(
        f"/v1/meetings/{meeting_id}/audio",
        data=audio,
        headers={**as_user, "Content-Type": "audio/wav"},
    ) as r:
        assert r.status == 200, await r.text()
        assert r.headers["Upload-Offset"] == str(len(audio))
        body = await r.json()
    assert body["complete"] is True
    assert body["storedSize"] == str(len(audio))
    assert body["meeting"]["status"] == "MEETING_STATUS_QUEUED"
    assert body["duration"] == "2s"


@route("PUT", "/v1/meetings/{meeting_id}/audio", "failure")
async def test_put_refuses_non_audio_types_with_415_and_stores_nothing(
    http: aiohttp.ClientSession, as_user: dict[str, str], meeting_id: str
) -> None:
    for content_type in ("application/json", "text/plain", "image/png"):
        async with http.put(
            f"/v1/meetings/{meeting_id}/audio",
            data=wav_bytes(),
            headers={**as_user, "Content-Type": content_type},
        ) as r:
            assert r.status == 415, content_type
            error = await error_of(r)
            assert content_type in error["message"]
    assert await _head(http, meeting_id, as_user) == 0


async def test_put_over_the_declared_limit_is_413_before_any_byte_is_read(
    http: aiohttp.ClientSession, as_user: dict[str, str], meeting_id: str
) -> None:
    sent = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal sent
        while True:
            sent += 65536
            yield bytes(65536)

    # The body never ends: only an answer given before reading can end this request.
    headers = {**as_user, "Content-Type": "audio/wav", "Content-Length": str(2 * 1024**3)}
    async with http.put(f"/v1/meetings/{meeting_id}/audio", data=endless(), headers=headers) as r:
        assert r.status == 413
        error = await error_of(r)
        assert reason_of(error) == "UPLOAD_TOO_LARGE"
        assert error["details"][0]["metadata"]["limit_bytes"] == str(1024**3)
    assert await _head(http, meeting_id, as_user) == 0


async def test_a_chunked_body_crossing_the_limit_is_413_and_completes_nothing(
    meeting_service: RunningMeetingService, as_user: dict[str, str], meeting_id: str
) -> None:
    limit = 256 * 1024
    settings = gateway_settings(
        meeting_service.address, TEST_JWT_SECRET, max_upload_bytes=limit, upload_chunk_bytes=65536
    )

    async def body() -> AsyncIterator[bytes]:
        audio = wav_bytes(seconds=20.0)  # 640 KB, no Content-Length: chunked
        for start in range(0, len(audio), 32768):
            yield audio[start : start + 32768]

    async with run_gateway(settings) as small, aiohttp.ClientSession(small.url) as http:
        headers = {**as_user, "Content-Type": "audio/wav"}
        async with http.put(f"/v1/meetings/{meeting_id}/audio", data=body(), headers=headers) as r:
            assert r.status == 413
        async with http.get(f"/v1/meetings/{meeting_id}", headers=as_user) as r:
            meeting = (await r.json())["meeting"]
        # Cancelled, not ended: the truncated recording did not become a queued meeting.
        assert meeting["status"] != "MEETING_STATUS_QUEUED"
        assert int(meeting.get("audioSizeBytes", "0")) <= limit


async def test_random_bytes_labelled_as_audio_get_the_services_400(
    http: aiohttp.ClientSession, as_user: dict[str, str], meeting_id: str
) -> None:
    async with http.put(
        f"/v1/meetings/{meeting_id}/audio",
        data=os.urandom(200_000),
        headers={**as_user, "Content-Type": "audio/mpeg"},
    ) as r:
        assert r.status == 400
        error = await error_of(r)
        assert reason_of(error) == "NOT_AUDIO"
        assert error["message"]


@route("HEAD", "/v1/meetings/{meeting_id}/audio", "success")
@route("PATCH", "/v1/meetings/{meeting_id}/audio", "success")
async def test_an_upload_cut_off_midway_resumes_with_head_and_patch(
    gateway: RunningGateway, as_user: dict[str, str], meeting_id: str
) -> None:
    audio = wav_bytes(seconds=30.0)  # 960 KB, 15 chunks of 64 KiB at the gateway
    cut = len(audio) // 2
    # A client whose connection drops after half the body: raw socket, then close.
    _, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    head = (
        f"PUT /v1/meetings/{meeting_id}/audio HTTP/1.1\r\nHost: test\r\n"
        f"Authorization: {as_user['Authorization']}\r\nContent-Type: audio/wav\r\n"
        f"Content-Length: {len(audio)}\r\n\r\n"
    )
    writer.write(head.encode() + audio[:cut])
    await writer.drain()
    async with aiohttp.ClientSession(gateway.url) as http:
        # The connection drops once part of the recording is stored (polled, bounded).
        async def some_stored() -> bool:
            return await _head(http, meeting_id, as_user) > 0

        await wait_until(some_stored)
        writer.close()
        await writer.wait_closed()
        # The gateway cancels the stream; the service keeps what it stored. What is stored
        # may still grow while the cancellation travels, so a stale offset is answered 409
        # and the client asks again, as a real client does.
        for _ in range(50):
            async with http.head(f"/v1/meetings/{meeting_id}/audio", headers=as_user) as r:
                assert r.status == 200
                assert r.headers["Upload-Complete"] == "false"
                assert r.headers["Upload-Length"] == str(len(audio))
                offset = int(r.headers["Upload-Offset"])
            assert 0 < offset <= cut
            async with http.patch(
                f"/v1/meetings/{meeting_id}/audio",
                data=audio[offset:],
                headers={
                    **as_user,
                    "Content-Type": "application/offset+octet-stream",
                    "Upload-Offset": str(offset),
                },
            ) as r:
                if r.status == 409:
                    continue
                assert r.status == 200, await r.text()
                assert r.headers["Upload-Offset"] == str(len(audio))
                body = await r.json()
                break
        assert body["complete"] is True
        assert body["duration"] == "30s"
        async with http.head(f"/v1/meetings/{meeting_id}/audio", headers=as_user) as r:
            assert r.headers["Upload-Complete"] == "true"


@route("PATCH", "/v1/meetings/{meeting_id}/audio", "failure")
async def test_patch_at_the_wrong_offset_is_409_and_changes_nothing(
    http: aiohttp.ClientSession, as_user: dict[str, str], meeting_id: str
) -> None:
    url = f"/v1/meetings/{meeting_id}/audio"
    for offset in ("100", "0x10"):
        async with http.patch(
            url,
            data=b"x" * 100,
            headers={**as_user, "Content-Type": "audio/wav", "Upload-Offset": offset},
        ) as r:
            if offset == "100":
                assert r.status == 409
                error = await error_of(r)
                assert reason_of(error) == "UPLOAD_OFFSET_MISMATCH"
                assert error["details"][0]["metadata"]["stored_size"] == "0"
                assert r.headers["Upload-Offset"] == "0"
            else:
                assert r.status == 400
    async with http.patch(url, data=b"x", headers={**as_user, "Content-Type": "audio/wav"}) as r:
        assert r.status == 400
        assert (await error_of(r))["details"][0]["metadata"]["field"] == "Upload-Offset"
    async with http.get(f"/v1/meetings/{meeting_id}", headers=as_user) as r:
        assert (await r.json())["meeting"]["status"] == "MEETING_STATUS_AWAITING_AUDIO"
    assert await _head(http, meeting_id, as_user) == 0


@route("HEAD", "/v1/meetings/{meeting_id}/audio", "failure")
async def test_head_of_an_unknown_meeting_is_404_without_a_body(
    http: aiohttp.ClientSession, as_user: dict[str, str]
) -> None:
    async with http.head(
        "/v1/meetings/00000000-0000-4000-8000-000000000000/audio", headers=as_user
    ) as r:
        assert r.status == 404
        assert "Upload-Offset" not in r.headers
