"""The mock recognizer, paced in batch mode like a GPU that decodes N times faster than
real time, so a transcription holds its decoding slot for a while (the mock alone finishes
a long upload at once). Live streams pass through unpaced: their audio is paced by the
speaker already.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from gen.gpu.v1 import gpu_pb2
from gpu_node.engines.base import SAMPLE_RATE, Audio, RecognitionEngine, SegmentBatch


class PacedBatchRecognizer:
    """Wraps a recognizer; batch audio is taken at most `speed` times real time.

    Args:
        inner: The recognizer (the mock engine).
        speed: Seconds of batch audio taken per second.
    """

    def __init__(self, inner: RecognitionEngine, speed: float) -> None:
        self.name = inner.name
        self.languages = inner.languages
        self.translates = inner.translates
        self.takes_vocabulary = inner.takes_vocabulary
        self._inner = inner
        self._speed = speed

    def recognize(
        self, config: gpu_pb2.RecognitionConfig, audio: AsyncIterator[Audio]
    ) -> AsyncIterator[SegmentBatch]:
        """Recognizes as the inner engine does, batch audio paced (see the class)."""
        if config.mode == gpu_pb2.RECOGNITION_MODE_LIVE:
            return self._inner.recognize(config, audio)
        return self._inner.recognize(config, self._paced(audio))

    async def _paced(self, audio: AsyncIterator[Audio]) -> AsyncIterator[Audio]:
        loop = asyncio.get_running_loop()
        started = loop.time()
        taken = 0
        async for chunk in audio:
            taken += len(chunk)
            await asyncio.sleep(max(0.0, started + taken / SAMPLE_RATE / self._speed - loop.time()))
            yield chunk
