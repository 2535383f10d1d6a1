"""Uploads through the gateway: streamed, limited, typed, and resumable the tus way."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable

import aiohttp

from gen.meeting.v1 import meeting_service_pb2, meeting_service_pb2_grpc
from meeting_service.server import RunningMeetingService
from tests.support.gateway import (
    RunningGateway,
    error_of,
    gateway_settings,
    reason_of,
    resume_upload,
    route,
    run_gateway,
    start_raw_put,
    wait_until,
    wav_bytes,
)
from tests.support.log_capture import captured_logs
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


async def test_a_chunked_body_crossing_the_limit_is_413_and_discarded_as_over_grpc(
    meeting_service: RunningMeetingService, as_user: dict[str, str], meeting_id: str
) -> None:
    limit = 256 * 1024
    settings = gateway_settings(
        meeting_service.address, TEST_JWT_SECRET, max_upload_bytes=limit, upload_chunk_bytes=65536
    )

    url = f"/v1/meetings/{meeting_id}/audio"

    async def stored(http: aiohttp.ClientSession) -> int:
        async with http.head(url, headers=as_user) as r:
            return int(r.headers["Upload-Offset"])

    async def body(http: aiohttp.ClientSession) -> AsyncIterator[bytes]:
        audio = wav_bytes(seconds=20.0)  # 640 KB, no Content-Length: chunked
        for start in range(0, len(audio), 32768):
            if start == limit:
                # Part of it is stored before the limit is crossed (what a resume would
                # find, were the upload merely cut off).
                await wait_until(lambda: _positive(stored(http)))
            yield audio[start : start + 32768]

    with captured_logs() as logs:
        async with run_gateway(settings) as small, aiohttp.ClientSession(small.url) as http:
            headers = {**as_user, "Content-Type": "audio/wav"}
            async with http.put(url, data=body(http), headers=headers) as r:
                assert r.status == 413
                assert (await r.json())["error"]["details"][0]["reason"] == "UPLOAD_TOO_LARGE"
            async with http.get(f"/v1/meetings/{meeting_id}", headers=as_user) as r:
                meeting = (await r.json())["meeting"]
            # Nothing of it is kept: the meeting awaits audio, and a new PUT starts afresh.
            assert meeting["status"] == "MEETING_STATUS_AWAITING_AUDIO"
            assert int(meeting.get("audioSizeBytes", "0")) == 0
            async with http.put(url, data=wav_bytes(seconds=1.0), headers=headers) as r:
                assert r.status == 200, await r.text()
    logs.assert_clean()


async def _positive(value: Awaitable[int]) -> bool:
    return await value > 0


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
    framing = f"Content-Length: {len(audio)}"
    writer = await start_raw_put(gateway, meeting_id, as_user, framing, audio[:cut])
    async with aiohttp.ClientSession(gateway.url) as http:
        # The connection drops once part of the recording is stored (polled, bounded).
        async def some_stored() -> bool:
            return await _head(http, meeting_id, as_user) > 0

        await wait_until(some_stored)
        writer.close()
        await writer.wait_closed()

        # The gateway cancels the stream; the service keeps what it stored.
        async def offset_now() -> int:
            async with http.head(f"/v1/meetings/{meeting_id}/audio", headers=as_user) as r:
                assert r.status == 200
                assert r.headers["Upload-Complete"] == "false"
                assert r.headers["Upload-Length"] == str(len(audio))
                offset = int(r.headers["Upload-Offset"])
            assert 0 < offset <= cut
            return offset

        body = await resume_upload(http, meeting_id, as_user, audio, offset_now)
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


def _served(meeting_service: RunningMeetingService, method: str) -> float:
    """How many calls of `method` meeting_service has finished, by its own metrics."""
    return sum(
        sample.value
        for metric in meeting_service.telemetry.registry.collect()
        if metric.name == "mesh_grpc_server_requests"
        for sample in metric.samples
        if sample.name.endswith("_total") and sample.labels["method"].endswith(f"/{method}")
    )


async def test_an_offset_mismatch_is_the_same_answer_whoever_finds_it(
    http: aiohttp.ClientSession,
    as_user: dict[str, str],
    meeting_id: str,
    meeting_service: RunningMeetingService,
    meeting_stub: meeting_service_pb2_grpc.MeetingServiceStub,
) -> None:
    audio = wav_bytes(seconds=4.0)
    first, second = 40_000, 80_000
    grpc_auth = (("authorization", as_user["Authorization"]),)
    more, finished = asyncio.Event(), asyncio.Event()

    # Another writer (straight to meeting_service) stores part of the recording and keeps
    # its stream open, to move the stored size on when the test says so.
    async def writer() -> AsyncIterator[meeting_service_pb2.UploadAudioRequest]:
        yield meeting_service_pb2.UploadAudioRequest(
            metadata=meeting_service_pb2.UploadMetadata(
                meeting_id=meeting_id, content_type="audio/wav", offset=0
            )
        )
        yield meeting_service_pb2.UploadAudioRequest(chunk=audio[:first])
        await more.wait()
        yield meeting_service_pb2.UploadAudioRequest(chunk=audio[first:second])
        await finished.wait()

    async def stored() -> int:
        status = await meeting_stub.GetUploadStatus(
            meeting_service_pb2.GetUploadStatusRequest(meeting_id=meeting_id), metadata=grpc_auth
        )
        return int(status.stored_size)

    other = meeting_stub.UploadAudio(writer(), metadata=grpc_auth)
    try:

        async def stored_is(size: int) -> bool:
            return await stored() == size

        await wait_until(lambda: stored_is(first))
        url = f"/v1/meetings/{meeting_id}/audio"
        tus = {**as_user, "Content-Type": "application/offset+octet-stream"}

        # The gateway finds it: the offset differs from the stored size it asks for first.
        async with http.patch(url, data=b"x", headers={**tus, "Upload-Offset": "0"}) as r:
            by_gateway = (r.status, await error_of(r))
            assert r.headers["Upload-Offset"] == str(first)

        # meeting_service finds it: the stored size moves on after the gateway asked for it
        # (the gateway's GetUploadStatus has finished) and before this body arrives.
        release = asyncio.Event()

        async def late_body() -> AsyncIterator[bytes]:
            # One byte first: the client sends the request head with it, and the gateway
            # holds it until a whole chunk has arrived.
            yield audio[first : first + 1]
            await release.wait()
            yield audio[first + 1 :]

        asked = _served(meeting_service, "GetUploadStatus")
        patch = asyncio.ensure_future(
            http.patch(url, data=late_body(), headers={**tus, "Upload-Offset": str(first)})
        )

        async def gateway_asked() -> bool:
            return _served(meeting_service, "GetUploadStatus") > asked

        await wait_until(gateway_asked)
        more.set()
        await wait_until(lambda: stored_is(second))
        release.set()
        async with await patch as r:
            by_service = (r.status, await error_of(r))
            assert "Upload-Offset" not in r.headers, "the gateway let this one through"
    finally:
        finished.set()
        other.cancel()

    assert by_gateway[0] == by_service[0] == 409
    for _, error in (by_gateway, by_service):
        assert error["status"] == "FAILED_PRECONDITION"
        assert reason_of(error) == "UPLOAD_OFFSET_MISMATCH"
    assert by_gateway[1]["details"][0]["metadata"]["stored_size"] == str(first)
    assert by_service[1]["details"][0]["metadata"]["stored_size"] == str(second)
