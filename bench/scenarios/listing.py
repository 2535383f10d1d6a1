"""`list_latency`: listing and getting meetings with 100,000 of them in the database.

One user owns 100,000 meetings (quick: 10,000), inserted straight into the run's database
(one statement, spread one second apart in creation time, then ANALYZE). Through the
gateway, in sequence (one request in flight, so the figure is latency, not throughput):
the first page of `ListMeetings`, then every page to page 1,000 by following the page
tokens (page size 100; quick: 10), then the first page and page 1,000 again alternately,
and GetMeeting on random meetings. Keyset pages cost the same wherever they are: page
1,000's latency over the first page's is the figure.
"""

from __future__ import annotations

import random
import statistics
import time

import aiohttp
import asyncpg

from bench.context import BenchContext
from bench.loadgen import percentile
from bench.model import Check, Result, ratio

NAME = "list_latency"
PAGES = 1000
GOAL_RATIO = 1.5


async def _timed_get(
    http: aiohttp.ClientSession, url: str, headers: dict[str, str]
) -> tuple[float, dict[str, object]]:
    started = time.perf_counter()
    async with http.get(url, headers=headers) as response:
        body = await response.json()
        if response.status != 200:
            raise RuntimeError(f"GET {url} answered {response.status}: {body}")
    return (time.perf_counter() - started) * 1000, body


def _summary(latencies: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(percentile(latencies, 50), 2),
        "p99_ms": round(percentile(latencies, 99), 2),
    }


async def list_latency(context: BenchContext) -> Result:
    """First page vs. page 1,000 (by tokens), and GetMeeting, over 100,000 meetings."""
    rows, page_size, samples = (10_000, 10, 100) if context.quick else (100_000, 100, 300)
    headers = {"Authorization": context.authorization()}
    async with (
        context.meeting_and_gateway() as (_, gateway, dsn),
        aiohttp.ClientSession() as http,
    ):
        async with http.post(
            f"{gateway.url}/v1/meetings", json={"title": "first"}, headers=headers
        ) as created:
            created.raise_for_status()
        conn = await asyncpg.connect(dsn)
        try:
            owner = await conn.fetchval("SELECT owner FROM meetings LIMIT 1")
            await conn.execute(
                """
                INSERT INTO meetings (id, owner, title, status, create_time, update_time)
                SELECT gen_random_uuid(), $1, 'meeting ' || g, 1,
                       now() - g * interval '1 second', now() - g * interval '1 second'
                FROM generate_series(1, $2) AS g
                """,
                owner,
                rows - 1,
            )
            await conn.execute("ANALYZE meetings")
            ids = [str(r["id"]) for r in await conn.fetch("SELECT id FROM meetings")]
        finally:
            await conn.close()
        base = f"{gateway.url}/v1/meetings?page_size={page_size}"
        walk: list[float] = []
        token = ""
        for _ in range(PAGES):
            url = f"{base}&page_token={token}" if token else base
            latency, body = await _timed_get(http, url, headers)
            walk.append(latency)
            last_token = token
            token = str(body.get("nextPageToken", ""))
            if not token:
                break
        if len(walk) < PAGES:
            raise RuntimeError(f"only {len(walk)} pages of {page_size} for {rows} meetings")
        deep_url = f"{base}&page_token={last_token}"
        first: list[float] = []
        deep: list[float] = []
        for _ in range(samples):
            first.append((await _timed_get(http, base, headers))[0])
            deep.append((await _timed_get(http, deep_url, headers))[0])
        picker = random.Random(19)
        gets = [
            (await _timed_get(http, f"{gateway.url}/v1/meetings/{picker.choice(ids)}", headers))[0]
            for _ in range(samples)
        ]
    first_p50, deep_p50 = statistics.median(first), statistics.median(deep)
    share = ratio(deep_p50, first_p50)
    checks = [
        Check(
            f"page {PAGES} p50 over first page p50",
            f"{share}",
            f"<= {GOAL_RATIO}",
            share is not None and share <= GOAL_RATIO,
        )
    ]
    walk_marks = {
        f"walk_page_{n}_ms": round(statistics.median(walk[max(0, n - 10) : n]), 2)
        for n in (10, 100, 500, PAGES)
    }
    return Result(
        name=NAME,
        value=round(deep_p50, 2),
        unit=f"ms (p50, page {PAGES})",
        reference=round(first_p50, 2),
        ratio=share,
        goal=f"keyset pages flat: page {PAGES} <= {GOAL_RATIO}x the first page",
        met=all(c.met for c in checks),
        checks=checks,
        details={
            "meetings": rows,
            "page_size": page_size,
            "samples": samples,
            "first_page": _summary(first),
            f"page_{PAGES}": _summary(deep),
            "get_meeting": _summary(gets),
            **walk_marks,
        },
        limits=(
            "one request in flight: each figure is the gateway's and meeting_service's "
            "latency for one call (HTTP, gRPC, one index range scan of page_size rows), on "
            "2 cores shared with the bench's own client."
        ),
    )
