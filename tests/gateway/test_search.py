"""GET /v1/search: SearchTranscripts through the gateway's contract-derived route."""

from __future__ import annotations

import aiohttp

from meeting_service.server import RunningMeetingService
from tests.support.gateway import bearer, error_of, play_pipeline, reason_of, route


@route("GET", "/v1/search", "success")
async def test_search_finds_the_callers_segments_with_snippets_and_pages(
    http: aiohttp.ClientSession,
    as_user: dict[str, str],
    meeting_id: str,
    meeting_service: RunningMeetingService,
) -> None:
    texts = ["welcome to the launch review", "the launch slips a week", "any other business"]
    await play_pipeline(meeting_service, meeting_id, texts)

    params = {"q": "launch", "pageSize": "1", "statuses": "MEETING_STATUS_COMPLETED"}
    async with http.get("/v1/search", params=params, headers=as_user) as r:
        assert r.status == 200, await r.text()
        first = await r.json()
    (hit,) = first["hits"]
    assert hit["meetingId"] == meeting_id
    assert hit["meetingTitle"] == "standup"
    assert hit["meetingStatus"] == "MEETING_STATUS_COMPLETED"
    assert hit["speaker"] in ("SPEAKER_1", "SPEAKER_2")
    span = hit["highlights"][0]
    assert hit["snippet"][span["start"] : span["end"]] == "launch"

    params = {"query": "launch", "pageSize": "1", "pageToken": first["nextPageToken"]}
    params["statuses"] = "MEETING_STATUS_COMPLETED"
    async with http.get("/v1/search", params=params, headers=as_user) as r:
        assert r.status == 200, await r.text()
        second = await r.json()
    assert second["nextPageToken"] == ""
    indexes = {hit["segmentIndex"], second["hits"][0]["segmentIndex"]}
    assert indexes == {0, 1}
    assert {hit["startOffset"], second["hits"][0]["startOffset"]} == {"0s", "2s"}

    async with http.get("/v1/search", params={"q": "launch"}, headers=bearer("someone")) as r:
        assert r.status == 200
        assert (await r.json())["hits"] == []


@route("GET", "/v1/search", "failure")
async def test_search_refuses_a_missing_query_a_bad_filter_and_a_foreign_token(
    http: aiohttp.ClientSession, as_user: dict[str, str]
) -> None:
    async with http.get("/v1/search", headers=as_user) as r:
        assert r.status == 400
        error = await error_of(r)
        assert reason_of(error) == "INVALID_FIELD"
    async with http.get(
        "/v1/search", params={"q": "x", "createdAfter": "yesterday"}, headers=as_user
    ) as r:
        assert r.status == 400
    async with http.get(
        "/v1/search", params={"q": "x", "pageToken": "bogus"}, headers=as_user
    ) as r:
        assert r.status == 400
        assert reason_of(await error_of(r)) == "INVALID_PAGE_TOKEN"
    async with http.get("/v1/search", params={"q": "x"}) as r:
        assert r.status == 401
