"""Voice profiles from recordings of a voice alone, over REST, with the mock engine's voices
(a tone's pitch): a profile made from a recording names that voice in a later meeting;
a recording that is not audio, too short, silent, too long or too large is refused and
changes nothing; another user's profile can be neither improved nor matched."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
import pytest_asyncio

from meeting_mesh.cli import main
from meeting_service.server import RunningMeetingService
from tests.gateway.test_live import TIMEOUT, session_end
from tests.support.gateway import RunningGateway, bearer, error_of, reason_of, route, wait_until
from tests.support.gpu import as_wav, make_pki, pcm16, silence, tone
from tests.support.meeting import make_token
from tests.support.mesh import run_mesh

LOW, HIGH = 180.0, 420.0
MAX_SAMPLE_S = 20.0
PROFILE_FIELDS = {"id", "name", "sampleCount", "createTime", "updateTime"}


@pytest_asyncio.fixture(scope="module")
async def meeting_service(
    database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[RunningMeetingService]:
    """meeting_service with its pipeline, gpu_proxy and a mock-engine gpu_node."""
    async with run_mesh(
        database_url,
        make_pki(tmp_path_factory.mktemp("pki")),
        tmp_path_factory.mktemp("mesh"),
        voice_sample_max_s=MAX_SAMPLE_S,
    ) as mesh:
        yield mesh.service


def _voice(frequency: float, seconds: float = 4.0) -> bytes:
    return as_wav(np.concatenate([silence(0.3), tone(seconds, frequency), silence(0.3)]))


async def _enroll(
    http: aiohttp.ClientSession, headers: dict[str, str], name: str, body: bytes
) -> aiohttp.ClientResponse:
    return await http.post(
        "/v1/voiceProfiles:fromAudio",
        params={"name": name},
        data=body,
        headers={**headers, "Content-Type": "audio/wav"},
    )


async def _profiles(http: aiohttp.ClientSession, headers: dict[str, str]) -> list[Any]:
    async with http.get("/v1/voiceProfiles", headers=headers) as r:
        assert r.status == 200
        profiles: list[Any] = (await r.json()).get("voiceProfiles", [])
        return profiles


def _meeting() -> np.ndarray:
    return np.concatenate(
        [silence(0.4), tone(1.5, LOW), silence(0.7), tone(1.5, HIGH), silence(0.4)]
    )


async def _speakers(http: aiohttp.ClientSession, headers: dict[str, str]) -> list[str]:
    """Processes a meeting of a low then a high voice; returns who each segment shows."""
    meeting = _meeting()
    async with http.post("/v1/meetings", json={"title": "later"}, headers=headers) as r:
        meeting_id = (await r.json())["meeting"]["id"]
    upload = {**headers, "Content-Type": "audio/wav"}
    async with http.put(
        f"/v1/meetings/{meeting_id}/audio", data=as_wav(meeting), headers=upload
    ) as r:
        assert r.status == 200, await r.text()

    async def completed() -> bool:
        async with http.get(f"/v1/meetings/{meeting_id}", headers=headers) as r:
            status: str = (await r.json())["meeting"]["status"]
            assert status != "MEETING_STATUS_FAILED"
            return status == "MEETING_STATUS_COMPLETED"

    await wait_until(completed)
    async with http.get(f"/v1/meetings/{meeting_id}/transcript", headers=headers) as r:
        segments = (await r.json())["segments"]
    return [s.get("speakerName") or s["speaker"] for s in segments]


@route("POST", "/v1/voiceProfiles:fromAudio", "success")
@route("POST", "/v1/voiceProfiles/{voice_profile_id}/audio", "success")
async def test_a_profile_from_a_recording_names_that_voice_in_a_later_meeting(
    http: aiohttp.ClientSession, as_user: dict[str, str]
) -> None:
    async with await _enroll(http, as_user, " Lou ", _voice(LOW)) as r:
        assert r.status == 201, await r.text()
        profile = (await r.json())["voiceProfile"]
    assert set(profile) == PROFILE_FIELDS  # no vector in any answer
    assert (profile["name"], profile["sampleCount"]) == ("Lou", 1)

    async with http.post(
        f"/v1/voiceProfiles/{profile['id']}/audio",
        data=_voice(LOW, 3.5),
        headers={**as_user, "Content-Type": "application/octet-stream"},
    ) as r:
        assert r.status == 201, await r.text()
        assert (await r.json())["voiceProfile"]["sampleCount"] == 2

    shown = await _speakers(http, as_user)
    assert shown[0] == "Lou" and shown[1].startswith("SPEAKER_"), shown
    # Another user's meeting of the same voices: the profile is not theirs.
    assert all(name.startswith("SPEAKER_") for name in await _speakers(http, bearer("other")))


@route("POST", "/v1/voiceProfiles:fromAudio", "failure")
async def test_a_recording_that_cannot_make_a_voice_is_refused_and_changes_nothing(
    http: aiohttp.ClientSession, as_user: dict[str, str]
) -> None:
    refused = {
        b"this is a text file, not a recording\n" * 40: ("NOT_AUDIO", "not audio"),
        b"": ("INVALID_FIELD", "audio is required"),
        _voice(LOW, 1.0): ("INVALID_FIELD", "only 1.0 s of speech"),
        as_wav(silence(5.0)): ("INVALID_FIELD", "no speech"),
        _voice(LOW, MAX_SAMPLE_S + 1): ("INVALID_FIELD", f"longer than {MAX_SAMPLE_S:g} s"),
    }
    for body, (reason, words) in refused.items():
        async with await _enroll(http, as_user, "Lou", body) as r:
            assert r.status == 400, await r.text()
            error = await error_of(r)
        assert reason_of(error) == reason and words in error["message"], error
    async with await _enroll(http, as_user, "Lou", bytes(4 * 1024 * 1024 + 1)) as r:
        assert r.status == 413
    async with await _enroll(http, as_user, "  ", _voice(LOW)) as r:
        assert r.status == 400
        assert "name" in (await error_of(r))["message"]
    assert await _profiles(http, as_user) == []


@route("POST", "/v1/voiceProfiles/{voice_profile_id}/audio", "failure")
async def test_another_users_profile_takes_no_recording(
    http: aiohttp.ClientSession, as_user: dict[str, str]
) -> None:
    async with await _enroll(http, as_user, "Lou", _voice(LOW)) as r:
        pid = (await r.json())["voiceProfile"]["id"]
    path = f"/v1/voiceProfiles/{pid}/audio"
    async with http.post(path, data=_voice(HIGH), headers=bearer("intruder")) as r:
        assert r.status == 404
        assert reason_of(await error_of(r)) == "VOICE_PROFILE_NOT_FOUND"
    async with http.post(path, data=b"not audio at all", headers=as_user) as r:
        assert r.status == 400
        assert reason_of(await error_of(r)) == "NOT_AUDIO"
    async with http.post("/v1/voiceProfiles/not-a-uuid/audio", data=_voice(LOW)) as r:
        assert r.status == 401
    assert [p["sampleCount"] for p in await _profiles(http, as_user)] == [1]


async def test_a_live_sessions_speakers_take_profile_names_when_its_job_ends(
    http: aiohttp.ClientSession, as_user: dict[str, str], meeting_id: str
) -> None:
    # Live recognition labels no speakers; the job that diarizes the session at its end
    # names them, and the session's socket (still open for that job's events) sees it.
    async with await _enroll(http, as_user, "Lou", _voice(LOW)) as r:
        assert r.status == 201
    data = pcm16(_meeting())
    async with http.ws_connect(
        f"/v1/meetings/{meeting_id}/live",
        headers=as_user,
        params={"encoding": "linear16", "sample_rate": "16000"},
        timeout=TIMEOUT,
    ) as ws:
        for start in range(0, len(data), 3200):
            await ws.send_bytes(data[start : start + 3200])
        await ws.send_str(json.dumps({"type": "end"}))
        texts, code, _ = await session_end(ws)
    assert code == 1000, texts[-1:]
    segments = [t["segment"] for t in texts if t["event"] == "segment"]
    live = [s for s in segments if not s.get("speaker")]
    assert live and not any(s.get("speakerName") for s in live), segments
    last = {s.get("index", 0): s for s in segments}  # each segment's last version
    shown = [last[i].get("speakerName") or last[i]["speaker"] for i in sorted(last)]
    assert shown[0] == "Lou" and shown[1].startswith("SPEAKER_"), shown


async def test_profiles_are_kept_with_the_cli(
    gateway: RunningGateway, user: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    token = make_token(user)

    async def cli(*args: str) -> tuple[int, Any, str]:
        # In a thread: the command runs its own event loop, as from a terminal.
        argv = ["voices", "--url", gateway.url, "--token", token, "--json", *args]
        code = await asyncio.to_thread(main, argv)
        captured = capsys.readouterr()
        return code, json.loads(captured.out) if captured.out else None, captured.err

    recording = tmp_path / "lou.wav"
    recording.write_bytes(_voice(LOW))
    code, answer, err = await cli("enroll", "Lou", str(recording))
    assert code == 0, err
    pid = answer["voiceProfile"]["id"]
    code, answer, err = await cli("add", pid, str(recording))
    assert (code, answer["voiceProfile"]["sampleCount"]) == (0, 2), err
    code, answer, err = await cli("rename", pid, "Louise")
    assert (code, answer["voiceProfile"]["name"]) == (0, "Louise"), err
    code, answer, _ = await cli("list")
    assert [(p["name"], p["sampleCount"]) for p in answer["voiceProfiles"]] == [("Louise", 2)]

    text = tmp_path / "notes.txt"
    text.write_text("not a recording\n" * 50)
    code, _, err = await cli("add", pid, str(text))
    assert code == 1 and "not audio" in err, err
    code, _, err = await cli("enroll", "Lou", str(tmp_path / "missing.wav"))
    assert code == 2 and "cannot read" in err, err
    code, _, err = await cli("delete", pid)
    assert code == 0, err
    code, answer, _ = await cli("list")
    assert answer == {"voiceProfiles": []}
