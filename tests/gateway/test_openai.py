"""The OpenAI-compatible front door, driven by the official `openai` package against a
real mesh: gateway, meeting_service with its worker, gpu_proxy and gpu_node (mock engine)."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import aiohttp
import openai
import pytest
import pytest_asyncio

from gpu_node.server import run_gpu_node
from gpu_proxy.server import run_gpu_proxy
from meeting_service.db.database import Database
from meeting_service.server import run_meeting_service
from tests.support.exports import assert_well_timed, parse_srt, parse_vtt
from tests.support.gateway import RunningGateway, bearer, gateway_settings, route, run_gateway
from tests.support.gpu import as_wav, dialogue, make_pki, node_settings, proxy_settings
from tests.support.meeting import TEST_JWT_SECRET, make_token, pipeline_settings

USER = "openai-user"
TURNS = 3
WAV = as_wav(dialogue(TURNS))  # 0.4 s + 3 x (1 s speech + 0.6 s silence)
DURATION = 0.4 + TURNS * 1.6
MAX_UPLOAD = 512 * 1024


@pytest_asyncio.fixture(scope="module")
async def mesh(
    database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[RunningGateway]:
    pki = make_pki(tmp_path_factory.mktemp("openai-pki"))
    async with AsyncExitStack() as stack:
        node = await stack.enter_async_context(run_gpu_node(node_settings(pki)))
        proxy = await stack.enter_async_context(run_gpu_proxy(proxy_settings(pki, [node.address])))
        settings = pipeline_settings(
            database_url, tmp_path_factory.mktemp("openai-service"), pki, proxy.address
        )
        service = await stack.enter_async_context(
            run_meeting_service(settings, database=Database(database_url))
        )
        yield await stack.enter_async_context(
            run_gateway(
                gateway_settings(
                    service.address,
                    TEST_JWT_SECRET,
                    max_upload_bytes=MAX_UPLOAD,
                    openai_wait_s=60.0,
                )
            )
        )


@pytest.fixture
def client(mesh: RunningGateway) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        base_url=f"{mesh.url}/v1", api_key=make_token(USER), max_retries=0, timeout=60.0
    )


def recording(name: str = "standup.wav") -> tuple[str, bytes, str]:
    return (name, WAV, "audio/wav")


@route("POST", "/v1/audio/transcriptions", "success")
async def test_json_and_text(client: openai.AsyncOpenAI, mesh: RunningGateway) -> None:
    result = await client.audio.transcriptions.create(model="whisper-1", file=recording())
    assert result.text.count("speech") == TURNS
    text = await client.audio.transcriptions.create(
        model="whisper-1", file=recording(), response_format="text"
    )
    assert isinstance(text, str)
    assert text.strip() == result.text
    # Each call is a meeting of the caller, titled after the file, listed like any other.
    async with (
        aiohttp.ClientSession(mesh.url) as http,
        http.get("/v1/meetings", headers=bearer(USER)) as r,
    ):
        meetings = (await r.json())["meetings"]
    assert [m["title"] for m in meetings[:2]] == ["standup.wav", "standup.wav"]
    assert {m["status"] for m in meetings[:2]} == {"MEETING_STATUS_COMPLETED"}


@route("POST", "/v1/audio/transcriptions", "success")
@pytest.mark.parametrize("response_format", ["srt", "vtt"])
async def test_subtitles(client: openai.AsyncOpenAI, response_format: str) -> None:
    body = await client.audio.transcriptions.create(
        model="whisper-1",
        file=recording(),
        response_format=response_format,  # type: ignore[call-overload]
    )
    cues = (parse_srt if response_format == "srt" else parse_vtt)(body)
    assert_well_timed(cues, within=DURATION)
    assert len(cues) >= TURNS
    assert {c.speaker for c in cues} == {""}  # as Whisper's: no speaker labels
    assert sum(c.text.count("speech") for c in cues) == TURNS


@route("POST", "/v1/audio/transcriptions", "success")
async def test_verbose_json_with_words(client: openai.AsyncOpenAI) -> None:
    result = await client.audio.transcriptions.create(
        model="whisper-1",
        file=recording(),
        response_format="verbose_json",
        timestamp_granularities=["word", "segment"],
        language="en",
        temperature=0.0,
        prompt="a stand-up",
    )
    assert result.duration == pytest.approx(DURATION, abs=0.01)
    assert result.language == "en"
    assert result.segments is not None and len(result.segments) == TURNS
    starts = [s.start for s in result.segments]
    assert starts == sorted(starts)
    assert all(0 <= s.start < s.end <= DURATION for s in result.segments)
    assert result.words, "the mock engine times its words"
    for word in result.words:
        assert 0 <= word.start < word.end <= DURATION
    assert " ".join(s.text for s in result.segments) == result.text


@route("POST", "/v1/audio/transcriptions", "failure")
async def test_a_file_that_is_not_audio_is_a_bad_request(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        await client.audio.transcriptions.create(
            model="whisper-1", file=("notes.txt", b"these are not sounds", "text/plain")
        )
    error = raised.value.body
    assert isinstance(error, dict)
    assert error["param"] == "file"
    assert error["type"] == "invalid_request_error"
    assert "audio" in error["message"].lower()


@route("POST", "/v1/audio/transcriptions", "failure")
async def test_bad_fields_too_large_and_unauthenticated(
    client: openai.AsyncOpenAI, mesh: RunningGateway
) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        await client.audio.transcriptions.create(  # type: ignore[call-overload]
            model="whisper-1", file=recording(), response_format="docx"
        )
    assert raised.value.body["param"] == "response_format"  # type: ignore[index]
    with pytest.raises(openai.APIStatusError) as too_large:
        await client.audio.transcriptions.create(
            model="whisper-1", file=("big.wav", b"\0" * (MAX_UPLOAD + 1), "audio/wav")
        )
    assert too_large.value.status_code == 413
    stranger = openai.AsyncOpenAI(base_url=f"{mesh.url}/v1", api_key="nonsense", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as raised_auth:
        await stranger.audio.transcriptions.create(model="whisper-1", file=recording())
    assert raised_auth.value.body["code"] == "invalid_api_key"  # type: ignore[index]


@route("POST", "/v1/audio/translations", "failure")
async def test_translation_is_refused_clearly(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        await client.audio.translations.create(model="whisper-1", file=recording())
    assert "translation is not supported" in raised.value.message


@route("POST", "/v1/audio/translations", "success")
async def test_translation_route_authenticates_and_answers_in_openai_shape(
    mesh: RunningGateway,
) -> None:
    # The route's one answer to a caller it knows is the refusal, in OpenAI's shape.
    form = aiohttp.FormData()
    form.add_field("model", "whisper-1")
    form.add_field("file", io.BytesIO(WAV), filename="a.wav", content_type="audio/wav")
    async with (
        aiohttp.ClientSession(mesh.url) as http,
        http.post("/v1/audio/translations", data=form, headers=bearer(USER)) as r,
    ):
        assert r.status == 400
        body = await r.json()
    assert body["error"]["code"] == "unsupported_task"


@route("GET", "/v1/models", "success")
async def test_models(client: openai.AsyncOpenAI) -> None:
    ids = [model.id async for model in client.models.list()]
    assert ids == ["whisper-1", "meeting-mesh"]


@route("GET", "/v1/models", "failure")
async def test_models_needs_a_token(mesh: RunningGateway) -> None:
    async with aiohttp.ClientSession(mesh.url) as http, http.get("/v1/models") as r:
        assert r.status == 401
        body = await r.json()
    assert set(body["error"]) == {"message", "type", "param", "code"}


async def test_a_transcription_exports_like_any_meeting(
    mesh: RunningGateway, tmp_path: Path
) -> None:
    form = aiohttp.FormData()
    form.add_field("file", io.BytesIO(WAV), filename="later.wav", content_type="audio/wav")
    form.add_field("language", "en")  # after the file: applied before the upload completes
    async with aiohttp.ClientSession(mesh.url) as http:
        async with http.post("/v1/audio/transcriptions", data=form, headers=bearer(USER)) as r:
            assert r.status == 200, await r.text()
            meeting_id = r.headers["X-Meeting-Id"]
        async with http.get(f"/v1/meetings/{meeting_id}", headers=bearer(USER)) as r:
            assert (await r.json())["meeting"]["language"] == "en"
        async with http.get(
            f"/v1/meetings/{meeting_id}/transcript",
            params={"format": "json"},
            headers=bearer(USER),
        ) as r:
            document = json.loads(await r.text())
    assert len(document["segments"]) == TURNS
    assert document["meeting"]["title"] == "later.wav"


@route("POST", "/v1/audio/transcriptions", "failure")
async def test_a_bad_field_after_the_file_is_400_and_leaves_no_meeting(
    mesh: RunningGateway,
) -> None:
    user = "openai-late-field"
    form = aiohttp.FormData()
    form.add_field("file", io.BytesIO(WAV), filename="late.wav", content_type="audio/wav")
    form.add_field("temperature", "2")
    async with aiohttp.ClientSession(mesh.url) as http:
        async with http.post("/v1/audio/transcriptions", data=form, headers=bearer(user)) as r:
            assert r.status == 400
            error = (await r.json())["error"]
        async with http.get("/v1/meetings", headers=bearer(user)) as r:
            assert (await r.json()).get("meetings", []) == []
    assert error["param"] == "temperature"
