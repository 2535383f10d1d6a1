"""The seam between gpu_node's servicers and the engines that do the work.

A servicer turns gRPC streams into these calls; an engine knows nothing of gRPC. Audio is
16 kHz mono float32 in [-1, 1] (`numpy.ndarray`), already decoded from LINEAR16 by the
servicer. Results are the `gpu.v1` messages themselves, so nothing is translated twice.
Recognition hands over its segments in batches of those ready at once, so a stream's
responses are as few as its engine allows without delaying any segment.

Engines are created once per process by `gpu_node.engines.factory` and shared by every
call; an engine that cannot run calls concurrently bounds itself.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Protocol

import numpy as np
import numpy.typing as npt

from gen.gpu.v1 import gpu_pb2

SAMPLE_RATE = 16_000

Audio = npt.NDArray[np.float32]

# Segment versions that became ready together; the servicer sends them as one response.
SegmentBatch = Sequence[gpu_pb2.RecognizedSegment]


class RecognitionEngine(Protocol):
    """Speech recognition: audio chunks in, segment versions out.

    Attributes:
        name: The engine's label ("whisper:tiny.en").
        languages: The languages it transcribes, as BCP-47 primary subtags ("en").
        translates: Whether its model can translate speech into English.
        takes_vocabulary: Whether it uses `RecognitionConfig.vocabulary`.
    """

    name: str
    languages: Sequence[str]
    translates: bool
    takes_vocabulary: bool

    def recognize(
        self, config: gpu_pb2.RecognitionConfig, audio: AsyncIterator[Audio]
    ) -> AsyncIterator[SegmentBatch]:
        """Recognizes speech as audio arrives.

        Args:
            config: The stream's settings (language, mode, interim results, start offset).
            audio: Chunks of 16 kHz mono float32 audio, of any length, in order; the
                iterator ends when the caller has sent everything.

        Returns:
            An async iterator of batches, each the segment versions that became ready at
            the same moment (never empty), yielded as soon as they exist: no segment
            waits for another to fill a batch. Over the stream: partial versions (when
            asked) and then the final one with the same `segment_index`; indexes count
            from 0 in time order and are the same for the same audio.
        """
        ...


class DiarizationEngine(Protocol):
    """Speaker diarization over a whole recording."""

    name: str

    async def diarize(
        self, config: gpu_pb2.DiarizationConfig, audio: AsyncIterator[Audio]
    ) -> gpu_pb2.DiarizeResponse:
        """Labels who spoke when.

        Args:
            config: Speaker count hints and the spans to label.
            audio: The whole recording, 16 kHz mono float32, in chunks as it arrives (an
                engine may start on the spans whose audio is there before the rest).

        Returns:
            Turns in time order (as the contract says): one per span in `config.spans`,
            with `span_index` pointing back to it, or turns the engine found itself
            (`span_index` -1) when no spans were given; labels "SPEAKER_1"... in order of
            first appearance.
        """
        ...


class SummarizationEngine(Protocol):
    """Summaries, action items and keywords from a transcript."""

    name: str

    async def summarize(
        self, lines: Sequence[gpu_pb2.TranscriptLine], language: str, max_sentences: int
    ) -> gpu_pb2.SummarizeResponse:
        """Summarizes a transcript.

        Args:
            lines: The transcript in order.
            language: BCP-47 code, or "" when unknown.
            max_sentences: Most sentences in the summary; 0 means the engine's default.

        Returns:
            Summary text, action items, keywords and the engine's name.
        """
        ...


async def in_blocks(audio: Audio, block_samples: int) -> AsyncIterator[Audio]:
    """Hands recorded audio to an engine in blocks, as a stream would bring it.

    Args:
        audio: The samples.
        block_samples: Samples per block (the last may be shorter).

    Yields:
        Views of `audio`, in order.
    """
    for start in range(0, len(audio), block_samples):
        yield audio[start : start + block_samples]


async def all_segments(
    batches: AsyncIterator[SegmentBatch],
) -> list[gpu_pb2.RecognizedSegment]:
    """Reads `recognize`'s batches to their end: every segment, in order."""
    return [segment async for batch in batches for segment in batch]


async def joined(audio: AsyncIterator[Audio]) -> Audio:
    """Reads a stream of audio to its end and returns it as one array."""
    chunks = [chunk async for chunk in audio]
    return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)


def pcm16_to_float(data: bytes) -> Audio:
    """Converts LINEAR16 (little-endian int16) bytes to float32 samples in [-1, 1].

    Args:
        data: Raw PCM; an odd trailing byte is the caller's to carry over.

    Returns:
        The samples.
    """
    return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0
