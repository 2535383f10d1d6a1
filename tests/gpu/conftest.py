from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2

from gen.gpu.v1 import gpu_pb2
from gpu_client.channel import GpuStubs, connect
from mesh_common.tls import channel_credentials
from tests.support.gpu import Pki, chunks, make_pki, pcm16

WAIT = 20.0  # generous bound for conditions that normally hold within milliseconds


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def fresh_pki(tmp_path: Path) -> Pki:
    """Certificates a test may overwrite (reload tests)."""
    return make_pki(tmp_path)


def stubs(pki: Pki, target: str) -> tuple[grpc.aio.Channel, GpuStubs]:
    channel = connect(target, pki.client, pki.ca.cert)
    return channel, GpuStubs.of(channel)


async def recognize_requests(
    audio: np.ndarray, chunk_bytes: int = 16_000, config: gpu_pb2.RecognitionConfig | None = None
) -> AsyncIterator[gpu_pb2.RecognizeRequest]:
    yield gpu_pb2.RecognizeRequest(config=config or gpu_pb2.RecognitionConfig())
    for piece in chunks(pcm16(audio), chunk_bytes):
        yield gpu_pb2.RecognizeRequest(audio=piece)


async def recognize(
    gpu: GpuStubs, audio: np.ndarray, chunk_bytes: int = 16_000, **config: object
) -> list[gpu_pb2.RecognizeResponse]:
    call = gpu.recognition.Recognize(
        recognize_requests(audio, chunk_bytes, gpu_pb2.RecognitionConfig(**config)),  # type: ignore[arg-type]
        timeout=WAIT,
    )
    return [response async for response in call]


def stubs_without_retries(pki: Pki, target: str) -> tuple[grpc.aio.Channel, GpuStubs]:
    """A channel without the client's retry policy: each call is exactly one proxy call."""
    channel = grpc.aio.secure_channel(
        target, channel_credentials(pki.client, pki.ca.cert), options=[("grpc.enable_retries", 0)]
    )
    return channel, GpuStubs.of(channel)


def finals(responses: Sequence[gpu_pb2.RecognizeResponse]) -> list[gpu_pb2.RecognizedSegment]:
    return [r.segment for r in responses if r.segment.is_final]


async def eventually(condition: Callable[[], bool], what: str) -> None:
    """Waits (bounded by WAIT) for in-process state that another task changes.

    The servers expose no event for these test-only questions ("is the stream placed on
    a node yet?"), so this polls; it never assumes that time passing made anything true.
    """
    try:
        async with asyncio.timeout(WAIT):
            while not condition():  # noqa: ASYNC110 - no event to wait on; see docstring
                await asyncio.sleep(0.01)
    except TimeoutError:
        raise AssertionError(f"not within {WAIT} s: {what}") from None


async def wait_health(channel: grpc.aio.Channel, status: int) -> None:
    """Waits (bounded by WAIT) until a server's overall health is `status`, via Watch."""
    watch = channel.unary_stream(
        "/grpc.health.v1.Health/Watch",
        request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
        response_deserializer=health_pb2.HealthCheckResponse.FromString,
    )
    call = watch(health_pb2.HealthCheckRequest(service=""), timeout=WAIT)
    async for response in call:
        if response.status == status:
            call.cancel()
            return
    raise AssertionError(f"health never became {status}")


class Gate[T]:
    """A request stream the test feeds by hand: push() messages, end() it."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[T | None] = asyncio.Queue()

    def push(self, message: T) -> None:
        self._queue.put_nowait(message)

    def end(self) -> None:
        self._queue.put_nowait(None)

    async def __aiter__(self) -> AsyncIterator[T]:
        while (message := await self._queue.get()) is not None:
            yield message
