"""`summaries`: precision and recall of decisions and action items, before and after.

Every engine summarizes the scripted meetings of `bench/scripted_meetings.py` and is scored
against their truth. A found action item is right when its owner and due phrase are the
truth's and its text holds the truth's key phrase; a found decision is right when it holds
a truth's key phrase. Engines:

- `before`: the extractive engine of the round's start, `gpu_node/engines/
  summaries_extractive.py` at commit `BEFORE_COMMIT`, taken with `git show` into the run's
  scratch directory and imported from there (it needs only numpy and `gen/`);
- `now`: the current extractive engine;
- `llm`: the OpenAI-compatible backend alone, when `MESH_SUMMARY_LLM_URL` is set (with
  `MESH_SUMMARY_LLM_MODEL` and the other settings of `RealEngineSettings`); a meeting whose
  call fails counts as nothing found.

The fallback is checked against a stub endpoint on loopback in the same run: an HTTP error,
an answer that is not JSON and an unreachable server each give the extractive summary, and
an answer whose quotes are not in the transcript loses those quotes.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from aiohttp import web

from bench.context import BenchContext
from bench.model import Check, Result, ratio
from bench.scripted_meetings import MEETINGS, ScriptedMeeting
from gen.gpu.v1 import gpu_pb2
from gpu_node.engines.base import SummarizationEngine
from gpu_node.engines.real_settings import RealEngineSettings
from gpu_node.engines.summaries import (
    FallbackSummarizer,
    OpenAICompatibleSummarizer,
    SummaryBackendError,
)
from gpu_node.engines.summaries_extractive import ExtractiveSummarizer
from mesh_common.ports import free_port

BEFORE_COMMIT = "c8248c8"
_BEFORE_PATH = "gpu_node/engines/summaries_extractive.py"
_REPO = Path(__file__).resolve().parents[2]
_INVENTED = "We decided to cancel the whole project."


def _lines(meeting: ScriptedMeeting) -> list[gpu_pb2.TranscriptLine]:
    return [gpu_pb2.TranscriptLine(speaker=s, text=t) for s, t in meeting.lines]


def _counts(meeting: ScriptedMeeting, found: gpu_pb2.SummarizeResponse | None) -> list[int]:
    """[items found, items right, items true, decisions found, right, true]."""
    items = [] if found is None else found.action_items
    decisions = [] if found is None else [d.lower() for d in found.decisions]
    got = [(i.owner, i.due.lower(), i.text.lower()) for i in items]
    right_items = sum(
        any(o == t.owner and d == t.due and t.key in text for o, d, text in got)
        for t in meeting.items
    )
    right_decisions = sum(any(key in d for d in decisions) for key in meeting.decisions)
    return [
        len(got),
        right_items,
        len(meeting.items),
        len(decisions),
        right_decisions,
        len(meeting.decisions),
    ]


def _score(
    meetings: Sequence[ScriptedMeeting], found: Sequence[gpu_pb2.SummarizeResponse | None]
) -> dict[str, float]:
    totals = [sum(column) for column in zip(*map(_counts, meetings, found), strict=True)]
    items_found, items_right, items_true, dec_found, dec_right, dec_true = totals
    right, true, got = items_right + dec_right, items_true + dec_true, items_found + dec_found
    precision, recall = right / max(got, 1), right / true
    return {
        "items_precision": round(items_right / max(items_found, 1), 2),
        "items_recall": round(items_right / items_true, 2),
        "decisions_precision": round(dec_right / max(dec_found, 1), 2),
        "decisions_recall": round(dec_right / dec_true, 2),
        "f1": round(2 * precision * recall / max(precision + recall, 1e-9), 3),
    }


async def _summaries(
    engine: SummarizationEngine, meetings: Sequence[ScriptedMeeting]
) -> list[gpu_pb2.SummarizeResponse | None]:
    found: list[gpu_pb2.SummarizeResponse | None] = []
    for meeting in meetings:
        try:
            found.append(await engine.summarize(_lines(meeting), "en", 3))
        except SummaryBackendError:
            found.append(None)
    return found


def _scores(found: Sequence[gpu_pb2.SummarizeResponse | None]) -> dict[str, dict[str, float]]:
    """Scores over every meeting, the tuned ones and the held-out ones."""
    sets = {
        "all": [True] * len(MEETINGS),
        "tuned": [m.tuned for m in MEETINGS],
        "held_out": [not m.tuned for m in MEETINGS],
    }
    return {
        name: _score(
            [m for m, keep in zip(MEETINGS, mask, strict=True) if keep],
            [f for f, keep in zip(found, mask, strict=True) if keep],
        )
        for name, mask in sets.items()
    }


async def _before_engine(scratch: Path) -> SummarizationEngine | None:
    """The extractive engine at `BEFORE_COMMIT`, imported from a `git show` of its module.

    None in a clone without that commit (a shallow one): the scenario then scores only now.
    """
    process = await asyncio.create_subprocess_exec(
        "git",
        "-C",
        str(_REPO),
        "show",
        f"{BEFORE_COMMIT}:{_BEFORE_PATH}",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    source, _ = await process.communicate()
    if process.returncode != 0:
        return None
    path = scratch / "summaries_extractive_before.py"
    path.write_bytes(source)
    spec = importlib.util.spec_from_file_location("bench_summaries_before", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    engine: SummarizationEngine = module.ExtractiveSummarizer()
    return engine


def _invented_answer(meeting: ScriptedMeeting) -> str:
    """An answer with one quote of the transcript and one of nothing said, of each kind."""
    real = meeting.lines[0][1]
    item = {"text": "do it", "owner": meeting.lines[0][0], "due": ""}
    return json.dumps(
        {
            "summary": real,
            "decisions": [real, _INVENTED],
            "action_items": [{**item, "quote": real}, {**item, "quote": _INVENTED}],
            "keywords": [],
        }
    )


@contextlib.asynccontextmanager
async def _stub_llm() -> AsyncIterator[str]:
    """A chat-completions stub on loopback; yields its base URL.

    `/error/v1` answers HTTP 500, `/prose/v1` a chat completion that is not JSON, and
    `/invented/v1` the meeting's first line and an invented sentence as quotes.
    """

    async def answer(request: web.Request) -> web.Response:
        kind = request.match_info["kind"]
        if kind == "error":
            return web.Response(status=500, text="model crashed")
        body = await request.json()
        said = body["messages"][-1]["content"]
        meeting = next(m for m in MEETINGS if said == "\n".join(f"{s}: {t}" for s, t in m.lines))
        content = "Here is a summary of the meeting." if kind == "prose" else ""
        if kind == "invented":
            content = _invented_answer(meeting)
        return web.json_response({"choices": [{"message": {"content": content}}]})

    app = web.Application()
    app.router.add_post("/{kind}/v1/chat/completions", answer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def _fallback_checks(extractive: ExtractiveSummarizer) -> list[Check]:
    expected = [
        (await extractive.summarize(_lines(m), "en", 3)).SerializeToString() for m in MEETINGS
    ]
    checks = []
    async with _stub_llm() as stub:
        failing = {
            "HTTP 500": f"{stub}/error/v1",
            "an answer that is not JSON": f"{stub}/prose/v1",
            "an unreachable server": f"http://127.0.0.1:{free_port()}/v1",
        }
        for what, url in failing.items():
            engine = FallbackSummarizer(
                OpenAICompatibleSummarizer(url, "stub", timeout_s=10), extractive
            )
            found = await _summaries(engine, MEETINGS)
            same = sum(
                f is not None and f.SerializeToString() == e
                for f, e in zip(found, expected, strict=True)
            )
            checks.append(
                Check(
                    f"fallback on {what}: extractive summary",
                    f"{same}/{len(MEETINGS)} meetings",
                    f"{len(MEETINGS)}/{len(MEETINGS)}",
                    same == len(MEETINGS),
                )
            )
        llm = OpenAICompatibleSummarizer(f"{stub}/invented/v1", "stub", timeout_s=10)
        found = await _summaries(llm, MEETINGS)
    kept = sum(
        (len(f.decisions), len(f.action_items)) == (1, 1)
        and _INVENTED not in list(f.decisions) + [i.quote for i in f.action_items]
        for f in found
        if f is not None
    )
    checks.append(
        Check(
            "LLM answer quoting what was not said: the invented quotes dropped, the real kept",
            f"{kept}/{len(MEETINGS)} meetings",
            f"{len(MEETINGS)}/{len(MEETINGS)}",
            kept == len(MEETINGS),
        )
    )
    return checks


async def _llm_scores() -> tuple[dict[str, Any], str]:
    """The LLM backend's scores when `MESH_SUMMARY_LLM_URL` is set, and a sentence on it."""
    settings = RealEngineSettings()
    if not os.environ.get("MESH_SUMMARY_LLM_URL") or not settings.summary_llm_url:
        return {}, (
            "the LLM summarizer was not measured: MESH_SUMMARY_LLM_URL is not set (no "
            "instruction-tuned model and no OpenAI-compatible server installs offline here)"
        )
    engine = OpenAICompatibleSummarizer(
        settings.summary_llm_url,
        settings.summary_llm_model,
        api_key=settings.summary_llm_api_key,
        timeout_s=settings.summary_llm_timeout_s,
    )
    found = await _summaries(engine, MEETINGS)
    failed = sum(f is None for f in found)
    scores: dict[str, Any] = {"llm_model": settings.summary_llm_model, "llm_failed": failed}
    for subset, figures in _scores(found).items():
        scores.update({f"llm_{subset}_{k}": v for k, v in figures.items()})
    return scores, f"the LLM summarizer ({settings.summary_llm_model}) answered at temperature 0"


async def summaries(context: BenchContext) -> Result:
    """Scores before, now and (when configured) the LLM; checks the fallback (quick: same)."""
    extractive = ExtractiveSummarizer()
    before_engine = await _before_engine(context.workdir)
    before = None if before_engine is None else _scores(await _summaries(before_engine, MEETINGS))
    now = _scores(await _summaries(extractive, MEETINGS))
    details: dict[str, Any] = {
        "meetings": len(MEETINGS),
        "held_out_meetings": sum(not m.tuned for m in MEETINGS),
        "before_commit": BEFORE_COMMIT,
    }
    for engine, scores in (("before", before or {}), ("now", now)):
        for subset, figures in scores.items():
            details.update({f"{engine}_{subset}_{k}": v for k, v in figures.items()})
    llm, llm_note = await _llm_scores()
    details.update(llm)
    checks = [*await _fallback_checks(extractive)]
    if before is not None:
        checks.insert(
            0,
            Check(
                "F1 of decisions and action items, held-out meetings: now vs before",
                f"{now['held_out']['f1']} vs {before['held_out']['f1']}",
                ">= before",
                now["held_out"]["f1"] >= before["held_out"]["f1"],
            ),
        )
    else:
        llm_note += f"; before was not scored: commit {BEFORE_COMMIT} is not in this clone"
    return Result(
        name="summaries",
        value=now["all"]["f1"],
        unit=f"F1 (decisions + action items, {len(MEETINGS)} scripted meetings)",
        reference=None if before is None else before["all"]["f1"],
        ratio=None if before is None else ratio(now["all"]["f1"], before["all"]["f1"]),
        goal="better than before on held-out meetings; every LLM failure falls back; "
        "no invented quote kept",
        met=all(c.met for c in checks),
        checks=checks,
        details=details,
        limits=(
            "seven short scripted English meetings with clean text (no recognition errors); "
            "three were written beside the rules, so `tuned` is an upper bound and "
            f"`held_out` the fairer figure; {llm_note}."
        ),
    )
