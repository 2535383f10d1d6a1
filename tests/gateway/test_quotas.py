"""Upload quotas per caller, over REST and gRPC: uploads started per minute and bytes
stored, refused at the start with 429 / RESOURCE_EXHAUSTED and Retry-After, never midway,
and never an upload already accepted."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import grpc
import pytest
import pytest_asyncio

from gen.meeting.v1 import meeting_service_pb2, meeting_service_pb2_grpc
from meeting_service.db.database import Database
from meeting_service.server import RunningMeetingService, run_meeting_service
from tests.support.gateway import error_of, reason_of, wav_bytes
from tests.support.meeting import auth, meeting_settings

UPLOADS_PER_MINUTE = 3
STORED_BYTES = 100_000
AUDIO = wav_bytes(seconds=1.0)  # 32,044 bytes


@pytest_asyncio.fixture(scope="module")
async def meeting_service(
    database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[RunningMeetingService]:
    """This module's meeting_service, with upload quotas."""
    settings = meeting_settings(
        database_url,
        tmp_path_factory.mktemp("quotas"),
        pipeline_workers=0,
        quota_uploads_per_minute=UPLOADS_PER_MINUTE,
        quota_stored_bytes=STORED_BYTES,
    )
    async with run_meeting_service(settings, database=Database(database_url)) as running:
        yield running


async def new_meeting(http: aiohttp.ClientSession, headers: dict[str, str]) -> str:
    async with http.post("/v1/meetings", json={}, headers=headers) as r:
        meeting_id: str = (await r.json())["meeting"]["id"]
        return meeting_id


async def put(
    http: aiohttp.ClientSession, headers: dict[str, str], meeting_id: str, body: bytes
) -> aiohttp.ClientResponse:
    async with http.put(
        f"/v1/meetings/{meeting_id}/audio",
        data=body,
        headers={**headers, "Content-Type": "audio/wav"},
    ) as r:
        await r.read()
        return r


async def quota_refusal(response: aiohttp.ClientResponse) -> dict[str, Any]:
    assert response.status == 429
    assert 1 <= int(response.headers["Retry-After"]) <= 60
    error = await error_of(response)
    assert (error["status"], reason_of(error)) == ("RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED")
    metadata: dict[str, Any] = error["details"][0]["metadata"]
    return metadata


async def stored(http: aiohttp.ClientSession, headers: dict[str, str], meeting_id: str) -> int:
    async with http.head(f"/v1/meetings/{meeting_id}/audio", headers=headers) as r:
        return int(r.headers["Upload-Offset"])


def grpc_upload(
    stub: meeting_service_pb2_grpc.MeetingServiceStub,
    user: str,
    meeting_id: str,
    chunk: bytes,
    *,
    offset: int = 0,
    total_size: int | None = None,
) -> Any:
    async def requests() -> AsyncIterator[meeting_service_pb2.UploadAudioRequest]:
        metadata = meeting_service_pb2.UploadMetadata(
            meeting_id=meeting_id, content_type="audio/wav", offset=offset
        )
        if total_size is not None:
            metadata.total_size = total_size
        yield meeting_service_pb2.UploadAudioRequest(metadata=metadata)
        yield meeting_service_pb2.UploadAudioRequest(chunk=chunk)

    return stub.UploadAudio(requests(), metadata=auth(user))


async def test_uploads_over_the_rate_are_refused_at_their_start_and_resumes_are_not(
    http: aiohttp.ClientSession,
    as_user: dict[str, str],
    user: str,
    meeting_service: RunningMeetingService,
) -> None:
    async with grpc.aio.insecure_channel(meeting_service.address) as channel:
        stub = meeting_service_pb2_grpc.MeetingServiceStub(channel)
        partial = await new_meeting(http, as_user)
        half = len(AUDIO) // 2
        ended = await grpc_upload(stub, user, partial, AUDIO[:half], total_size=len(AUDIO))
        assert not ended.complete  # a dropped upload: one start
        for _ in range(UPLOADS_PER_MINUTE - 1):
            assert (await put(http, as_user, await new_meeting(http, as_user), AUDIO)).status == 200
        refused = await new_meeting(http, as_user)
        metadata = await quota_refusal(await put(http, as_user, refused, AUDIO))
        assert metadata == {"quota": "uploads_per_minute", "limit": str(UPLOADS_PER_MINUTE)}
        assert await stored(http, as_user, refused) == 0
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await grpc_upload(stub, user, refused, AUDIO, total_size=len(AUDIO))
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        # The upload accepted before the limit still completes.
        async with http.patch(
            f"/v1/meetings/{partial}/audio",
            data=AUDIO[half:],
            headers={**as_user, "Upload-Offset": str(half), "Content-Type": "audio/wav"},
        ) as r:
            assert r.status == 200, await r.text()
            assert (await r.json())["complete"] is True


async def test_uploads_past_the_stored_bytes_are_refused_before_any_byte_is_stored(
    http: aiohttp.ClientSession,
    as_user: dict[str, str],
    user: str,
    meeting_service: RunningMeetingService,
) -> None:
    assert (await put(http, as_user, await new_meeting(http, as_user), AUDIO)).status == 200
    too_big = await new_meeting(http, as_user)
    declared = bytes(STORED_BYTES - len(AUDIO) + 1)  # one byte past the quota
    metadata = await quota_refusal(await put(http, as_user, too_big, declared))
    assert metadata == {"quota": "stored_bytes", "limit": str(STORED_BYTES)}
    assert await stored(http, as_user, too_big) == 0
    # A refused start is not counted against the rate, and what fits is accepted.
    assert (await put(http, as_user, too_big, AUDIO)).status == 200
    async with grpc.aio.insecure_channel(meeting_service.address) as channel:
        stub = meeting_service_pb2_grpc.MeetingServiceStub(channel)
        third = await new_meeting(http, as_user)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await grpc_upload(stub, user, third, AUDIO, total_size=STORED_BYTES)
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "bytes" in str(caught.value.details())
