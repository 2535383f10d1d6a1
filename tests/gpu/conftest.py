from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

import grpc
import numpy as np
import pytest

from gen.gpu.v1 import gpu_pb2
from gpu_proxy.client import GpuStubs, connect
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


def finals(responses: Sequence[gpu_pb2.RecognizeResponse]) -> list[gpu_pb2.RecognizedSegment]:
    return [r.segment for r in responses if r.segment.is_final]


async def eventually(condition: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    """Waits for a condition that another task makes true (polling, bounded)."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)
    assert condition(), what


class Gate:
    """A request stream the test feeds by hand: push() messages, end() it."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[object] = asyncio.Queue()

    def push(self, message: object) -> None:
        self._queue.put_nowait(message)

    def end(self) -> None:
        self._queue.put_nowait(None)

    async def __aiter__(self) -> AsyncIterator[object]:
        while (message := await self._queue.get()) is not None:
            yield message
