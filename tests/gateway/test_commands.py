"""The `meeting-mesh` commands a user reaches for, end to end: each runs as its own process
against a real gateway, meeting_service with its pipeline, gpu_proxy and a mock-engine
gpu_node; `--json` output is parsed.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
import pytest_asyncio
from google.protobuf import duration_pb2

from gen.meeting.v1 import meeting_pb2, meeting_service_pb2, meeting_service_pb2_grpc
from meeting_mesh.cli import main
from meeting_mesh.client import GatewayClient
from meeting_service.server import RunningMeetingService
from tests.support.gateway import RunningGateway
from tests.support.gpu import as_wav, dialogue
from tests.support.meeting import TEST_JWT_SECRET, auth, make_token
from tests.support.pipeline import run_pipeline_service
from tests.support.transcripts import change_status, store_summary

WITHIN = 60.0


@pytest_asyncio.fixture(scope="module")
async def meeting_service(
    database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[RunningMeetingService]:
    """meeting_service with its pipeline, in front of gpu_proxy and a mock-engine gpu_node."""
    async with run_pipeline_service(database_url, tmp_path_factory) as running:
        yield running


def _environment() -> dict[str, str]:
    # The commands must take the caller from their arguments, not from this machine.
    env = {k: v for k, v in os.environ.items() if not k.startswith("MESH_")}
    return {**env, "COLUMNS": "200", "NO_COLOR": "1"}


async def _mesh(*args: str, cwd: Path | None = None) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "meeting_mesh.cli",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=_environment(),
        cwd=cwd,
    )
    async with asyncio.timeout(WITHIN):
        out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def _as(gateway: RunningGateway, user: str, *args: str) -> tuple[int, str, str]:
    """Runs a command that talks to the gateway as `user`."""
    return await _mesh(*args, "--url", gateway.url, "--token", make_token(user))


async def _json(gateway: RunningGateway, user: str, *args: str) -> Any:
    code, out, err = await _as(gateway, user, *args, "--json")
    assert code == 0, (out, err)
    return json.loads(out)


async def _upload(
    gateway: RunningGateway, user: str, tmp_path: Path, *args: str, turns: int = 3
) -> dict[str, Any]:
    recording = tmp_path / f"{uuid.uuid4().hex[:6]}.wav"
    recording.write_bytes(as_wav(dialogue(turns)))
    document: dict[str, Any] = await _json(gateway, user, "upload", str(recording), *args)
    return document


async def _play(
    meeting_service: RunningMeetingService, meeting_id: str, summary: meeting_pb2.Summary
) -> list[str]:
    """Stores what the pipeline would: finals, then the same finals with speakers, then
    the summary; the meeting is left SUMMARIZING. Returns the texts."""
    services = meeting_service.services
    mid = uuid.UUID(meeting_id)
    texts = ["Good morning, everyone.", "Alice will send the report by Friday.", "Thanks."]
    await change_status(services, mid, meeting_pb2.MEETING_STATUS_TRANSCRIBING)
    for labelled in (False, True):
        await services.processing.writer.submit(
            mid,
            [
                meeting_pb2.Segment(
                    index=i,
                    text=text,
                    final=True,
                    speaker=f"SPEAKER_{i % 2 + 1}" if labelled else "",
                    start_offset=duration_pb2.Duration(seconds=i * 5),
                    end_offset=duration_pb2.Duration(seconds=i * 5 + 4),
                )
                for i, text in enumerate(texts)
            ],
        )
        if not labelled:
            await change_status(services, mid, meeting_pb2.MEETING_STATUS_DIARIZING)
    await change_status(services, mid, meeting_pb2.MEETING_STATUS_SUMMARIZING)
    await store_summary(services, mid, summary)
    return texts


_SUMMARY = meeting_pb2.Summary(
    text="A short standup.",
    action_items=[
        meeting_pb2.ActionItem(text="Send the report", owner="Alice", due="Friday"),
        meeting_pb2.ActionItem(text="Book a room"),
    ],
)


async def _create(gateway: RunningGateway, user: str, title: str, language: str = "") -> str:
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{gateway.url}/v1/meetings",
            json={"title": title, "language": language},
            headers={"Authorization": f"Bearer {make_token(user)}"},
        ) as r,
    ):
        assert r.status == 201
        meeting_id: str = (await r.json())["meeting"]["id"]
        return meeting_id


def _user() -> str:
    return f"user-{uuid.uuid4().hex[:10]}"


async def test_upload_with_title_language_and_speakers_prints_the_result_as_json(
    gateway: RunningGateway, tmp_path: Path
) -> None:
    user = _user()
    document = await _upload(
        gateway, user, tmp_path, "--title", "Planning", "--language", "en", "--speakers", "2"
    )

    meeting = document["meeting"]
    assert meeting["title"] == "Planning"
    assert meeting["language"] == "en"
    assert meeting["expectedSpeakers"] == 2
    assert meeting["status"] == "MEETING_STATUS_COMPLETED"
    assert len(document["segments"]) == 3
    assert [s["index"] for s in document["segments"]] == [0, 1, 2]
    assert all(s["speaker"] for s in document["segments"])
    assert set(document["speakers"]) == {"SPEAKER_1", "SPEAKER_2"}
    assert document["summary"] is not None


async def test_upload_prints_each_segment_once_and_the_speaker_turns(
    gateway: RunningGateway, tmp_path: Path
) -> None:
    user = _user()
    recording = tmp_path / "standup.wav"
    recording.write_bytes(as_wav(dialogue(3)))

    code, out, err = await _as(gateway, user, "upload", str(recording), "--title", "Standup")

    assert code == 0, (out, err)
    async with aiohttp.ClientSession() as session:
        client = GatewayClient(session, gateway.url, make_token(user))
        (meeting,) = (await client.list_meetings())["meetings"]
        transcript = await client.transcript(meeting["id"])
    for segment in transcript["segments"]:
        assert out.count(segment["text"]) == 1, out
    assert "Speakers" in out and "SPEAKER_1" in out and "SPEAKER_2" in out
    assert "completed" in out
    assert "Summary" in out


async def test_upload_exits_1_with_the_servers_message_on_bad_audio(
    gateway: RunningGateway, tmp_path: Path
) -> None:
    recording = tmp_path / "noise.wav"
    recording.write_bytes(os.urandom(100_000))
    code, out, err = await _as(gateway, _user(), "upload", str(recording))
    assert code == 1, (out, err)
    assert "400" in err
    assert "audio" in err.lower()


async def test_upload_resume_sends_the_rest_of_an_interrupted_upload(
    gateway: RunningGateway, meeting_service: RunningMeetingService, tmp_path: Path
) -> None:
    user = _user()
    audio = as_wav(dialogue(2))
    recording = tmp_path / "cut.wav"
    recording.write_bytes(audio)
    meeting_id = await _create(gateway, user, "cut off")
    # An upload that stopped halfway: the service keeps the first half.
    async with grpc.aio.insecure_channel(meeting_service.address) as channel:
        stub = meeting_service_pb2_grpc.MeetingServiceStub(channel)
        half = len(audio) // 2

        async def first_half() -> AsyncIterator[meeting_service_pb2.UploadAudioRequest]:
            yield meeting_service_pb2.UploadAudioRequest(
                metadata=meeting_service_pb2.UploadMetadata(
                    meeting_id=meeting_id, content_type="audio/wav", total_size=len(audio)
                )
            )
            yield meeting_service_pb2.UploadAudioRequest(chunk=audio[:half])

        stored = await stub.UploadAudio(first_half(), metadata=auth(user))
    assert (stored.stored_size, stored.complete) == (half, False)

    document = await _json(gateway, user, "upload", str(recording), "--resume", meeting_id)

    assert document["meeting"]["id"] == meeting_id
    assert document["meeting"]["audioSizeBytes"] == str(len(audio))
    assert document["meeting"]["status"] == "MEETING_STATUS_COMPLETED"
    assert len(document["segments"]) == 2


async def test_meetings_list_get_and_delete(gateway: RunningGateway) -> None:
    user = _user()
    ids = [await _create(gateway, user, f"meeting {i}") for i in range(3)]

    paged = await _json(gateway, user, "meetings", "list", "--page-size", "2", "--all")
    assert [m["id"] for m in paged["meetings"]] == ids[::-1]
    assert paged["nextPageToken"] == ""
    got = await _json(gateway, user, "meetings", "get", ids[0])
    assert (got["id"], got["title"]) == (ids[0], "meeting 0")
    assert await _json(gateway, user, "meetings", "delete", ids[0]) == {"deleted": ids[0]}

    code, out, _ = await _as(gateway, user, "meetings", "list")
    assert code == 0
    assert ids[1] in out and "meeting 2" in out and "awaiting_audio" in out
    assert ids[0] not in out
    code, _, err = await _as(gateway, _user(), "meetings", "get", ids[1])
    assert code == 1
    assert "404" in err


async def test_follow_prints_a_completed_meeting_once_with_speakers_and_action_items(
    gateway: RunningGateway, meeting_service: RunningMeetingService
) -> None:
    user = _user()
    meeting_id = await _create(gateway, user, "standup")
    texts = await _play(meeting_service, meeting_id, _SUMMARY)
    await change_status(
        meeting_service.services, uuid.UUID(meeting_id), meeting_pb2.MEETING_STATUS_COMPLETED
    )

    code, out, err = await _as(gateway, user, "follow", meeting_id)
    assert code == 0, (out, err)
    for i, text in enumerate(texts):
        assert out.count(text) == 1
        assert f"SPEAKER_{i % 2 + 1}: {text}" in out
    assert "Send the report (owner: Alice, due: Friday)" in out
    assert "Book a room" in out

    document = await _json(gateway, user, "follow", meeting_id)
    assert [s["text"] for s in document["segments"]] == texts
    assert document["speakers"] == ["SPEAKER_1", "SPEAKER_2"]
    assert document["summary"]["actionItems"][0] == {
        "text": "Send the report",
        "owner": "Alice",
        "due": "Friday",
    }
    assert document["meeting"]["status"] == "MEETING_STATUS_COMPLETED"


async def test_follow_live_prints_finals_once_then_the_speaker_turns(
    gateway: RunningGateway, meeting_service: RunningMeetingService
) -> None:
    user = _user()
    meeting_id = await _create(gateway, user, "live")
    texts = await _play(meeting_service, meeting_id, _SUMMARY)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "meeting_mesh.cli",
        "follow",
        meeting_id,
        "--url",
        gateway.url,
        "--token",
        make_token(user),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=_environment(),
    )
    assert process.stdout is not None
    async with asyncio.timeout(WITHIN):
        # Its first line means it follows the stream (the meeting was not over yet).
        first = await process.stdout.readline()
        await change_status(
            meeting_service.services, uuid.UUID(meeting_id), meeting_pb2.MEETING_STATUS_COMPLETED
        )
        rest, err = await process.communicate()
    out = first.decode() + rest.decode()
    assert process.returncode == 0, (out, err)
    for text in texts:
        assert out.count(text) == 1, out
    turns = out.split("Speakers", 1)[1]
    assert "00:00-00:04 SPEAKER_1" in turns
    assert "00:05-00:09 SPEAKER_2" in turns
    assert "00:10-00:14 SPEAKER_1" in turns
    assert "Send the report (owner: Alice, due: Friday)" in out
    assert "completed" in out


async def test_search_finds_the_callers_words_as_json_and_as_a_table(
    gateway: RunningGateway, meeting_service: RunningMeetingService
) -> None:
    user = _user()
    meeting_id = await _create(gateway, user, "report meeting", language="en")
    await _play(meeting_service, meeting_id, _SUMMARY)

    page = await _json(gateway, user, "search", "reports")
    (hit,) = page["hits"]
    assert (hit["meetingId"], hit["segmentIndex"], hit["speaker"]) == (meeting_id, 1, "SPEAKER_2")
    spans = [hit["snippet"][s["start"] : s["end"]] for s in hit["highlights"]]
    assert spans == ["report"]
    filtered = await _json(
        gateway,
        user,
        *("search", "report or morning", "--speaker", "SPEAKER_1", "--status", "summarizing"),
        *("--after", "2000-01-01", "--before", "2999-01-01T00:00:00+01:00"),
    )
    assert [h["segmentIndex"] for h in filtered["hits"]] == [0]

    code, out, _ = await _as(gateway, user, "search", "report or morning", "--page-size", "1")
    assert code == 0
    assert "report meeting" in out and "SPEAKER_1" in out and "00:00" in out
    assert "more: --page-token" in out


def _token_command(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """`meeting-mesh token ...` through the command's entry point, in this process."""
    code = main(["token", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def no_mesh_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The commands must take the secret from their arguments, not from this machine."""
    for name in list(os.environ):
        if name.startswith("MESH_"):
            monkeypatch.delenv(name)


@pytest.mark.usefixtures("no_mesh_environment")
async def test_token_signs_with_the_data_directorys_secret(
    gateway: RunningGateway, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir = tmp_path / "mesh"
    data_dir.mkdir()
    (data_dir / "jwt-secret").write_text(TEST_JWT_SECRET)  # as the running mesh keeps it
    user = _user()

    code, out, err = _token_command(capsys, "--user", user, "--data-dir", str(data_dir))
    assert code == 0, err
    code, _, err = await _mesh("meetings", "list", "--url", gateway.url, "--token", out.strip())
    assert code == 0, err
    # Without --token, the client commands mint one the same way.
    listed = await _mesh(
        "meetings", "list", "--json", "--url", gateway.url, "--data-dir", str(data_dir)
    )
    assert listed[0] == 0, listed
    assert json.loads(listed[1]) == {"meetings": [], "nextPageToken": ""}


@pytest.mark.usefixtures("no_mesh_environment")
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--user", ""), "user must not be empty"),
        (("--user", "ann", "--ttl", "-5"), "at least one second"),
        (("--user", "ann"), "no signing secret"),
    ],
)
def test_token_refuses_an_empty_user_a_negative_ttl_and_a_missing_secret(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: tuple[str, ...],
    message: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    data_dir = tmp_path / "mesh"
    data_dir.mkdir()
    if message != "no signing secret":
        (data_dir / "jwt-secret").write_text("x" * 48)

    code, out, err = _token_command(capsys, *args, "--data-dir", str(data_dir))

    assert (code, out) == (2, "")
    assert message in err
    # A token the mesh would reject is never made, nor a secret for one.
    left = sorted(p.name for p in tmp_path.rglob("*"))
    assert left == sorted(["mesh", *(["jwt-secret"] if message != "no signing secret" else [])])
