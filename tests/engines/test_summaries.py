"""Summaries: extractive (faithful), rule-based action items, and an LLM server with fallback."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web
from pydantic import SecretStr

from gen.gpu.v1 import gpu_pb2
from gpu_node.engines.summaries import FallbackSummarizer, OpenAICompatibleSummarizer
from gpu_node.engines.summaries_extractive import ExtractiveSummarizer, split_sentences
from mesh_common.ports import free_port
from tests.engines import ENGINES
from tests.support.speech import SCRIPT

pytestmark = ENGINES

LABELS = {"alex": "SPEAKER_1", "maria": "SPEAKER_2"}
LINES = [gpu_pb2.TranscriptLine(speaker=LABELS[who], text=text) for who, text in SCRIPT]


def assert_faithful(summary: str, lines: list[gpu_pb2.TranscriptLine]) -> None:
    said = " ".join(line.text for line in lines)
    picked = split_sentences([gpu_pb2.TranscriptLine(text=summary)])
    assert picked, "empty summary"
    assert all(sentence.text in said for sentence in picked), summary


async def test_extractive_summary_quotes_the_transcript_and_finds_commitments() -> None:
    result = await ExtractiveSummarizer().summarize(LINES, "en", 3)
    assert result.engine == "extractive"
    assert_faithful(result.summary, LINES)
    assert len(split_sentences([gpu_pb2.TranscriptLine(text=result.summary)])) <= 3
    items = {(item.owner, item.due): item.text for item in result.action_items}
    assert items[("Maria", "on Friday")] == "Maria will send the report on Friday"
    # "I will..." belongs to whoever said it.
    assert items[("SPEAKER_1", "next week")].startswith("I will schedule a meeting")
    assert len(result.keywords) >= 3
    assert any("budget" in k.lower() or "costs" in k.lower() for k in result.keywords)


async def test_statements_that_commit_no_one_are_not_action_items() -> None:
    lines = [
        gpu_pb2.TranscriptLine(text="It will rain on Monday. There will be cake."),
        gpu_pb2.TranscriptLine(text="Action item: update the roadmap by the end of the month."),
    ]
    result = await ExtractiveSummarizer().summarize(lines, "en", 0)
    assert [(i.text, i.owner, i.due) for i in result.action_items] == [
        ("update the roadmap by the end of the month", "", "by the end of the month")
    ]


async def test_empty_transcript_gives_an_empty_summary() -> None:
    result = await ExtractiveSummarizer().summarize([], "", 0)
    assert (result.summary, list(result.action_items), list(result.keywords)) == ("", [], [])


Handler = Callable[[web.Request], Any]


@pytest_asyncio.fixture
async def llm_server() -> AsyncIterator[tuple[str, list[dict[str, Any]], list[Handler]]]:
    """An OpenAI-compatible server on port 0; tests choose how it answers."""
    seen: list[dict[str, Any]] = []
    behaviour: list[Handler] = []

    async def completions(request: web.Request) -> web.StreamResponse:
        seen.append({"body": await request.json(), "auth": request.headers.get("Authorization")})
        return await behaviour[0](request)  # type: ignore[no-any-return]

    app = web.Application()
    app.router.add_post("/v1/chat/completions", completions)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}/v1", seen, behaviour
    finally:
        await runner.cleanup()


def chat_answer(content: str) -> Handler:
    async def answer(_: web.Request) -> web.Response:
        return web.json_response(
            {
                "object": "chat.completion",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": content}}],
            }
        )

    return answer


def summarizer(url: str) -> FallbackSummarizer:
    llm = OpenAICompatibleSummarizer(url, "test-model", api_key=SecretStr("s3cret"), timeout_s=10)
    return FallbackSummarizer(llm, ExtractiveSummarizer())


async def test_llm_server_writes_the_summary_when_it_answers(llm_server: Any) -> None:
    url, seen, behaviour = llm_server
    answer = {
        "summary": "The team reviewed the budget.",
        "decisions": ["We need a clear plan to reduce those costs", "We cancel the launch."],
        "action_items": [
            {
                "text": "Send the report",
                "owner": "Maria",
                "due": "on Friday",
                "quote": "maria will send the report on Friday",
            },
            {"text": "Buy a boat", "owner": "Alex", "due": "", "quote": "Alex will buy a boat."},
        ],
        "keywords": ["budget"],
    }
    behaviour.append(chat_answer("```json\n" + json.dumps(answer) + "\n```"))
    result = await summarizer(url).summarize(LINES, "en", 2)
    assert result.engine == "llm:test-model"
    assert result.summary == "The team reviewed the budget."
    # What the transcript does not say (the boat, the cancelled launch) is left out.
    assert [(i.text, i.owner, i.due) for i in result.action_items] == [
        ("Send the report", "Maria", "on Friday")
    ]
    assert list(result.decisions) == ["We need a clear plan to reduce those costs"]
    assert list(result.keywords) == ["budget"]
    request = seen[0]
    schema = request["body"]["response_format"]["json_schema"]
    assert schema["strict"] is True
    assert schema["schema"]["properties"]["action_items"]["items"]["required"] == [
        "text",
        "owner",
        "due",
        "quote",
    ]
    assert request["auth"] == "Bearer s3cret"
    assert request["body"]["model"] == "test-model"
    assert (
        "SPEAKER_2: Maria will send the report on Friday."
        in request["body"]["messages"][1]["content"]
    )


@pytest.mark.parametrize(
    "failure",
    [
        lambda: lambda _: web.json_response({"error": "overloaded"}, status=503),
        lambda: chat_answer("Sure! Here is a summary of the meeting."),
        lambda: lambda _: web.Response(text="<html>proxy error</html>"),
    ],
    ids=["http-error", "not-json", "not-a-completion"],
)
async def test_extractive_fallback_when_the_llm_server_fails(
    llm_server: Any, failure: Callable[[], Handler]
) -> None:
    url, seen, behaviour = llm_server

    async def handler(request: web.Request) -> web.StreamResponse:
        result = failure()(request)
        return await result if hasattr(result, "__await__") else result  # type: ignore[no-any-return]

    behaviour.append(handler)
    result = await summarizer(url).summarize(LINES, "en", 2)
    assert seen, "the LLM server was not asked"
    assert result.engine == "extractive"
    assert_faithful(result.summary, LINES)
    assert any(i.owner == "Maria" for i in result.action_items)


async def test_extractive_fallback_when_the_llm_server_is_unreachable() -> None:
    port = free_port()  # nothing listens there
    result = await summarizer(f"http://127.0.0.1:{port}/v1").summarize(LINES, "en", 2)
    assert result.engine == "extractive"
    assert_faithful(result.summary, LINES)


async def test_a_scripted_meeting_keeps_its_decision_and_each_item_with_owner_and_due() -> None:
    lines = [
        gpu_pb2.TranscriptLine(speaker="Priya", text="Should we launch on the 15th of March?"),
        gpu_pb2.TranscriptLine(speaker="Tom", text="No, the payment service is not ready."),
        gpu_pb2.TranscriptLine(speaker="Priya", text="Then we decided the launch is moved to"),
        gpu_pb2.TranscriptLine(speaker="Priya", text="the 22nd of March."),
        gpu_pb2.TranscriptLine(speaker="Tom", text="I will finish the payment tests."),
        gpu_pb2.TranscriptLine(speaker="Tom", text="By Friday."),
        gpu_pb2.TranscriptLine(speaker="Priya", text="I'll tell the customers next week."),
        gpu_pb2.TranscriptLine(speaker="Tom", text="I should hide them for me."),
    ]
    result = await ExtractiveSummarizer().summarize(lines, "en", 2)
    decision = "Then we decided the launch is moved to the 22nd of March."
    assert list(result.decisions) == [decision]
    assert decision in result.summary
    assert_faithful(result.summary, lines)
    items = [(i.owner, i.due, i.quote) for i in result.action_items]
    assert items == [
        ("Tom", "By Friday", "I will finish the payment tests. By Friday."),
        ("Priya", "next week", "I'll tell the customers next week."),
    ]
