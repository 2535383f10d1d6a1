"""What the chaos soak checks at the end, each a `Check` with a verdict and its figures."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Any

import aiohttp

from bench.chaos.faults import CHAOS_KINDS, POSTGRES, Kill
from bench.chaos.sampling import BOUND, Run
from meeting_mesh.client import parse_sse
from tests.support.replica_load import FINAL, Load

_REPLAYS_AT_ONCE = 8
_SHOWN = 5


@dataclass(frozen=True)
class Check:
    """One check of the soak: its name, whether it held, and what was found."""

    name: str
    passed: bool
    detail: str

    def to_json(self) -> dict[str, Any]:
        return {"check": self.name, "passed": self.passed, "detail": self.detail}


def _some(items: list[Any]) -> str:
    shown = ", ".join(str(item) for item in items[:_SHOWN])
    return shown + (f" (+{len(items) - _SHOWN} more)" if len(items) > _SHOWN else "")


async def acknowledged_meetings_exist(load: Load) -> Check:
    """Every meeting whose create was answered 201 is there (GET answers 200)."""
    missing = []
    for meeting_id in load.meetings:
        with contextlib.suppress(AssertionError):
            await load.request("GET", f"/v1/meetings/{meeting_id}", prefer=0)
            continue
        missing.append(meeting_id)
    return Check(
        "every acknowledged meeting exists",
        not missing,
        f"{len(load.meetings) - len(missing)} of {len(load.meetings)}"
        + (f"; missing: {_some(missing)}" if missing else ""),
    )


async def _replay(load: Load, meeting_id: str) -> tuple[list[int], str]:
    """Every event of the meeting from the start, read afresh: sequences, final status."""
    timeout = aiohttp.ClientTimeout(total=60, sock_read=10)
    seen: list[int] = []
    async with load.session.get(
        f"{load.urls[0]}/v1/meetings/{meeting_id}/events", timeout=timeout
    ) as response:
        response.raise_for_status()
        async for event in parse_sse(response.content):
            if event.id:
                seen.append(int(event.id))
            status = str(event.data.get("statusChange", {}).get("status", ""))
            if status in FINAL:
                return seen, status
    return seen, ""


async def transcripts_are_contiguous(load: Load) -> tuple[Check, Check]:
    """Each meeting completed, and its stored events, read afresh, are numbered 1..n."""
    gate = asyncio.Semaphore(_REPLAYS_AT_ONCE)
    replays: dict[str, tuple[list[int], str]] = {}

    async def replay(meeting_id: str) -> None:
        async with gate:
            try:
                replays[meeting_id] = await _replay(load, meeting_id)
            except aiohttp.ClientResponseError as error:
                # Its repr holds the request's headers, the token among them.
                replays[meeting_id] = ([], f"HTTP {error.status}")
            except (aiohttp.ClientError, TimeoutError) as error:
                replays[meeting_id] = ([], type(error).__name__)

    await asyncio.gather(*(replay(m) for m in load.meetings))
    statuses = [status for _, status in replays.values()]
    not_completed = [(m, s) for m, (_, s) in replays.items() if s != "MEETING_STATUS_COMPLETED"]
    completed = {m: seq for m, (seq, s) in replays.items() if s == "MEETING_STATUS_COMPLETED"}
    gaps = [m for m, seq in completed.items() if seq != list(range(1, len(seq) + 1))]
    return (
        Check(
            "every meeting completed",
            not not_completed,
            f"{statuses.count('MEETING_STATUS_COMPLETED')} of {len(statuses)} COMPLETED"
            + (f"; not: {_some(not_completed)}" if not_completed else ""),
        ),
        Check(
            "every completed transcript has contiguous sequences",
            not gaps,
            f"{len(completed) - len(gaps)} of {len(completed)}, "
            f"{sum(len(seq) for seq in completed.values())} events"
            + (f"; gaps in: {_some(gaps)}" if gaps else ""),
        ),
    )


def subscribers_saw_each_once(load: Load) -> Check:
    """Each SSE subscriber saw 1..n exactly once and its final status."""
    wrong = [
        m
        for m in load.meetings
        if load.sequences.get(m, []) != list(range(1, len(load.sequences.get(m, [])) + 1))
        or m not in load.finals
    ]
    total = sum(len(load.sequences.get(m, [])) for m in load.meetings)
    return Check(
        "each SSE subscriber saw each sequence exactly once",
        not wrong,
        f"{len(load.meetings) - len(wrong)} of {len(load.meetings)} subscribers, "
        f"{total} events" + (f"; wrong: {_some(wrong)}" if wrong else ""),
    )


def no_5xx_outside_kill_windows(load: Load, kills: list[Kill]) -> Check:
    """No answer with a 5xx status (or a WebSocket closed as one) outside a kill window."""
    windows = [kill.window for kill in kills]
    fives = [a for a in load.attempts if a.status is not None and a.status >= 500]
    outside = [a for a in fives if not any(s <= a.end and a.start <= e for s, e in windows)]
    return Check(
        "no 5xx outside the kill windows",
        not outside,
        f"{len(fives)} 5xx in kill windows, {len(outside)} outside"
        + (f": {_some([(a.what, a.detail[:120]) for a in outside])}" if outside else ""),
    )


def processes_stayed_bounded(runs: list[Run]) -> Check:
    """Memory and open file descriptors of every process's every run stayed in the bound."""
    verdicts = [(run, *run.verdict()) for run in runs]
    broken = [f"{run.name} (pid {run.pid}): {figures}" for run, ok, figures in verdicts if not ok]
    return Check(
        "memory and open FDs of each process stayed bounded",
        not broken,
        f"{len(runs)} process runs; bound: {BOUND}"
        + (f"; broken: {_some(broken)}" if broken else ""),
    )


def every_kind_killed(kills: list[Kill]) -> Check:
    """Each kind (PostgreSQL too) was killed at least once."""
    killed = {POSTGRES if k.name == POSTGRES else k.name.rsplit("-", 1)[0] for k in kills}
    spared = [kind for kind in CHAOS_KINDS if kind not in killed]
    return Check(
        "every kind was killed at least once",
        not spared,
        f"{len(kills)} kills" + (f"; never killed: {', '.join(spared)}" if spared else ""),
    )


def load_held(errors: list[str]) -> Check:
    """Every operation of the load succeeded within its retries."""
    return Check(
        "every operation succeeded within its retries",
        not errors,
        "; ".join(e[:300] for e in errors[:3]) if errors else "yes",
    )
