"""The real engines through the whole mesh: gateway, meeting_service with its pipeline,
gpu_proxy (mTLS) and gpu_node with faster-whisper, resemblyzer and the extractive summarizer.

What a user of the product sees: an uploaded two-voice recording becomes, over SSE and then
REST, a transcript of what was said, by whom, with a faithful summary; audio streamed live
over the WebSocket comes back as text soon after each utterance ends.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from gpu_node.engines.factory import Engines as NodeEngines
from gpu_node.server import run_gpu_node
from gpu_proxy.server import run_gpu_proxy
from meeting_mesh.client import GatewayClient, SseEvent
from meeting_service.db.database import Database
from meeting_service.server import run_meeting_service
from tests.engines import ENGINES
from tests.support.engines import Engines
from tests.support.gateway import RunningGateway, gateway_settings, run_gateway
from tests.support.gpu import make_pki, node_settings, pcm16, proxy_settings
from tests.support.meeting import TEST_JWT_SECRET, make_token, pipeline_settings
from tests.support.speech import (
    PRIYA,
    SAMPLE_RATE,
    Recording,
    normalise_words,
    speak,
    word_error_rate,
    write_wav,
)

pytestmark = ENGINES

# Bounds, not timings: the ~27 s meeting is one Whisper window, decoded at RTF ~0.05 on
# 2 CPU cores (docs/engines.md), so a whole job takes a few seconds; these only stop a
# hung mesh from hanging the suite.
WITHIN_S = 60.0
# Live audio is sent as a microphone would: 100 ms frames at real time.
FRAME_S = 0.1
# Product bound for live audio: each final segment reaches the WebSocket client within this
# long after the last audio of its utterance was sent. The engine closes an utterance once
# ASR_LIVE_SILENCE_S (0.6 s) of silence has been fed, then runs one greedy decode of that
# utterance over a 10 s encoder window (docs/engines.md, "Live recognition": about a quarter
# of a CPU second with tiny.en; the partials in between never hold the audio back), then
# the segment crosses gpu_proxy, meeting_service's store and the gateway (milliseconds).
# 4 s leaves room for a loaded 2-core machine.
LIVE_FINAL_WITHIN_S = 4.0
MAX_WER = 0.15
_ENDED = {"MEETING_STATUS_COMPLETED", "MEETING_STATUS_FAILED"}


@pytest_asyncio.fixture(scope="module")
async def mesh(
    engines: Engines, database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[RunningGateway]:
    """The whole mesh on loopback: a gpu_node serving the session's loaded real engines,
    gpu_proxy, meeting_service with one pipeline worker, and the gateway."""
    pki = make_pki(tmp_path_factory.mktemp("pki"))
    async with AsyncExitStack() as stack:
        node = await stack.enter_async_context(
            run_gpu_node(node_settings(pki, gpu_node_engine="whisper"), NodeEngines(*engines))
        )
        proxy = await stack.enter_async_context(run_gpu_proxy(proxy_settings(pki, [node.address])))
        service_settings = pipeline_settings(
            database_url,
            tmp_path_factory.mktemp("meeting-service"),
            pki,
            proxy.address,
            pipeline_live_follow_s=WITHIN_S,
        )
        service = await stack.enter_async_context(
            run_meeting_service(service_settings, database=Database(database_url))
        )
        yield await stack.enter_async_context(
            run_gateway(
                gateway_settings(
                    service.address,
                    TEST_JWT_SECRET,
                    sse_heartbeat_s=1.0,
                    shutdown_grace_s=2.0,
                )
            )
        )


@dataclass(frozen=True)
class User:
    """A user of the gateway: the typed client and the raw session with its header."""

    client: GatewayClient
    http: aiohttp.ClientSession
    auth: dict[str, str]


@pytest_asyncio.fixture
async def user(mesh: RunningGateway) -> AsyncIterator[User]:
    """A fresh user of the gateway for each test."""
    token = make_token(f"user-{uuid.uuid4().hex[:12]}")
    async with aiohttp.ClientSession(mesh.url) as http:
        yield User(GatewayClient(http, mesh.url, token), http, {"Authorization": f"Bearer {token}"})


def _seconds(duration: str | None) -> float:
    """A protobuf JSON Duration ("1.500s"; absent means 0) in seconds."""
    return float((duration or "0s").removesuffix("s"))


def _overlaps(meeting: Recording, segment: dict[str, Any]) -> list[float]:
    start, end = _seconds(segment.get("startOffset")), _seconds(segment.get("endOffset"))
    return [max(0.0, min(end, line.end_s) - max(start, line.start_s)) for line in meeting.lines]


def _line_of(meeting: Recording, segment: dict[str, Any]) -> int:
    """The script line the segment's time span overlaps most."""
    overlaps = _overlaps(meeting, segment)
    return max(range(len(overlaps)), key=overlaps.__getitem__)


def _assert_speakers_follow_the_voices(
    meeting: Recording, segments: Sequence[dict[str, Any]]
) -> None:
    """Every script line has its segment(s), and the labels follow the voices: one label
    per voice, a different one for each (labels are names the system chose)."""
    lines = [_line_of(meeting, s) for s in segments]
    seen = [(s.get("startOffset"), s.get("speaker"), s["text"]) for s in segments]
    assert sorted(set(lines)) == list(range(len(meeting.lines))), seen
    labels: dict[str, set[str]] = {}
    for segment, line in zip(segments, lines, strict=True):
        labels.setdefault(meeting.lines[line].speaker, set()).add(segment.get("speaker", ""))
    assert set(labels) == {"alex", "maria"}, labels
    assert all(len(found) == 1 and "" not in found for found in labels.values()), seen
    assert labels["alex"] != labels["maria"], seen


def _sentences(text: str) -> list[str]:
    return [s.strip() for s in re.split(r"(?<=[.!?])\s+", text) if s.strip()]


def _status(data: dict[str, Any]) -> str:
    status: str = data.get("statusChange", {}).get("status", "")
    return status


async def _follow(client: GatewayClient, meeting_id: str) -> list[SseEvent]:
    """Reads the meeting's SSE stream from its first event until COMPLETED or FAILED."""
    events: list[SseEvent] = []
    async with asyncio.timeout(WITHIN_S):
        async for event in client.events(meeting_id):
            events.append(event)
            if _status(event.data) in _ENDED:
                break
    return events


async def _get(user: User, path: str) -> dict[str, Any]:
    async with user.http.get(path, headers=user.auth) as response:
        assert response.status == 200, await response.text()
        body: dict[str, Any] = await response.json()
        return body


async def test_an_uploaded_meeting_streams_its_transcript_then_has_speakers_and_a_summary(
    user: User, meeting: Recording
) -> None:
    created = await user.client.create_meeting("quarterly budget")
    mid = created["id"]
    following = asyncio.create_task(_follow(user.client, mid))
    stored = await user.client.upload(mid, meeting.wav_path, "audio/wav")
    assert stored["complete"] is True
    events = await following

    # Over SSE: every event once, in order, no gaps; segments before the meeting completed.
    assert _status(events[-1].data) == "MEETING_STATUS_COMPLETED", events[-1]
    sequences = [int(e.id) for e in events]
    assert sequences == list(range(1, len(events) + 1)), sequences
    assert [e.event for e in events].count("segment") >= len(meeting.lines)
    first_segment = next(i for i, e in enumerate(events) if e.event == "segment")
    transcribing = next(
        i for i, e in enumerate(events) if _status(e.data) == "MEETING_STATUS_TRANSCRIBING"
    )
    assert transcribing < first_segment < len(events) - 1
    streamed = {
        e.data["segment"].get("index", 0): e.data["segment"] for e in events if e.event == "segment"
    }

    # Over REST: the stored transcript is what was said, by whom.
    transcript = await user.client.transcript(mid)
    segments = transcript["segments"]
    assert transcript["status"] == "MEETING_STATUS_COMPLETED"
    assert [s.get("index", 0) for s in segments] == list(range(len(segments)))
    assert all(s.get("final") for s in segments), segments
    assert {s.get("index", 0): s["text"] for s in segments} == {
        i: s["text"] for i, s in streamed.items()
    }
    text = " ".join(s["text"] for s in segments)
    wer = word_error_rate(meeting.text, text)
    assert wer < MAX_WER, (wer, text)
    _assert_speakers_follow_the_voices(meeting, segments)
    assert len(transcript["speakers"]) == 2, transcript["speakers"]

    # The summary quotes the transcript and finds Maria's commitment.
    summary = (await _get(user, f"/v1/meetings/{mid}/summary"))["summary"]
    said = f" {' '.join(normalise_words(text))} "
    sentences = _sentences(summary["text"])
    assert sentences, summary
    for sentence in sentences:
        assert f" {' '.join(normalise_words(sentence))} " in said, (sentence, text)
    assert any(
        item.get("owner") == "Maria" and "friday" in item.get("due", "").lower()
        for item in summary.get("actionItems", [])
    ), summary
    assert any(e.event == "summary" for e in events)


@dataclass(frozen=True)
class Received:
    """A text frame from the live socket and when it arrived (monotonic seconds)."""

    at: float
    body: dict[str, Any]


async def _send_in_real_time(
    ws: aiohttp.ClientWebSocketResponse, audio: bytes, sent_at: list[float]
) -> None:
    """Sends the audio in FRAME_S frames at real time, then the end marker; `sent_at[i]` is
    when frame i had been handed to the socket."""
    frame = round(FRAME_S * SAMPLE_RATE) * 2
    begin = time.monotonic()
    for number, start in enumerate(range(0, len(audio), frame)):
        # Pacing a real-time source, not waiting for a condition.
        await asyncio.sleep(max(0.0, begin + number * FRAME_S - time.monotonic()))
        await ws.send_bytes(audio[start : start + frame])
        sent_at.append(time.monotonic())
    await ws.send_str(json.dumps({"type": "end"}))


async def _receive_all(ws: aiohttp.ClientWebSocketResponse) -> tuple[list[Received], int]:
    """Every text frame until the server closes the socket, and the close code."""
    received: list[Received] = []
    while True:
        message = await ws.receive()
        if message.type == aiohttp.WSMsgType.TEXT:
            received.append(Received(time.monotonic(), json.loads(message.data)))
        elif message.type == aiohttp.WSMsgType.CLOSE:
            return received, int(message.data)
        else:
            return received, int(ws.close_code or 0)


async def test_live_audio_gets_each_final_segment_soon_after_the_utterance_ends(
    user: User, meeting: Recording
) -> None:
    mid = (await user.client.create_meeting("live budget"))["id"]
    audio = pcm16(meeting.audio)
    sent_at: list[float] = []
    timeout = aiohttp.ClientWSTimeout(ws_receive=WITHIN_S, ws_close=WITHIN_S)
    async with asyncio.timeout(WITHIN_S + meeting.duration_s):
        async with user.http.ws_connect(
            f"/v1/meetings/{mid}/live", headers=user.auth, timeout=timeout
        ) as ws:
            async with asyncio.TaskGroup() as group:
                group.create_task(_send_in_real_time(ws, audio, sent_at))
                receiving = group.create_task(_receive_all(ws))
            received, code = receiving.result()
    assert code == 1000, received[-1:]
    bodies = [r.body for r in received]
    assert _status(bodies[0]) == "MEETING_STATUS_LIVE", bodies[0]
    assert _status(bodies[-1]) == "MEETING_STATUS_COMPLETED", bodies[-1]
    sequences = [int(b["sequence"]) for b in bodies]
    assert sequences == list(range(sequences[0], sequences[0] + len(bodies))), sequences

    # Each line's final text was out soon after its last audio was sent, the first one
    # included, and partial text showed while the line was being spoken.
    segments = [r for r in received if r.body["event"] == "segment"]
    # (Recognition's finals: the versions the job stores later carry speakers.)
    finals = [
        r
        for r in segments
        if r.body["segment"].get("final") and not r.body["segment"].get("speaker")
    ]
    assert [r.body["segment"].get("index", 0) for r in finals] == list(range(len(finals)))
    delays: list[float] = []
    for final in finals:
        line = meeting.lines[_line_of(meeting, final.body["segment"])]
        last_frame = min(math.ceil(line.end_s / FRAME_S), len(sent_at)) - 1
        delays.append(final.at - sent_at[last_frame])
        index = final.body["segment"].get("index", 0)
        assert any(
            not r.body["segment"].get("final") and r.body["segment"].get("index", 0) == index
            for r in segments[: segments.index(final)]
        ), (index, [r.body for r in segments])
    assert delays and max(delays) < LIVE_FINAL_WITHIN_S, delays
    first = finals[0].body["segment"]
    assert word_error_rate(meeting.lines[0].text, first["text"]) < MAX_WER, first

    # The stored transcript is what was said, every segment final, with speakers.
    transcript = await user.client.transcript(mid)
    stored = transcript["segments"]
    assert all(s.get("final") for s in stored), stored
    text = " ".join(s["text"] for s in stored)
    wer = word_error_rate(meeting.text, text)
    assert wer < MAX_WER, (wer, text)
    _assert_speakers_follow_the_voices(meeting, stored)


async def test_a_meetings_vocabulary_reaches_the_recognizer(user: User, tmp_path: Path) -> None:
    audio = speak([PRIYA], tmp_path)
    write_wav(tmp_path / "priya.wav", audio)
    body = {"title": "names", "vocabulary": ["Priya"]}
    async with user.http.post("/v1/meetings", json=body, headers=user.auth) as response:
        assert response.status == 201, await response.text()
        mid = (await response.json())["meeting"]["id"]
    following = asyncio.create_task(_follow(user.client, mid))
    await user.client.upload(mid, tmp_path / "priya.wav", "audio/wav")
    assert _status((await following)[-1].data) == "MEETING_STATUS_COMPLETED"
    transcript = await user.client.transcript(mid)
    assert "Priya will send" in " ".join(s["text"] for s in transcript["segments"])
