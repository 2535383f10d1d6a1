"""Helpers for tests of the gateway: run the real app on 127.0.0.1 port 0.

async with run_gateway(gateway_settings(meeting.address, secret)) as gateway:
    async with aiohttp.ClientSession(gateway.url) as http: ...
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from google.protobuf import duration_pb2
from pydantic import SecretStr

from gateway.app import create_app
from gateway.connections import GatewayRunner
from gateway.settings import GatewaySettings
from gen.meeting.v1 import meeting_pb2
from meeting_mesh.client import SseEvent
from meeting_service.server import RunningMeetingService
from mesh_common.telemetry import Telemetry
from tests.support.meeting import make_token
from tests.support.transcripts import change_status, store_summary


@dataclass(frozen=True)
class RunningGateway:
    """A gateway serving on loopback.

    Attributes:
        app: The aiohttp application.
        port: The bound port.
        url: "http://127.0.0.1:<port>".
    """

    app: web.Application
    port: int
    url: str


def gateway_settings(meeting_target: str, secret: str, **values: Any) -> GatewaySettings:
    """Settings for a test gateway in front of `meeting_target`, on a free port.

    Args:
        meeting_target: meeting_service's "host:port".
        secret: The HS256 signing secret shared with meeting_service.
        **values: Any other setting.

    Returns:
        The settings (the environment is not read for these fields).
    """
    return GatewaySettings(
        gateway_host="127.0.0.1",
        gateway_port=0,
        meeting_service_target=meeting_target,
        jwt_secret=SecretStr(secret),
        **values,
    )


@contextlib.asynccontextmanager
async def run_gateway(
    settings: GatewaySettings, telemetry: Telemetry | None = None
) -> AsyncIterator[RunningGateway]:
    """Runs the gateway for the duration of the block, then stops it as `meeting-mesh
    gateway` does (streams are told to end, then the server closes).

    Args:
        settings: The settings (`gateway_port` 0 binds a free port).
        telemetry: The gateway's telemetry (tests of tracing pass one with an in-memory
            exporter).

    Yields:
        The running gateway.
    """
    app = create_app(settings, telemetry)
    runner = GatewayRunner(app, settings)
    await runner.setup()
    site = web.TCPSite(runner, settings.gateway_host, settings.gateway_port)
    await site.start()
    port = int(runner.addresses[0][1])
    try:
        yield RunningGateway(app, port, f"http://{settings.gateway_host}:{port}")
    finally:
        await runner.cleanup()


def wav_bytes(seconds: float = 1.0, sample_rate: int = 16_000) -> bytes:
    """A small valid WAV: a 440 Hz tone, 16-bit mono.

    Args:
        seconds: Length of the recording.
        sample_rate: Samples per second.

    Returns:
        The file's bytes.
    """
    import io
    import wave

    import numpy as np

    samples = np.arange(int(seconds * sample_rate), dtype=np.float32) / sample_rate
    tone = (np.sin(2 * np.pi * 440.0 * samples) * 8000).astype("<i2")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(sample_rate)
        out.writeframes(tone.tobytes())
    return buffer.getvalue()


def wav_header(data_bytes: int, sample_rate: int = 16_000) -> bytes:
    """The 44-byte header of a 16-bit mono WAV whose samples are `data_bytes` long.

    Lets a test stream a large recording (header, then generated samples) without holding it.

    Args:
        data_bytes: Size of the sample data that follows.
        sample_rate: Samples per second.

    Returns:
        The header.
    """
    import struct

    return (
        b"RIFF"
        + struct.pack("<I", 36 + data_bytes)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, 1, sample_rate, sample_rate * 2, 2, 16)
        + b"data"
        + struct.pack("<I", data_bytes)
    )


async def wait_until(check: Callable[[], Awaitable[bool]], within: float = 30.0) -> None:
    """Asks `check` until it says yes, for state that can only be observed by asking.

    Args:
        check: The question.
        within: Seconds before giving up (TimeoutError); generous, it is a bound, not a
            timing.
    """
    async with asyncio.timeout(within):
        while not await check():  # noqa: ASYNC110 - nothing to wait on but the answer
            await asyncio.sleep(0.05)


HEARTBEAT_S = 0.2


async def start_raw_put(
    gateway: RunningGateway, meeting_id: str, headers: dict[str, str], framing: str, body: bytes
) -> asyncio.StreamWriter:
    """Sends the head of a recording's PUT and `body` on a raw socket, left open.

    The caller drops the connection (`close`) to act as a client that went away midway.

    Args:
        gateway: The gateway.
        meeting_id: The meeting.
        headers: Holds the `Authorization` header.
        framing: The body's framing header line, e.g. "Content-Length: 123".
        body: The bytes sent after the head, already framed.
    """
    _, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    head = (
        f"PUT /v1/meetings/{meeting_id}/audio HTTP/1.1\r\nHost: test\r\n"
        f"Authorization: {headers['Authorization']}\r\nContent-Type: audio/wav\r\n"
        f"{framing}\r\n\r\n"
    )
    writer.write(head.encode() + body)
    await writer.drain()
    return writer


async def resume_upload(
    http: aiohttp.ClientSession,
    meeting_id: str,
    headers: dict[str, str],
    audio: bytes,
    offset_now: Callable[[], Awaitable[int]],
) -> dict[str, Any]:
    """PATCHes the rest of `audio` from the offset the server reports, as a client does.

    A dropped stream may still be storing while the cancellation travels, so a stale
    offset is answered 409 and the offset is asked again (bounded).

    Returns:
        The body of the PATCH that completed the recording.
    """
    for _ in range(50):
        offset = await offset_now()
        async with http.patch(
            f"/v1/meetings/{meeting_id}/audio",
            data=audio[offset:],
            headers={
                **headers,
                "Content-Type": "application/offset+octet-stream",
                "Upload-Offset": str(offset),
            },
        ) as r:
            if r.status == 409:
                continue
            assert r.status == 200, await r.text()
            assert r.headers["Upload-Offset"] == str(len(audio))
            body: dict[str, Any] = await r.json()
            return body
    raise AssertionError("the upload kept answering 409 to the offset it reported")


def route(method: str, path: str, outcome: str) -> pytest.MarkDecorator:
    """Marks a test as exercising a route; outcome is "success" or "failure"."""
    assert outcome in ("success", "failure")
    return pytest.mark.route(method, path, outcome)


def bearer(user: str, **token_args: Any) -> dict[str, str]:
    """The Authorization header of `user`."""
    return {"Authorization": f"Bearer {make_token(user, **token_args)}"}


async def error_of(response: aiohttp.ClientResponse) -> dict[str, Any]:
    """The `error` object of an error response, checked for the shape of docs/errors.md."""
    body = await response.json()
    error: dict[str, Any] = body["error"]
    assert error["code"] == response.status
    assert set(error) == {"code", "status", "message", "details"}
    return error


def reason_of(error: dict[str, Any]) -> str:
    """The ErrorInfo reason of an error object ("" when none)."""
    return next((d.get("reason", "") for d in error["details"]), "")


async def play_pipeline(
    meeting_service: RunningMeetingService, meeting_id: str, texts: list[str]
) -> None:
    """Stores what the processing pipeline would: statuses, segments, a summary, COMPLETED.

    The writes go through meeting_service's own TranscriptWriter, the one the pipeline
    uses, so the gateway sees exactly the events a processed meeting produces.
    """
    writer = meeting_service.services.processing.writer
    mid = uuid.UUID(meeting_id)
    await change_status(meeting_service.services, mid, meeting_pb2.MEETING_STATUS_TRANSCRIBING)
    for index, text in enumerate(texts):
        await writer.append_segment(
            mid,
            meeting_pb2.Segment(
                index=index,
                text=text,
                speaker=f"SPEAKER_{index % 2 + 1}",
                final=True,
                start_offset=duration_pb2.Duration(seconds=index * 2),
                end_offset=duration_pb2.Duration(seconds=index * 2 + 2),
            ),
        )
    await store_summary(
        meeting_service.services, mid, meeting_pb2.Summary(text=" ".join(texts), backend="test")
    )
    await change_status(meeting_service.services, mid, meeting_pb2.MEETING_STATUS_COMPLETED)


async def take_events(
    events: AsyncIterator[SseEvent], count: int, within: float = 30.0
) -> list[SseEvent]:
    """Reads the next `count` events of a stream (bounded by `within` seconds)."""
    taken: list[SseEvent] = []
    async with asyncio.timeout(within):
        async for event in events:
            taken.append(event)
            if len(taken) == count:
                break
    return taken
