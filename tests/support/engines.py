"""Driving the real engines in tests: their type, audio fed in chunks, durations."""

from __future__ import annotations

from collections.abc import AsyncIterator

import numpy as np

from gpu_node.engines.base import DiarizationEngine, RecognitionEngine, SummarizationEngine
from tests.support.speech import SAMPLE_RATE

Engines = tuple[RecognitionEngine, DiarizationEngine, SummarizationEngine]


async def chunked(
    audio: np.ndarray, chunk_s: float = 0.5, fed: list[int] | None = None
) -> AsyncIterator[np.ndarray]:
    """Yields audio in chunks; `fed[0]` tracks how many samples were handed over."""
    step = int(chunk_s * SAMPLE_RATE)
    for start in range(0, len(audio), step):
        chunk = audio[start : start + step]
        if fed is not None:
            fed[0] = start + len(chunk)
        yield chunk


def seconds(duration: object) -> float:
    return duration.seconds + duration.nanos / 1e9  # type: ignore[attr-defined,no-any-return]
