"""Live audio from a browser over a real mesh (mock engine): the formats browsers capture,
a dropped socket resumed within the grace, and the grace's end finalising a meeting that
nobody resumed.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import aiohttp
import numpy as np
import pytest
import pytest_asyncio

from meeting_service.server import RunningMeetingService
from tests.gateway.test_live import TIMEOUT, session_end
from tests.support.gateway import route, wait_until
from tests.support.gpu import SAMPLE_RATE, make_pki
from tests.support.live_audio import float32le, linear16, opus, timeslices
from tests.support.mesh import dialogue, run_mesh

GRACE_S = 3.0  # long beside a reconnect on loopback; the drop test waits for it once
LEASE_S = 1.0
WITHIN = 30.0
FRAME_S = 0.1
TURN_S = 1.6  # each turn of `dialogue`: a 1.0-1.2 s tone and 0.6 s of silence


@pytest_asyncio.fixture(scope="module")
async def meeting_service(
    database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[RunningMeetingService]:
    """meeting_service with its pipeline, gpu_proxy and a mock-engine gpu_node."""
    async with run_mesh(
        database_url,
        make_pki(tmp_path_factory.mktemp("pki")),
        tmp_path_factory.mktemp("mesh"),
        live_resume_grace_s=GRACE_S,
        live_lease_s=LEASE_S,
    ) as mesh:
        yield mesh.service


def _frames(data: bytes, bytes_per_second: int) -> list[bytes]:
    size = int(bytes_per_second * FRAME_S)
    return [data[i : i + size] for i in range(0, len(data), size)]


async def _stream(
    http: aiohttp.ClientSession,
    meeting_id: str,
    headers: dict[str, str],
    params: dict[str, str],
    frames: Sequence[bytes],
    *,
    end: bool = True,
) -> tuple[list[dict[str, Any]], int]:
    """Sends the frames; then the end marker (the server's frames and close code come
    back) or a close without it (a drop: nothing comes back)."""
    async with http.ws_connect(
        f"/v1/meetings/{meeting_id}/live", headers=headers, params=params, timeout=TIMEOUT
    ) as ws:
        for frame in frames:
            await ws.send_bytes(frame)
        if not end:
            await ws.close()
            return [], int(ws.close_code or 0)
        await ws.send_str(json.dumps({"type": "end"}))
        async with asyncio.timeout(WITHIN):
            texts, code, _ = await session_end(ws)
        return texts, code


async def _get(http: aiohttp.ClientSession, path: str, headers: dict[str, str]) -> Any:
    async with http.get(path, headers=headers) as response:
        assert response.status == 200, await response.text()
        return await response.json()


async def _status(http: aiohttp.ClientSession, meeting_id: str, headers: dict[str, str]) -> str:
    body = await _get(http, f"/v1/meetings/{meeting_id}", headers)
    status: str = body["meeting"]["status"]
    return status


async def _assert_one_recording_and_transcript(
    http: aiohttp.ClientSession,
    meeting_id: str,
    headers: dict[str, str],
    audio: np.ndarray,
    segments: int,
) -> None:
    """The meeting holds one 16 kHz recording as long as the audio, and a transcript whose
    indexes run 0..n-1 in time order, none missing, none twice."""
    meeting = (await _get(http, f"/v1/meetings/{meeting_id}", headers))["meeting"]
    assert meeting["status"] == "MEETING_STATUS_COMPLETED", meeting
    assert meeting["contentType"] == "audio/wav"
    seconds = float(meeting["duration"].removesuffix("s"))
    assert abs(seconds - len(audio) / SAMPLE_RATE) < 0.1, seconds
    assert int(meeting["audioSizeBytes"]) == 44 + round(seconds * SAMPLE_RATE) * 2
    transcript = await _get(http, f"/v1/meetings/{meeting_id}/transcript", headers)
    indexes = [s.get("index", 0) for s in transcript["segments"]]
    assert indexes == list(range(segments)), transcript["segments"]
    starts = [float(s.get("startOffset", "0s").removesuffix("s")) for s in transcript["segments"]]
    assert starts == sorted(starts)


def _statuses(texts: Sequence[dict[str, Any]]) -> list[str]:
    return [t["statusChange"]["status"] for t in texts if t["event"] == "status"]


@pytest.mark.parametrize(
    ("encoding", "rate", "channels"),
    [("linear16", 48_000, 2), ("float32le", 44_100, 1), ("linear16", 8_000, 1)],
)
async def test_raw_pcm_at_a_capture_rate_is_resampled_and_transcribed(
    http: aiohttp.ClientSession,
    as_user: dict[str, str],
    meeting_id: str,
    encoding: str,
    rate: int,
    channels: int,
) -> None:
    audio = dialogue(2)
    encode = float32le if encoding == "float32le" else linear16
    data = encode(audio, rate, channels)
    params = {"encoding": encoding, "sample_rate": str(rate), "channels": str(channels)}
    bytes_per_second = rate * channels * (4 if encoding == "float32le" else 2)
    texts, code = await _stream(http, meeting_id, as_user, params, _frames(data, bytes_per_second))
    assert code == 1000, texts[-1:]
    # The end finalised the meeting at once, not after the grace.
    statuses = _statuses(texts)
    assert statuses[:2] == ["MEETING_STATUS_LIVE", "MEETING_STATUS_DIARIZING"], statuses
    assert statuses[-1] == "MEETING_STATUS_COMPLETED"
    await _assert_one_recording_and_transcript(http, meeting_id, as_user, audio, 2)


@pytest.mark.parametrize("container", ["webm", "ogg"])
async def test_opus_from_media_recorder_is_decoded_as_it_streams(
    http: aiohttp.ClientSession, as_user: dict[str, str], meeting_id: str, container: str
) -> None:
    audio = dialogue(2)
    duration_s = len(audio) / SAMPLE_RATE
    pieces = timeslices(opus(audio, container), 0.25, duration_s)
    texts, code = await _stream(
        http, meeting_id, as_user, {"encoding": f"{container}_opus"}, pieces
    )
    assert code == 1000, texts[-1:]
    assert _statuses(texts)[-1] == "MEETING_STATUS_COMPLETED"
    await _assert_one_recording_and_transcript(http, meeting_id, as_user, audio, 2)


@route("GET", "/v1/meetings/{meeting_id}/live", "success")
async def test_a_dropped_socket_resumed_within_the_grace_continues_the_meeting(
    http: aiohttp.ClientSession, as_user: dict[str, str], meeting_id: str
) -> None:
    audio = dialogue(4)
    data = linear16(audio, 48_000, 2)
    cut = round(2 * TURN_S * 48_000 + 0.4 * 48_000) * 4  # after the second turn's silence
    params = {"sample_rate": "48000", "channels": "2"}
    _, code = await _stream(
        http, meeting_id, as_user, params, _frames(data[:cut], 48_000 * 4), end=False
    )
    assert code == 1000
    assert await _status(http, meeting_id, as_user) == "MEETING_STATUS_LIVE"

    texts, code = await _stream(
        http,
        meeting_id,
        as_user,
        {**params, "resume": "true"},
        _frames(data[cut:], 48_000 * 4),
    )
    assert code == 1000, texts[-1:]
    # The resumed socket gets its own segments (indexes after the stored ones), then the end.
    resumed = {t["segment"].get("index", 0) for t in texts if t["event"] == "segment"}
    assert {2, 3} <= resumed
    statuses = _statuses(texts)
    assert (statuses[0], statuses[-1]) == ("MEETING_STATUS_DIARIZING", "MEETING_STATUS_COMPLETED")
    await _assert_one_recording_and_transcript(http, meeting_id, as_user, audio, 4)


async def test_a_dropped_socket_not_resumed_is_finalised_after_the_grace(
    http: aiohttp.ClientSession, as_user: dict[str, str], meeting_id: str
) -> None:
    audio = dialogue(2)
    frames = _frames(linear16(audio, 16_000, 1), 16_000 * 2)
    _, code = await _stream(http, meeting_id, as_user, {}, frames, end=False)
    dropped_at = time.monotonic()
    assert code == 1000

    async def completed() -> bool:
        return await _status(http, meeting_id, as_user) == "MEETING_STATUS_COMPLETED"

    await wait_until(completed, within=GRACE_S + WITHIN)
    assert time.monotonic() - dropped_at >= GRACE_S
    await _assert_one_recording_and_transcript(http, meeting_id, as_user, audio, 2)


async def test_a_second_socket_cannot_take_over_a_stream_that_is_still_sending(
    http: aiohttp.ClientSession, as_user: dict[str, str], meeting_id: str
) -> None:
    url = f"/v1/meetings/{meeting_id}/live"
    async with http.ws_connect(url, headers=as_user, timeout=TIMEOUT) as first:
        started = json.loads((await first.receive()).data)
        assert started["statusChange"]["status"] == "MEETING_STATUS_LIVE"
        texts, code = await _stream(http, meeting_id, as_user, {"resume": "true"}, [])
        assert code == 4400, texts
        assert texts[-1]["error"]["details"][0]["reason"] == "WRONG_STATE"
        assert "another live stream" in texts[-1]["error"]["message"]
        await first.send_str(json.dumps({"type": "end"}))
        _, code, _ = await session_end(first)
    assert code == 1000


async def test_audio_that_is_not_the_named_container_closes_with_4400_and_can_be_resumed(
    http: aiohttp.ClientSession, as_user: dict[str, str], meeting_id: str
) -> None:
    texts, code = await _stream(
        http, meeting_id, as_user, {"encoding": "webm_opus"}, [b"not a webm file" * 64]
    )
    assert code == 4400, texts
    error = texts[-1]["error"]
    assert error["details"][0]["reason"] == "UNSUPPORTED_AUDIO"
    assert "WEBM_OPUS" in error["details"][0]["metadata"]["supported"]
    assert await _status(http, meeting_id, as_user) == "MEETING_STATUS_LIVE"

    audio = dialogue(1)
    texts, code = await _stream(
        http, meeting_id, as_user, {"resume": "true"}, [linear16(audio, 16_000, 1)]
    )
    assert code == 1000, texts[-1:]
    assert _statuses(texts)[-1] == "MEETING_STATUS_COMPLETED"
