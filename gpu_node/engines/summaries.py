"""Summarization backends: an OpenAI-compatible LLM server, with the extractive one behind it.

Any object with `name` and `summarize(lines, language, max_sentences)` (the
`SummarizationEngine` protocol of `base.py`) is a backend. `FallbackSummarizer` asks its
primary backend first and, when that fails for any reason (unreachable, HTTP error, an
answer that is not the JSON asked for), answers with the fallback instead, so a meeting
always gets a summary. The response's `engine` tells which one wrote it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

import aiohttp
from pydantic import SecretStr

from gen.gpu.v1 import gpu_pb2
from gpu_node.engines.base import SummarizationEngine
from mesh_common.logging import logger

_SYSTEM_PROMPT = (
    "You summarize meeting transcripts faithfully. Use only facts stated in the transcript; "
    "never invent names, dates or numbers. Answer with one JSON object and nothing else: "
    '{"summary": "<at most N sentences>", "decisions": ["<a sentence of the transcript '
    'that states a decision, copied exactly>"], "action_items": [{"text": "...", "owner": '
    '"<who, or empty>", "due": "<when, as stated, or empty>", "quote": "<the sentence of '
    'the transcript it comes from, copied exactly>"}], "keywords": ["..."]}. An action '
    "item is only what someone committed to do."
)
_TEXT = {"type": "string"}
# The answer's shape, sent as a strict `response_format` (servers that enforce it, such as
# vLLM and llama.cpp, cannot answer anything else; the answer is checked either way).
SUMMARY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["summary", "decisions", "action_items", "keywords"],
    "properties": {
        "summary": _TEXT,
        "decisions": {"type": "array", "items": _TEXT},
        "action_items": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["text", "owner", "due", "quote"],
                "properties": {"text": _TEXT, "owner": _TEXT, "due": _TEXT, "quote": _TEXT},
            },
        },
        "keywords": {"type": "array", "items": _TEXT},
    },
}
_FENCE = re.compile(r"^```(?:json)?\s*|\s*```$")


class SummaryBackendError(Exception):
    """A backend could not produce a summary."""


def _format_transcript(lines: Sequence[gpu_pb2.TranscriptLine]) -> str:
    return "\n".join(f"{line.speaker or 'SPEAKER'}: {line.text}" for line in lines)


def _comparable(text: str) -> str:
    return " ".join(re.sub(r"[^\w']+", " ", text.lower()).split())


def parse_llm_answer(
    content: str, engine: str, lines: Sequence[gpu_pb2.TranscriptLine]
) -> gpu_pb2.SummarizeResponse:
    """Reads the JSON object the prompt asks for, keeping only what the transcript says.

    A decision, or an action item's quote, that is not in the transcript (ignoring case,
    punctuation and spacing) was invented: it is left out.

    Args:
        content: The assistant message (code fences around the JSON are tolerated).
        engine: The engine label to put in the response.
        lines: The transcript the answer is about.

    Returns:
        The summary.

    Raises:
        SummaryBackendError: The content is not the expected JSON object.
    """
    try:
        data = json.loads(_FENCE.sub("", content.strip()))
    except json.JSONDecodeError as exc:
        raise SummaryBackendError(f"answer is not JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("summary"), str):
        raise SummaryBackendError("answer lacks a summary string")
    said = _comparable(" ".join(line.text for line in lines))

    def stated(quote: object) -> bool:
        return isinstance(quote, str) and bool(_comparable(quote)) and _comparable(quote) in said

    items = []
    for item in data.get("action_items") or []:
        if (
            isinstance(item, dict)
            and isinstance(item.get("text"), str)
            and stated(item.get("quote"))
        ):
            items.append(
                gpu_pb2.SummaryActionItem(
                    text=item["text"],
                    owner=str(item.get("owner") or ""),
                    due=str(item.get("due") or ""),
                    quote=item["quote"],
                )
            )
    decisions = [d for d in data.get("decisions") or [] if stated(d)]
    keywords = [str(k) for k in data.get("keywords") or [] if isinstance(k, str | int | float)]
    return gpu_pb2.SummarizeResponse(
        summary=data["summary"].strip(),
        action_items=items,
        keywords=keywords,
        engine=engine,
        decisions=decisions,
    )


class OpenAICompatibleSummarizer:
    """Summaries from an OpenAI-compatible `/chat/completions` endpoint (vLLM, llama.cpp...)."""

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: SecretStr | None = None,
        timeout_s: float = 60.0,
        default_sentences: int = 4,
    ) -> None:
        """Creates the backend; no connection is made until the first call.

        Args:
            base_url: Server base URL including the API prefix, e.g. "http://gpu:8000/v1".
            model: Model name the server knows.
            api_key: Bearer token, if the server needs one (never logged).
            timeout_s: Total time allowed per call.
            default_sentences: Summary length when the caller gives 0.
        """
        self.name = f"llm:{model}"
        self._url = base_url.rstrip("/") + "/chat/completions"
        self._model = model
        self._api_key = api_key
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._default_sentences = default_sentences

    async def summarize(
        self, lines: Sequence[gpu_pb2.TranscriptLine], language: str, max_sentences: int
    ) -> gpu_pb2.SummarizeResponse:
        """Asks the server for a summary.

        Args:
            lines: The transcript in order.
            language: BCP-47 code, or "".
            max_sentences: Most sentences; 0 means the default.

        Returns:
            The server's summary.

        Raises:
            SummaryBackendError: The server is unreachable, answered with an error, or its
                answer is not the JSON asked for.
        """
        sentences = max_sentences or self._default_sentences
        prompt = _SYSTEM_PROMPT.replace("N sentences", f"{sentences} sentences")
        if language:
            prompt += f" Write in the transcript's language ({language})."
        body: dict[str, Any] = {
            "model": self._model,
            "temperature": 0,
            "response_format": {
                "type": "json_schema",
                "json_schema": {
                    "name": "meeting_summary",
                    "strict": True,
                    "schema": SUMMARY_SCHEMA,
                },
            },
            "messages": [
                {"role": "system", "content": prompt},
                {"role": "user", "content": _format_transcript(lines)},
            ],
        }
        headers = {}
        if self._api_key is not None:
            headers["Authorization"] = f"Bearer {self._api_key.get_secret_value()}"
        try:
            async with (
                aiohttp.ClientSession(timeout=self._timeout) as session,
                session.post(self._url, json=body, headers=headers) as response,
            ):
                if response.status != 200:
                    raise SummaryBackendError(f"server answered HTTP {response.status}")
                payload = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, json.JSONDecodeError) as exc:
            raise SummaryBackendError(f"{type(exc).__name__}: {exc}") from None
        try:
            content = payload["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise SummaryBackendError("answer is not a chat completion") from None
        if not isinstance(content, str):
            raise SummaryBackendError("answer has no text content")
        return parse_llm_answer(content, self.name, lines)


class FallbackSummarizer:
    """Asks `primary` and falls back to `fallback` whenever the primary fails."""

    def __init__(self, primary: SummarizationEngine, fallback: SummarizationEngine) -> None:
        """Creates the pair.

        Args:
            primary: Tried first (typically the LLM backend).
            fallback: Used when the primary fails (typically the extractive summarizer).
        """
        self.name = f"{primary.name}|{fallback.name}"
        self._primary = primary
        self._fallback = fallback

    async def summarize(
        self, lines: Sequence[gpu_pb2.TranscriptLine], language: str, max_sentences: int
    ) -> gpu_pb2.SummarizeResponse:
        """Summarizes with the primary backend, else the fallback.

        Args:
            lines: The transcript in order.
            language: BCP-47 code, or "".
            max_sentences: Most sentences; 0 means the default.

        Returns:
            The summary; `engine` names the backend that wrote it.
        """
        if not lines:
            return await self._fallback.summarize(lines, language, max_sentences)
        try:
            return await self._primary.summarize(lines, language, max_sentences)
        except SummaryBackendError as exc:
            logger.warning(
                "summary backend failed; using the fallback",
                backend=self._primary.name,
                fallback=self._fallback.name,
                error=str(exc),
            )
            return await self._fallback.summarize(lines, language, max_sentences)
