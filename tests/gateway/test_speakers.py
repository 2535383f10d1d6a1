"""Naming speakers: a rename reaches the transcript, the summary's owners and open streams."""

from __future__ import annotations

import uuid

import aiohttp
from google.protobuf import duration_pb2

from gen.meeting.v1 import meeting_pb2
from meeting_mesh.client import parse_sse
from meeting_service.server import RunningMeetingService
from tests.support.gateway import bearer, error_of, reason_of, route, take_events
from tests.support.transcripts import change_status, store_summary


async def _processed(
    meeting_service: RunningMeetingService, meeting_id: str, *, complete: bool = True
) -> None:
    """Stores a two-speaker transcript whose summary has an item owned by SPEAKER_2."""
    services = meeting_service.services
    mid = uuid.UUID(meeting_id)
    await change_status(services, mid, meeting_pb2.MEETING_STATUS_TRANSCRIBING)
    lines = [("SPEAKER_1", "Who sends the notes?"), ("SPEAKER_2", "I will send them.")]
    lines.append(("SPEAKER_2", "By Friday."))
    for index, (speaker, text) in enumerate(lines):
        await services.processing.writer.append_segment(
            mid,
            meeting_pb2.Segment(
                index=index,
                text=text,
                speaker=speaker,
                final=True,
                start_offset=duration_pb2.Duration(seconds=index * 2),
                end_offset=duration_pb2.Duration(seconds=index * 2 + 2),
            ),
        )
    item = meeting_pb2.ActionItem(
        text="I will send them.", owner="SPEAKER_2", due="by Friday", owner_speaker="SPEAKER_2"
    )
    await store_summary(
        services, mid, meeting_pb2.Summary(text="Notes.", action_items=[item], backend="test")
    )
    if complete:
        await change_status(services, mid, meeting_pb2.MEETING_STATUS_COMPLETED)


@route("PATCH", "/v1/meetings/{meeting_id}/speakers/{speaker}", "success")
async def test_a_rename_reaches_the_transcript_the_summary_and_an_open_stream(
    http: aiohttp.ClientSession,
    as_user: dict[str, str],
    meeting_id: str,
    meeting_service: RunningMeetingService,
) -> None:
    # Not COMPLETED yet, so the stream stays open (it ends after the final status).
    await _processed(meeting_service, meeting_id, complete=False)  # events 1-6
    async with http.get(f"/v1/meetings/{meeting_id}/events", headers=as_user) as stream:
        events = parse_sse(stream.content)
        assert len(await take_events(events, 6)) == 6
        async with http.patch(
            f"/v1/meetings/{meeting_id}/speakers/SPEAKER_2",
            json={"name": "  Maria "},
            headers=as_user,
        ) as r:
            assert r.status == 200, await r.text()
            assert await r.json() == {"speakerNames": {"SPEAKER_2": "Maria"}}
        # The open stream sees her two segments and the summary again, with her name.
        renamed = await take_events(events, 3)
    assert [e.event for e in renamed] == ["segment", "segment", "summary"]
    assert [e.data["segment"]["speakerName"] for e in renamed[:2]] == ["Maria", "Maria"]
    assert [e.data["segment"]["speaker"] for e in renamed[:2]] == ["SPEAKER_2", "SPEAKER_2"]
    assert renamed[2].data["summary"]["actionItems"][0]["owner"] == "Maria"

    async with http.get(f"/v1/meetings/{meeting_id}/transcript", headers=as_user) as r:
        transcript = await r.json()
    assert transcript["speakerNames"] == {"SPEAKER_2": "Maria"}
    assert [s.get("speakerName", "") for s in transcript["segments"]] == ["", "Maria", "Maria"]
    async with http.get(f"/v1/meetings/{meeting_id}/summary", headers=as_user) as r:
        item = (await r.json())["summary"]["actionItems"][0]
    assert (item["owner"], item["ownerSpeaker"], item["due"]) == ("Maria", "SPEAKER_2", "by Friday")

    url = f"/v1/meetings/{meeting_id}/transcript"
    async with http.get(url, params={"format": "srt"}, headers=as_user) as r:
        assert r.status == 200, await r.text()
        srt = await r.text()
    assert "Maria: I will send them." in srt and "SPEAKER_1: Who sends the notes?" in srt

    # An empty name removes it: the label shows again everywhere.
    async with http.patch(
        f"/v1/meetings/{meeting_id}/speakers/SPEAKER_2", json={"name": ""}, headers=as_user
    ) as r:
        assert r.status == 200
        assert (await r.json()).get("speakerNames", {}) == {}
    async with http.get(f"/v1/meetings/{meeting_id}/transcript", headers=as_user) as r:
        transcript = await r.json()
    assert transcript.get("speakerNames", {}) == {}
    assert all(s.get("speakerName", "") == "" for s in transcript["segments"])
    async with http.get(f"/v1/meetings/{meeting_id}/summary", headers=as_user) as r:
        assert (await r.json())["summary"]["actionItems"][0]["owner"] == "SPEAKER_2"

    # Once the meeting is over its stream has ended; a rename after that reaches a client
    # that resumes from the final status (instead of the 204 that says "nothing more").
    done = await change_status(
        meeting_service.services, uuid.UUID(meeting_id), meeting_pb2.MEETING_STATUS_COMPLETED
    )
    async with http.patch(
        f"/v1/meetings/{meeting_id}/speakers/SPEAKER_1", json={"name": "Ann"}, headers=as_user
    ) as r:
        assert r.status == 200
    resume = {**as_user, "Last-Event-ID": str(done.sequence)}
    async with http.get(f"/v1/meetings/{meeting_id}/events", headers=resume) as stream:
        assert stream.status == 200
        later = await take_events(parse_sse(stream.content), 1)
    assert later[0].data["segment"]["speakerName"] == "Ann"


@route("PATCH", "/v1/meetings/{meeting_id}/speakers/{speaker}", "failure")
async def test_a_rename_of_an_unknown_speaker_or_of_anothers_meeting_is_refused(
    http: aiohttp.ClientSession,
    as_user: dict[str, str],
    meeting_id: str,
    meeting_service: RunningMeetingService,
) -> None:
    url = f"/v1/meetings/{meeting_id}/speakers/SPEAKER_9"
    async with http.patch(url, json={"name": "Maria"}, headers=as_user) as r:
        assert r.status == 404
        error = await error_of(r)
    assert reason_of(error) == "SPEAKER_NOT_FOUND"
    assert "none yet" in error["message"]
    await _processed(meeting_service, meeting_id)
    async with http.patch(url, json={"name": "Maria"}, headers=as_user) as r:
        error = await error_of(r)
    assert "SPEAKER_1, SPEAKER_2" in error["message"]
    url = f"/v1/meetings/{meeting_id}/speakers/SPEAKER_1"
    async with http.patch(url, json={"name": "x" * 101}, headers=as_user) as r:
        assert r.status == 400
        assert reason_of(await error_of(r)) == "INVALID_FIELD"
    async with http.patch(url, json={"name": "Eve"}, headers=bearer("someone-else")) as r:
        assert r.status == 404
        assert reason_of(await error_of(r)) == "MEETING_NOT_FOUND"
    async with http.get(f"/v1/meetings/{meeting_id}/transcript", headers=as_user) as r:
        assert (await r.json()).get("speakerNames", {}) == {}
