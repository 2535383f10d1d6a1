"""The unary routes (derived from the contract's google.api.http annotations)."""

from __future__ import annotations

import uuid
from typing import Any

import aiohttp

from meeting_service.server import RunningMeetingService
from tests.support.gateway import bearer, error_of, play_pipeline, reason_of, route


@route("POST", "/v1/meetings", "success")
async def test_create_returns_201_with_the_meeting_in_camel_case(
    http: aiohttp.ClientSession, as_user: dict[str, str], user: str
) -> None:
    body = {"title": "Planning", "language": "en", "expectedSpeakers": 2}
    async with http.post("/v1/meetings", json=body, headers=as_user) as r:
        assert r.status == 201
        meeting = (await r.json())["meeting"]
    assert meeting["title"] == "Planning"
    assert meeting["expectedSpeakers"] == 2
    assert meeting["owner"] == user
    assert meeting["status"] == "MEETING_STATUS_AWAITING_AUDIO"
    # Fields with no presence are always written, so clients need no defaults of their own.
    assert meeting["failureReason"] == ""


async def test_create_accepts_proto_field_names_and_request_id_is_idempotent(
    http: aiohttp.ClientSession, as_user: dict[str, str]
) -> None:
    key = uuid.uuid4().hex
    ids = []
    for _ in range(2):
        async with http.post(
            "/v1/meetings",
            params={"requestId": key},
            json={"title": "retry", "expected_speakers": 3},
            headers=as_user,
        ) as r:
            assert r.status == 201, await r.text()
            meeting = (await r.json())["meeting"]
            assert meeting["expectedSpeakers"] == 3
            ids.append(meeting["id"])
    assert ids[0] == ids[1]


@route("POST", "/v1/meetings", "failure")
async def test_create_rejects_unknown_fields_wrong_types_and_bad_json_naming_the_field(
    http: aiohttp.ClientSession, as_user: dict[str, str]
) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"json": {"titel": "typo"}}, "titel"),
        ({"json": {"title": 5}}, "title"),
        ({"json": {"expectedSpeakers": "two"}}, "expectedSpeakers"),
        ({"json": ["not", "an", "object"]}, "body"),
        ({"data": b"{not json", "headers": {"Content-Type": "application/json"}}, "body"),
    ]
    for kwargs, field in cases:
        headers = {**as_user, **kwargs.pop("headers", {})}
        async with http.post("/v1/meetings", headers=headers, **kwargs) as r:
            assert r.status == 400, (kwargs, await r.text())
            error = await error_of(r)
            assert error["status"] == "INVALID_ARGUMENT"
            assert reason_of(error) == "INVALID_FIELD"
            assert error["details"][0]["metadata"]["field"] == field, error
            assert field in error["message"]
    async with http.post("/v1/meetings", params={"bogus": "1"}, json={}, headers=as_user) as r:
        assert r.status == 400
        assert (await error_of(r))["details"][0]["metadata"]["field"] == "bogus"


@route("GET", "/v1/meetings/{meeting_id}", "success")
async def test_get_returns_the_meeting(
    http: aiohttp.ClientSession, as_user: dict[str, str], meeting_id: str
) -> None:
    async with http.get(f"/v1/meetings/{meeting_id}", headers=as_user) as r:
        assert r.status == 200
        assert (await r.json())["meeting"]["id"] == meeting_id


@route("GET", "/v1/meetings/{meeting_id}", "failure")
async def test_get_of_unknown_or_malformed_id(
    http: aiohttp.ClientSession, as_user: dict[str, str]
) -> None:
    async with http.get(f"/v1/meetings/{uuid.uuid4()}", headers=as_user) as r:
        assert r.status == 404
        error = await error_of(r)
        assert (error["status"], reason_of(error)) == ("NOT_FOUND", "MEETING_NOT_FOUND")
    async with http.get("/v1/meetings/not-a-uuid", headers=as_user) as r:
        assert r.status == 400
        assert reason_of(await error_of(r)) == "INVALID_FIELD"


@route("GET", "/v1/meetings", "success")
async def test_list_pages_through_the_callers_meetings_newest_first(
    http: aiohttp.ClientSession, as_user: dict[str, str]
) -> None:
    created = []
    for n in range(3):
        async with http.post("/v1/meetings", json={"title": f"m{n}"}, headers=as_user) as r:
            created.append((await r.json())["meeting"]["id"])
    seen: list[str] = []
    token = ""
    while True:
        params = {"pageSize": "2", **({"pageToken": token} if token else {})}
        async with http.get("/v1/meetings", params=params, headers=as_user) as r:
            assert r.status == 200
            page = await r.json()
        seen += [m["id"] for m in page["meetings"]]
        token = page["nextPageToken"]
        if not token:
            break
    assert seen == list(reversed(created))
    async with http.get("/v1/meetings", params={"page_size": "1"}, headers=as_user) as r:
        assert len((await r.json())["meetings"]) == 1


@route("GET", "/v1/meetings", "failure")
async def test_list_rejects_bad_parameters(
    http: aiohttp.ClientSession, as_user: dict[str, str]
) -> None:
    for params, field in [
        ({"pageSize": "many"}, "pageSize"),
        ({"pageToken": "forged"}, "page_token"),
        ({"sort": "title"}, "sort"),
    ]:
        async with http.get("/v1/meetings", params=params, headers=as_user) as r:
            assert r.status == 400, params
            error = await error_of(r)
            assert error["details"][0]["metadata"]["field"] == field, error


@route("PATCH", "/v1/meetings/{meeting_id}", "success")
async def test_update_changes_the_fields_in_the_body_or_in_the_mask(
    http: aiohttp.ClientSession, as_user: dict[str, str], meeting_id: str
) -> None:
    url = f"/v1/meetings/{meeting_id}"
    # No mask: the fields present in the body change.
    async with http.patch(url, json={"title": "Renamed"}, headers=as_user) as r:
        assert r.status == 200, await r.text()
        assert (await r.json())["meeting"]["title"] == "Renamed"
    # An explicit mask (either naming) changes only what it names.
    body = {"title": "ignored", "expectedSpeakers": 4}
    for mask in ("expectedSpeakers", "expected_speakers"):
        async with http.patch(url, params={"updateMask": mask}, json=body, headers=as_user) as r:
            assert r.status == 200, await r.text()
            meeting = (await r.json())["meeting"]
            assert (meeting["title"], meeting["expectedSpeakers"]) == ("Renamed", 4)


@route("PATCH", "/v1/meetings/{meeting_id}", "failure")
async def test_update_rejects_bad_masks_and_other_users(
    http: aiohttp.ClientSession, as_user: dict[str, str], meeting_id: str
) -> None:
    url = f"/v1/meetings/{meeting_id}"
    async with http.patch(url, params={"updateMask": "owner"}, json={}, headers=as_user) as r:
        assert r.status == 400
        assert reason_of(await error_of(r)) == "INVALID_UPDATE_MASK"
    async with http.patch(url, json={"title": "mine"}, headers=bearer("mallory")) as r:
        assert r.status == 404
    async with http.get(url, headers=as_user) as r:
        assert (await r.json())["meeting"]["title"] == "standup"


@route("DELETE", "/v1/meetings/{meeting_id}", "success")
async def test_delete_answers_204_and_the_meeting_is_gone(
    http: aiohttp.ClientSession, as_user: dict[str, str], meeting_id: str
) -> None:
    async with http.delete(f"/v1/meetings/{meeting_id}", headers=as_user) as r:
        assert r.status == 204
        assert await r.read() == b""
    async with http.get(f"/v1/meetings/{meeting_id}", headers=as_user) as r:
        assert r.status == 404


@route("DELETE", "/v1/meetings/{meeting_id}", "failure")
async def test_delete_of_another_users_meeting_is_404_and_deletes_nothing(
    http: aiohttp.ClientSession, as_user: dict[str, str], meeting_id: str
) -> None:
    async with http.delete(f"/v1/meetings/{meeting_id}", headers=bearer("mallory")) as r:
        assert r.status == 404
    async with http.get(f"/v1/meetings/{meeting_id}", headers=as_user) as r:
        assert r.status == 200


@route("GET", "/v1/meetings/{meeting_id}/transcript", "failure")
@route("GET", "/v1/meetings/{meeting_id}/summary", "failure")
async def test_transcript_and_summary_before_processing_say_not_ready(
    http: aiohttp.ClientSession, as_user: dict[str, str], meeting_id: str
) -> None:
    for part in ("transcript", "summary"):
        async with http.get(f"/v1/meetings/{meeting_id}/{part}", headers=as_user) as r:
            assert r.status == 400, part
            error = await error_of(r)
            assert (error["status"], reason_of(error)) == ("FAILED_PRECONDITION", "NOT_READY")
        async with http.get(f"/v1/meetings/{meeting_id}/{part}", headers=bearer("eve")) as r:
            assert r.status == 404


async def test_another_users_meeting_is_404_on_every_route(
    http: aiohttp.ClientSession, meeting_id: str
) -> None:
    other = bearer("eve")
    base = f"/v1/meetings/{meeting_id}"
    for method, url in [
        ("GET", base),
        ("PATCH", base),
        ("DELETE", base),
        ("GET", f"{base}/transcript"),
        ("GET", f"{base}/summary"),
        ("GET", f"{base}/events"),
        ("HEAD", f"{base}/audio"),
        ("GET", f"{base}/live"),
    ]:
        kwargs = {"json": {"title": "x"}} if method == "PATCH" else {}
        async with http.request(method, url, headers=other, **kwargs) as r:  # type: ignore[arg-type]
            assert r.status == 404, (method, url)
    async with http.put(
        f"{base}/audio", data=b"RIFF", headers={**other, "Content-Type": "audio/wav"}
    ) as r:
        assert r.status == 404


async def test_unknown_paths_and_methods_get_the_json_error_shape(
    http: aiohttp.ClientSession, as_user: dict[str, str]
) -> None:
    async with http.get("/v2/nothing", headers=as_user) as r:
        assert r.status == 404
        await error_of(r)
    async with http.put("/v1/meetings", headers=as_user) as r:
        assert r.status == 405
        assert "POST" in r.headers["Allow"]
        await error_of(r)


@route("GET", "/v1/meetings/{meeting_id}/transcript", "success")
@route("GET", "/v1/meetings/{meeting_id}/summary", "success")
async def test_transcript_and_summary_of_a_processed_meeting(
    http: aiohttp.ClientSession,
    as_user: dict[str, str],
    meeting_id: str,
    meeting_service: RunningMeetingService,
) -> None:
    await play_pipeline(meeting_service, meeting_id, ["Hello all.", "Let us begin."])
    async with http.get(f"/v1/meetings/{meeting_id}/transcript", headers=as_user) as r:
        assert r.status == 200
        transcript = await r.json()
    assert [s["text"] for s in transcript["segments"]] == ["Hello all.", "Let us begin."]
    assert transcript["speakers"] == ["SPEAKER_1", "SPEAKER_2"]
    assert transcript["status"] == "MEETING_STATUS_COMPLETED"
    assert transcript["segments"][1]["startOffset"] == "2s"
    async with http.get(f"/v1/meetings/{meeting_id}/summary", headers=as_user) as r:
        assert r.status == 200
        assert (await r.json())["summary"]["text"] == "Hello all. Let us begin."
