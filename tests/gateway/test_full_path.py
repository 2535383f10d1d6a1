"""The whole path through the gateway: gpu_node (mock engine), gpu_proxy, meeting_service
with its pipeline, and the gateway; uploads become transcripts and live audio becomes events.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio

from meeting_mesh.client import GatewayClient, SseEvent
from meeting_service.server import RunningMeetingService
from tests.gateway.test_live import TIMEOUT, session_end
from tests.support.gateway import RunningGateway, route
from tests.support.gpu import as_wav, dialogue, pcm16
from tests.support.media import as_video
from tests.support.meeting import make_token
from tests.support.pipeline import run_pipeline_service

WITHIN = 60.0
LIVE_WITHIN = 20.0  # 2 s of audio; the mock engine answers at once
_FINAL = {"MEETING_STATUS_COMPLETED", "MEETING_STATUS_FAILED"}


@pytest_asyncio.fixture(scope="module")
async def meeting_service(
    database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[RunningMeetingService]:
    """meeting_service with its pipeline, in front of gpu_proxy and a mock-engine gpu_node."""
    async with run_pipeline_service(
        database_url, tmp_path_factory, pipeline_live_follow_s=WITHIN
    ) as running:
        yield running


async def _follow(client: GatewayClient, meeting_id: str) -> list[SseEvent]:
    events = []
    async with asyncio.timeout(WITHIN):
        async for event in client.events(meeting_id):
            events.append(event)
            status = event.data.get("statusChange", {}).get("status")
            if status in _FINAL:
                break
    return events


@route("GET", "/v1/meetings/{meeting_id}/events", "success")
async def test_an_upload_becomes_a_transcript_that_streams_live_over_sse(
    gateway: RunningGateway, user: str, tmp_path: Path
) -> None:
    recording = tmp_path / "meeting.wav"
    recording.write_bytes(as_wav(dialogue(4)))
    async with aiohttp.ClientSession() as session:
        client = GatewayClient(session, gateway.url, make_token(user))
        meeting = await client.create_meeting("full path")
        stored = await client.upload(meeting["id"], recording, "audio/wav")
        assert stored["complete"] is True
        events = await _follow(client, meeting["id"])
        transcript = await client.transcript(meeting["id"])
    assert events[-1].data["statusChange"]["status"] == "MEETING_STATUS_COMPLETED"
    sequences = [int(e.id) for e in events]
    assert sequences == list(range(1, len(events) + 1))
    assert any(e.event == "segment" for e in events)
    assert any(e.event == "summary" for e in events)
    assert len(transcript["segments"]) == 4
    assert set(transcript["speakers"]) == {"SPEAKER_1", "SPEAKER_2"}


async def test_a_video_recording_is_transcribed_and_its_event_stream_ends(
    gateway: RunningGateway, user: str, tmp_path: Path
) -> None:
    recording = tmp_path / "zoom.mp4"
    recording.write_bytes(as_video(dialogue(2), "mp4"))
    token = make_token(user)
    async with aiohttp.ClientSession() as session:
        client = GatewayClient(session, gateway.url, token)
        meeting = await client.create_meeting("a Zoom recording")
        stored = await client.upload(meeting["id"], recording, "video/mp4")
        assert stored["complete"] is True
        async with asyncio.timeout(WITHIN):
            # No break: the server ends the stream after COMPLETED.
            events = [event async for event in client.events(meeting["id"])]
        async with session.get(
            f"{gateway.url}/v1/meetings/{meeting['id']}/events",
            headers={"Authorization": f"Bearer {token}", "Last-Event-ID": events[-1].id},
        ) as r:
            assert r.status == 204
        transcript = await client.transcript(meeting["id"])
    assert events[-1].data["statusChange"]["status"] == "MEETING_STATUS_COMPLETED"
    assert len(transcript["segments"]) == 2


@route("GET", "/v1/meetings/{meeting_id}/live", "success")
async def test_a_live_session_streams_pcm_in_and_events_out(
    http: aiohttp.ClientSession, as_user: dict[str, str], meeting_id: str
) -> None:
    audio = pcm16(dialogue(2))
    async with http.ws_connect(
        f"/v1/meetings/{meeting_id}/live", headers=as_user, timeout=TIMEOUT
    ) as ws:
        for start in range(0, len(audio), 3200):
            await ws.send_bytes(audio[start : start + 3200])
        await ws.send_str(json.dumps({"type": "end"}))
        async with asyncio.timeout(LIVE_WITHIN):
            texts, code, reason = await session_end(ws)
    assert code == 1000, (texts[-1:], reason)
    assert texts[0]["event"] == "status"
    assert texts[0]["statusChange"]["status"] == "MEETING_STATUS_LIVE"
    finals = [t for t in texts if t["event"] == "segment" and t["segment"]["final"]]
    assert len(finals) >= 2
    sequences = [int(t["sequence"]) for t in texts]
    assert sequences == sorted(set(sequences))


async def test_a_meeting_that_has_its_audio_refuses_a_live_session_with_4400(
    http: aiohttp.ClientSession, as_user: dict[str, str], meeting_id: str
) -> None:
    async with http.put(
        f"/v1/meetings/{meeting_id}/audio",
        data=as_wav(dialogue(1)),
        headers={**as_user, "Content-Type": "audio/wav"},
    ) as r:
        assert r.status == 200
    async with http.ws_connect(
        f"/v1/meetings/{meeting_id}/live", headers=as_user, timeout=TIMEOUT
    ) as ws:
        await ws.send_str(json.dumps({"type": "end"}))
        texts, code, reason = await session_end(ws)
    assert code == 4400, texts
    assert texts[-1]["error"]["details"][0]["reason"] == "WRONG_STATE"
    assert reason.startswith("FAILED_PRECONDITION: ")
