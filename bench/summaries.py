"""Precision and recall of the extractive summary's decisions and action items.

Usage: uv run python bench/summaries.py

Three scripted meetings (speakers named, lines cut where a recognizer cuts segments) with
their ground truth: the decisions, and each action item's owner, due phrase and a key
phrase of its text. A found item is right when its owner and due phrase are the truth's
and its text holds the key phrase; a found decision is right when it holds a truth's key
phrase. Prints JSON: precision and recall of each, and what was found.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from gen.gpu.v1 import gpu_pb2
from gpu_node.engines.summaries_extractive import ExtractiveSummarizer

Line = tuple[str, str]
MEETINGS: list[dict[str, Any]] = [
    {
        "lines": [
            ("Priya", "Should we launch on the 15th of March?"),
            ("Tom", "No, the payment service is not ready."),
            ("Priya", "Then we decided the launch is moved to"),
            ("Priya", "the 22nd of March."),
            ("Tom", "I will finish the payment tests."),
            ("Tom", "By Friday."),
            ("Priya", "I'll tell the customers next week."),
            ("Tom", "I should hide them for me."),
        ],
        "decisions": ["22nd of March"],
        "items": [("Tom", "by friday", "payment tests"), ("Priya", "next week", "customers")],
    },
    {
        "lines": [
            ("Ana", "Travel costs doubled this year."),
            ("Ben", "We agreed to cut the travel budget by ten percent."),
            ("Ana", "Ana will draft the new policy."),
            ("Ana", "By Monday."),
            ("Ben", "I'll send the numbers to finance tomorrow."),
            ("Ana", "We could maybe look at cheaper hotels."),
        ],
        "decisions": ["cut the travel budget"],
        "items": [("Ana", "by monday", "draft the new policy"), ("Ben", "tomorrow", "numbers")],
    },
    {
        "lines": [
            ("Chen", "Both candidates were strong."),
            ("Dana", "Let's go with the second candidate."),
            ("Chen", "Chen is going to call her today."),
            ("Dana", "I need to check the references"),
            ("Dana", "before Thursday."),
            ("Chen", "It will rain on Thursday anyway."),
        ],
        "decisions": ["second candidate"],
        "items": [("Chen", "today", "call her"), ("Dana", "before thursday", "references")],
    },
]


async def evaluate() -> dict[str, Any]:
    engine = ExtractiveSummarizer()
    found_items = right_items = truth_items = 0
    found_decisions = right_decisions = truth_decisions = 0
    heard: list[dict[str, Any]] = []
    for meeting in MEETINGS:
        lines = [gpu_pb2.TranscriptLine(speaker=s, text=t) for s, t in meeting["lines"]]
        result = await engine.summarize(lines, "en", 3)
        items = [(i.owner, i.due.lower(), i.text.lower()) for i in result.action_items]
        decisions = list(getattr(result, "decisions", []))
        found_items += len(items)
        truth_items += len(meeting["items"])
        right_items += sum(
            any(o == owner and d == due and key in text for owner, due, text in items)
            for o, d, key in meeting["items"]
        )
        found_decisions += len(decisions)
        truth_decisions += len(meeting["decisions"])
        right_decisions += sum(any(key in d for d in decisions) for key in meeting["decisions"])
        heard.append({"items": items, "decisions": decisions, "summary": result.summary})
    return {
        "action_items": {
            "precision": round(right_items / max(found_items, 1), 2),
            "recall": round(right_items / truth_items, 2),
        },
        "decisions": {
            "precision": round(right_decisions / max(found_decisions, 1), 2),
            "recall": round(right_decisions / truth_decisions, 2),
        },
        "found": heard,
    }


def main() -> None:
    print(json.dumps(asyncio.run(evaluate()), indent=2))


if __name__ == "__main__":
    main()
