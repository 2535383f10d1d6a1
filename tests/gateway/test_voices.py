"""Voice profiles over REST: made from a meeting's speaker, listed, improved, renamed,
deleted with every vector; private to their owner; vectors never in an answer."""

from __future__ import annotations

import uuid

import aiohttp

from meeting_service.server import RunningMeetingService
from meeting_service.voices.repository import Voice
from tests.support.gateway import bearer, error_of, reason_of, route

ENCODER = "resemblyzer"
PROFILE_FIELDS = {"id", "name", "sampleCount", "createTime", "updateTime"}


async def _diarized(meeting_service: RunningMeetingService, meeting_id: str) -> None:
    """Stores the voices diarization found for SPEAKER_1 and SPEAKER_2 of a meeting."""
    services = meeting_service.services
    voices = [
        Voice("SPEAKER_1", ENCODER, [1.0, 0.0, 0.0], 12.0),
        Voice("SPEAKER_2", ENCODER, [0.0, 1.0, 0.0], 9.5),
    ]
    async with services.pool.acquire() as conn, conn.transaction():
        await services.processing.voices.put_meeting_voices(conn, uuid.UUID(meeting_id), voices)


async def _create(
    http: aiohttp.ClientSession, headers: dict[str, str], meeting_id: str, speaker: str, name: str
) -> aiohttp.ClientResponse:
    body = {"name": name, "sample": {"meetingId": meeting_id, "speaker": speaker}}
    return await http.post("/v1/voiceProfiles", json=body, headers=headers)


async def _vectors(meeting_service: RunningMeetingService, user: str) -> int:
    services = meeting_service.services
    return len(await services.processing.voices.samples(services.pool, user, ENCODER))


@route("POST", "/v1/voiceProfiles", "success")
@route("GET", "/v1/voiceProfiles", "success")
@route("POST", "/v1/voiceProfiles/{voice_profile_id}/samples", "success")
@route("PATCH", "/v1/voiceProfiles/{voice_profile_id}", "success")
@route("DELETE", "/v1/voiceProfiles/{voice_profile_id}", "success")
async def test_a_profile_is_made_listed_improved_renamed_and_deleted_with_its_vectors(
    http: aiohttp.ClientSession,
    user: str,
    as_user: dict[str, str],
    meeting_id: str,
    meeting_service: RunningMeetingService,
) -> None:
    await _diarized(meeting_service, meeting_id)
    async with await _create(http, as_user, meeting_id, "SPEAKER_2", " Maria ") as r:
        assert r.status == 201, await r.text()
        profile = (await r.json())["voiceProfile"]
    assert set(profile) == PROFILE_FIELDS  # no vector in any answer
    assert (profile["name"], profile["sampleCount"]) == ("Maria", 1)
    pid = profile["id"]

    async with http.post("/v1/meetings", json={"title": "later"}, headers=as_user) as r:
        later = (await r.json())["meeting"]["id"]
    await _diarized(meeting_service, later)
    sample = {"sample": {"meetingId": later, "speaker": "SPEAKER_1"}}
    async with http.post(f"/v1/voiceProfiles/{pid}/samples", json=sample, headers=as_user) as r:
        assert r.status == 201, await r.text()
        assert (await r.json())["voiceProfile"]["sampleCount"] == 2
    async with await _create(http, as_user, meeting_id, "SPEAKER_1", "Alex") as r:
        assert r.status == 201
    async with http.get("/v1/voiceProfiles", headers=as_user) as r:
        assert r.status == 200
        listed = (await r.json())["voiceProfiles"]
    assert [(p["name"], p["sampleCount"]) for p in listed] == [("Alex", 1), ("Maria", 2)]
    assert all(set(p) == PROFILE_FIELDS for p in listed)

    renamed = {"name": "Maria K"}
    async with http.patch(f"/v1/voiceProfiles/{pid}", json=renamed, headers=as_user) as r:
        assert r.status == 200, await r.text()
        assert (await r.json())["voiceProfile"]["name"] == "Maria K"

    assert await _vectors(meeting_service, user) == 3
    async with http.delete(f"/v1/voiceProfiles/{pid}", headers=as_user) as r:
        assert r.status == 204
    assert await _vectors(meeting_service, user) == 1
    async with http.get("/v1/voiceProfiles", headers=as_user) as r:
        assert [p["name"] for p in (await r.json())["voiceProfiles"]] == ["Alex"]


@route("POST", "/v1/voiceProfiles", "failure")
async def test_a_profile_needs_a_name_and_a_speaker_with_a_voice_in_the_callers_meeting(
    http: aiohttp.ClientSession,
    as_user: dict[str, str],
    meeting_id: str,
    meeting_service: RunningMeetingService,
) -> None:
    async with await _create(http, as_user, meeting_id, "SPEAKER_1", "Alex") as r:
        assert r.status == 404
        error = await error_of(r)
    assert reason_of(error) == "SPEAKER_NOT_FOUND"
    assert "not diarized yet" in error["message"]
    await _diarized(meeting_service, meeting_id)
    async with await _create(http, as_user, meeting_id, "SPEAKER_7", "Alex") as r:
        assert "SPEAKER_1, SPEAKER_2" in (await error_of(r))["message"]
    async with await _create(http, as_user, meeting_id, "SPEAKER_1", "  ") as r:
        assert r.status == 400
    async with await _create(http, bearer("intruder"), meeting_id, "SPEAKER_1", "Alex") as r:
        assert r.status == 404
        assert reason_of(await error_of(r)) == "MEETING_NOT_FOUND"


@route("GET", "/v1/voiceProfiles", "failure")
@route("POST", "/v1/voiceProfiles/{voice_profile_id}/samples", "failure")
@route("PATCH", "/v1/voiceProfiles/{voice_profile_id}", "failure")
@route("DELETE", "/v1/voiceProfiles/{voice_profile_id}", "failure")
async def test_another_users_profiles_are_not_found_and_not_listed(
    http: aiohttp.ClientSession,
    as_user: dict[str, str],
    meeting_id: str,
    meeting_service: RunningMeetingService,
) -> None:
    await _diarized(meeting_service, meeting_id)
    async with await _create(http, as_user, meeting_id, "SPEAKER_1", "Alex") as r:
        pid = (await r.json())["voiceProfile"]["id"]
    intruder = bearer("intruder")
    async with http.get("/v1/voiceProfiles", headers=intruder) as r:
        assert (await r.json()).get("voiceProfiles", []) == []
    async with http.get("/v1/voiceProfiles") as r:
        assert r.status == 401
    sample = {"sample": {"meetingId": meeting_id, "speaker": "SPEAKER_2"}}
    async with http.post(f"/v1/voiceProfiles/{pid}/samples", json=sample, headers=intruder) as r:
        assert r.status == 404
        assert reason_of(await error_of(r)) == "VOICE_PROFILE_NOT_FOUND"
    async with http.patch(f"/v1/voiceProfiles/{pid}", json={"name": "Eve"}, headers=intruder) as r:
        assert r.status == 404
    async with http.patch(f"/v1/voiceProfiles/{pid}", json={"name": ""}, headers=as_user) as r:
        assert r.status == 400
    async with http.delete(f"/v1/voiceProfiles/{pid}", headers=intruder) as r:
        assert r.status == 404
    async with http.delete("/v1/voiceProfiles/not-a-uuid", headers=as_user) as r:
        assert r.status == 400
    async with http.get("/v1/voiceProfiles", headers=as_user) as r:
        assert [p["name"] for p in (await r.json())["voiceProfiles"]] == ["Alex"]
