"""`live_latency`: a WebSocket audio chunk in, its segment out over SSE (mock engine).

Audio is paced in real time in 100 ms frames: utterances (tones) each followed by a pause.
The mock engine ends an utterance after 300 ms of silence, so the earliest moment a final
segment can exist is when the frame holding that 300th millisecond was sent; the latency of
each utterance is from that send to its final segment arriving on the meeting's SSE stream.

LiveTranscribe is being built while this is written: when the service answers UNIMPLEMENTED
(WebSocket close 4501) the scenario reports "not available" rather than a figure.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time

import aiohttp
import numpy as np

from bench.context import BenchContext
from bench.loadgen import percentile
from bench.model import Check, Result, unavailable

NAME = "live_latency"
UNIT = "ms (p99)"
GOAL = "p99 < 150 ms"
P99_LIMIT_MS = 150.0
SAMPLE_RATE = 16_000
FRAME_S = 0.1
END_SILENCE_S = 0.3  # the mock engine's end of utterance
UNIMPLEMENTED_CLOSE = 4501


def _utterances(count: int) -> tuple[bytes, list[float]]:
    """Audio of `count` utterances (1.2 s tone, 0.8 s pause) and when each one can end."""
    speech = 0.3 * np.sin(2 * np.pi * 200.0 * np.arange(int(1.2 * SAMPLE_RATE)) / SAMPLE_RATE)
    pause = np.zeros(int(0.8 * SAMPLE_RATE))
    audio = np.concatenate([np.concatenate([speech, pause]) for _ in range(count)])
    ends = [k * 2.0 + 1.2 + END_SILENCE_S for k in range(count)]
    return bytes((audio * 32767).astype("<i2").tobytes()), ends


async def _finals(
    http: aiohttp.ClientSession, url: str, headers: dict[str, str], count: int
) -> list[float]:
    arrivals: list[float] = []
    async with http.get(url, headers=headers) as response:
        response.raise_for_status()
        async for line in response.content:
            if not line.startswith(b"data: "):
                continue
            event = json.loads(line[6:])
            if event.get("segment", {}).get("final"):
                arrivals.append(time.time())
                if len(arrivals) == count:
                    return arrivals
    return arrivals


async def _refusal(ws: aiohttp.ClientWebSocketResponse) -> int | None:
    """The close code when the service refuses the call at once (after its error frame)."""
    while True:
        try:
            message = await ws.receive(timeout=3)
        except TimeoutError:
            return None  # no refusal: the session is running
        if message.type == aiohttp.WSMsgType.TEXT:
            body = json.loads(message.data)
            if "error" in body:
                continue  # the error body precedes the close frame
            return None
        if message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
            return int(message.data or ws.close_code or 0)
        return None


async def live_latency(context: BenchContext) -> Result:
    """Final-segment latency of live audio through gateway, meeting_service and the GPU path."""
    count = 5 if context.quick else 20
    authorization = context.authorization()
    headers = {"Authorization": authorization}
    pki = context.pki()
    async with (
        context.service("gpu_node", pki_dir=str(pki)) as node,
        context.service("gpu_proxy", pki_dir=str(pki), nodes=[node.address]) as proxy,
        context.meeting_and_gateway(gpu_proxy_target=proxy.address, pki_dir=str(pki)) as (
            _,
            gateway,
            _,
        ),
        aiohttp.ClientSession() as http,
    ):
        async with http.post(
            f"{gateway.url}/v1/meetings", json={"title": "live"}, headers=headers
        ) as created:
            created.raise_for_status()
            meeting_id = (await created.json())["meeting"]["id"]
        base = f"{gateway.url}/v1/meetings/{meeting_id}"
        audio, ends = _utterances(count)
        frame = int(FRAME_S * SAMPLE_RATE) * 2
        async with http.ws_connect(f"{base}/live?sample_rate={SAMPLE_RATE}", headers=headers) as ws:
            with contextlib.suppress(ConnectionError, aiohttp.ClientError):
                # The service may refuse the call before any audio; the close code says why.
                await ws.send_bytes(audio[:frame])
            code = await _refusal(ws)
            if code == UNIMPLEMENTED_CLOSE:
                return unavailable(
                    NAME,
                    UNIT,
                    GOAL,
                    "not available: meeting_service answers LiveTranscribe with UNIMPLEMENTED "
                    "(WebSocket close 4501); the live path is still being built",
                )
            if code is not None:
                raise RuntimeError(f"the live socket closed at once with code {code}")
            listener = asyncio.create_task(_finals(http, f"{base}/events", headers, count))
            started = time.time() - FRAME_S
            sent_at: list[float] = []
            for offset in range(frame, len(audio), frame):
                await asyncio.sleep(max(0.0, started + offset / 2 / SAMPLE_RATE - time.time()))
                await ws.send_bytes(audio[offset : offset + frame])
                sent_at.append(time.time())
            await ws.send_str(json.dumps({"type": "end"}))
            arrivals = await asyncio.wait_for(listener, 60)
    frame_s = frame / 2 / SAMPLE_RATE

    def sent(when_s: float) -> float:
        index = min(len(sent_at) - 1, max(0, int(np.ceil(when_s / frame_s)) - 2))
        return sent_at[index]

    latencies = [max(0.0, (a - sent(e)) * 1000) for a, e in zip(arrivals, ends, strict=False)]
    p50, p99 = round(percentile(latencies, 50), 1), round(percentile(latencies, 99), 1)
    checks = [
        Check("p99 latency", f"{p99} ms", f"< {P99_LIMIT_MS:g} ms", p99 < P99_LIMIT_MS),
        Check("finals received", f"{len(arrivals)}/{count}", "all", len(arrivals) == count),
    ]
    return Result(
        name=NAME,
        value=p99,
        unit=UNIT,
        reference=None,
        ratio=None,
        goal=GOAL,
        met=all(c.met for c in checks),
        checks=checks,
        details={"utterances": count, "p50_ms": p50, "frame_ms": FRAME_S * 1000},
        limits="the mock engine's 300 ms end-of-utterance rule is not counted in the latency.",
    )
