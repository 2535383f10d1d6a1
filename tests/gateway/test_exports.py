"""Transcript exports over REST (by `format` and by `Accept`), over gRPC, and from the CLI,
each parsed back with an independent library."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp
import grpc
import pytest

from gen.meeting.v1 import exports_pb2, meeting_service_pb2_grpc
from meeting_mesh.export_cli import configure, run
from meeting_service.server import RunningMeetingService
from tests.support.exports import assert_well_timed, parse_srt, parse_vtt
from tests.support.gateway import RunningGateway, error_of, play_pipeline, reason_of, route
from tests.support.meeting import auth, make_token

TRANSCRIPT = "/v1/meetings/{meeting_id}/transcript"
TEXTS = ["Hello all. Thanks for coming.", "Let us begin with the budget.", "Agreed."]
# play_pipeline: segment i spans [2i, 2i + 2] s, speakers alternate SPEAKER_1 / SPEAKER_2.
SPEAKERS = ["SPEAKER_1", "SPEAKER_1", "SPEAKER_2", "SPEAKER_1"]


@pytest.fixture
async def processed(
    http: aiohttp.ClientSession, meeting_id: str, meeting_service: RunningMeetingService
) -> str:
    await play_pipeline(meeting_service, meeting_id, TEXTS)
    return meeting_id


@route("GET", TRANSCRIPT, "success")
@pytest.mark.parametrize(
    ("query", "accept", "content_type", "extension"),
    [
        ("srt", None, "application/x-subrip", "srt"),
        ("vtt", None, "text/vtt", "vtt"),
        (None, "application/x-subrip", "application/x-subrip", "srt"),
        (None, "text/vtt, application/json;q=0.5", "text/vtt", "vtt"),
    ],
)
async def test_subtitles_by_format_or_accept_parse_back(
    http: aiohttp.ClientSession,
    as_user: dict[str, str],
    processed: str,
    query: str | None,
    accept: str | None,
    content_type: str,
    extension: str,
) -> None:
    headers = {**as_user, **({"Accept": accept} if accept else {})}
    params = {"format": query} if query else {}
    async with http.get(
        f"/v1/meetings/{processed}/transcript", params=params, headers=headers
    ) as r:
        assert r.status == 200, await r.text()
        assert r.content_type == content_type
        assert r.charset == "utf-8"
        assert r.headers["Content-Disposition"] == f'attachment; filename="standup.{extension}"'
        body = await r.text()
    cues = parse_srt(body, SPEAKERS) if extension == "srt" else parse_vtt(body)
    assert_well_timed(cues, within=6.0)
    assert [c.text for c in cues] == [
        "Hello all.",
        "Thanks for coming.",
        "Let us begin with the budget.",
        "Agreed.",
    ]
    assert [c.speaker for c in cues] == SPEAKERS
    assert cues[2].start == 2.0 and cues[3].start == 4.0 and cues[3].end == 6.0


@route("GET", TRANSCRIPT, "success")
async def test_text_markdown_and_json_exports(
    http: aiohttp.ClientSession, as_user: dict[str, str], processed: str
) -> None:
    url = f"/v1/meetings/{processed}/transcript"
    async with http.get(url, headers={**as_user, "Accept": "text/plain"}) as r:
        assert r.content_type == "text/plain"
        assert await r.text() == (
            "SPEAKER_1: Hello all. Thanks for coming.\n\n"
            "SPEAKER_2: Let us begin with the budget.\n\nSPEAKER_1: Agreed.\n"
        )
    async with http.get(url, params={"format": "markdown"}, headers=as_user) as r:
        assert r.content_type == "text/markdown"
        markdown = await r.text()
    assert markdown.startswith("# standup\n")
    assert "## Summary" in markdown and "**SPEAKER_2** `00:00:02`" in markdown
    async with http.get(url, params={"format": "json"}, headers=as_user) as r:
        assert r.content_type == "application/json"
        document = await r.json()
    assert [s["text"] for s in document["segments"]] == TEXTS
    assert document["speakers"] == ["SPEAKER_1", "SPEAKER_2"]


@route("GET", TRANSCRIPT, "success")
@pytest.mark.parametrize("accept", [None, "application/json", "*/*", "text/html"])
async def test_without_a_format_the_answer_is_the_transcript_json(
    http: aiohttp.ClientSession, as_user: dict[str, str], processed: str, accept: str | None
) -> None:
    headers = {**as_user, **({"Accept": accept} if accept else {})}
    async with http.get(f"/v1/meetings/{processed}/transcript", headers=headers) as r:
        assert r.status == 200
        assert "Content-Disposition" not in r.headers
        body = await r.json()
    assert [s["text"] for s in body["segments"]] == TEXTS
    assert body["status"] == "MEETING_STATUS_COMPLETED"


@route("GET", TRANSCRIPT, "failure")
@pytest.mark.parametrize("params", [{"format": "docx"}, {"format": "srt", "x": "1"}])
async def test_an_unknown_format_is_400_naming_it(
    http: aiohttp.ClientSession, as_user: dict[str, str], processed: str, params: dict[str, str]
) -> None:
    async with http.get(
        f"/v1/meetings/{processed}/transcript", params=params, headers=as_user
    ) as r:
        assert r.status == 400
        error = await error_of(r)
    assert reason_of(error) == "INVALID_FIELD"
    assert error["details"][0]["metadata"]["field"] == ("format" if "x" not in params else "x")


@route("GET", TRANSCRIPT, "failure")
async def test_an_export_before_processing_is_not_ready(
    http: aiohttp.ClientSession, as_user: dict[str, str], meeting_id: str
) -> None:
    async with http.get(
        f"/v1/meetings/{meeting_id}/transcript", params={"format": "srt"}, headers=as_user
    ) as r:
        assert r.status == 400
        error = await error_of(r)
    assert reason_of(error) == "NOT_READY"


async def test_grpc_export_and_its_errors(
    meeting_service: RunningMeetingService, processed: str, user: str
) -> None:
    async with grpc.aio.insecure_channel(meeting_service.address) as channel:
        stub = meeting_service_pb2_grpc.MeetingServiceStub(channel)
        response = await stub.ExportTranscript(
            exports_pb2.ExportTranscriptRequest(
                meeting_id=processed, format=exports_pb2.EXPORT_FORMAT_VTT
            ),
            metadata=auth(user),
        )
        assert response.content_type == "text/vtt; charset=utf-8"
        assert response.filename == "standup.vtt"
        cues = parse_vtt(response.data.decode())
        assert [c.speaker for c in cues] == SPEAKERS
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stub.ExportTranscript(
                exports_pb2.ExportTranscriptRequest(meeting_id=processed), metadata=auth(user)
            )
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stub.ExportTranscript(
                exports_pb2.ExportTranscriptRequest(
                    meeting_id=processed, format=exports_pb2.EXPORT_FORMAT_SRT
                ),
                metadata=auth("someone-else"),
            )
        assert raised.value.code() == grpc.StatusCode.NOT_FOUND


async def test_the_cli_writes_the_export(
    gateway: RunningGateway, processed: str, user: str, tmp_path: Path
) -> None:
    import argparse

    def export(*args: str) -> int:
        parser = argparse.ArgumentParser()
        configure(parser)
        return run(parser.parse_args(args))

    out = tmp_path / "meeting.srt"
    token = make_token(user)
    common = ["--url", gateway.url, "--token", token]
    status = await asyncio.to_thread(export, processed, "--format", "srt", "-o", str(out), *common)
    assert status == 0
    cues = parse_srt(out.read_text(), SPEAKERS)
    assert [c.speaker for c in cues] == SPEAKERS
    status = await asyncio.to_thread(
        export, processed, "--format", "json", "-o", str(tmp_path / "m.json"), *common
    )
    assert status == 0
    assert json.loads((tmp_path / "m.json").read_text())["speakers"] == ["SPEAKER_1", "SPEAKER_2"]
    refused = await asyncio.to_thread(
        export,
        processed,
        "--format",
        "srt",
        "-o",
        str(out),
        "--url",
        gateway.url,
        "--token",
        make_token("someone-else"),
    )
    assert refused == 1
