"""Speaker diarization: resemblyzer embeddings (numpy) per span, clustered into speakers.

With spans given, each span is embedded as soon as its audio has arrived, beside the
reading of the rest, so a recording's transfer overlaps its embedding; the clustering
waits for every span. Without spans, speech is found over the whole recording first.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import numpy as np
from google.protobuf import duration_pb2

from gen.gpu.v1 import gpu_pb2
from gpu_node.engines.base import SAMPLE_RATE, Audio, joined
from gpu_node.engines.live_first import LiveFirst
from gpu_node.engines.speakers_clustering import cluster_speakers, first_appearance_order
from gpu_node.engines.voice_encoder import VoiceEncoder
from gpu_node.engines.whisper_utterances import find_utterances

# Found speech is embedded in pieces of at most this length, so that a turn change inside
# one long stretch of speech is still seen.
_FOUND_PIECE_S = 3.0
# Spans shorter than this ("Yes.", "Thanks.") embed poorly: they do not vote in the
# clustering and are given the speaker whose centroid is nearest instead.
_RELIABLE_S = 1.0
# The name of the embedding space of `SpeakerVoice`s this engine returns.
ENCODER = "resemblyzer"
# A span shorter than 0.1 s is widened to this much either side of its middle.
_SHORT_HALF = SAMPLE_RATE // 4


@dataclass(frozen=True)
class _Span:
    start: int  # samples
    end: int
    index: int  # into config.spans, -1 when found here


@dataclass
class _Received:
    """The audio of a recording read so far, kept as the chunks it came in."""

    chunks: list[Audio] = field(default_factory=list)
    starts: list[int] = field(default_factory=list)
    length: int = 0
    ended: bool = False

    def add(self, chunk: Audio) -> None:
        self.chunks.append(chunk)
        self.starts.append(self.length)
        self.length += len(chunk)

    def covers(self, span: _Span) -> bool:
        """Whether the span's clip (`_clip`, short spans widened) has all its audio."""
        return self.ended or self.length >= max(span.end, span.start) + _SHORT_HALF

    def __getitem__(self, window: slice) -> Audio:
        start, stop, _ = window.indices(self.length)
        first = max(0, bisect.bisect_right(self.starts, start) - 1)
        last = bisect.bisect_left(self.starts, stop)
        parts = [
            chunk[max(0, start - offset) : max(0, stop - offset)]
            for chunk, offset in zip(self.chunks[first:last], self.starts[first:last], strict=True)
        ]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)

    def __len__(self) -> int:
        return self.length


def _seconds(duration: duration_pb2.Duration) -> float:
    return duration.seconds + duration.nanos / 1e9


def _duration(seconds: float) -> duration_pb2.Duration:
    value = duration_pb2.Duration()
    value.FromNanoseconds(round(seconds * 1e9))
    return value


class ResemblyzerDiarizationEngine:
    """Labels spans with speakers from resemblyzer's voice embeddings."""

    name = "resemblyzer"

    def __init__(
        self,
        encoder: VoiceEncoder,
        *,
        max_speakers: int = 8,
        min_silhouette: float = 0.1,
        max_concurrency: int = 1,
        live_first: LiveFirst | None = None,
    ) -> None:
        """Creates the engine.

        Args:
            encoder: The loaded voice encoder (shared).
            max_speakers: Upper bound when the count is estimated.
            min_silhouette: Clustering quality below which one speaker is assumed.
            max_concurrency: Computations (a batch of embeddings, a clustering) run at once;
                others wait their turn, never for a caller's audio.
            live_first: The node's gate: each span's embedding waits for live finals
                (None: never waits).
        """
        self._encoder = encoder
        self._max_speakers = max_speakers
        self._min_silhouette = min_silhouette
        self._slots = asyncio.Semaphore(max_concurrency)
        self._live_first = live_first or LiveFirst(0.0)

    async def diarize(
        self, config: gpu_pb2.DiarizationConfig, audio: AsyncIterator[Audio]
    ) -> gpu_pb2.DiarizeResponse:
        """Labels who spoke when (see `DiarizationEngine.diarize`).

        Args:
            config: Speaker count hints and the spans to label.
            audio: The whole recording, 16 kHz mono float32, in chunks.

        Returns:
            Turns in time order (a span's `span_index` says which request span it labels).
        """
        # A slot is held only while computing: a caller whose audio arrives slowly must not
        # keep the node's other diarizations waiting.
        if not config.spans:
            recording = await joined(audio)
            async with self._slots:
                spans, embedded = await asyncio.to_thread(self._find_and_embed, recording)
                return await asyncio.to_thread(self._label, config, spans, embedded)
        spans = self._given_spans(config)
        embedded = await self._embed_as_received(spans, audio)
        async with self._slots:
            return await asyncio.to_thread(self._label, config, spans, embedded)

    async def _embed_as_received(
        self, spans: list[_Span], audio: AsyncIterator[Audio]
    ) -> list[np.ndarray]:
        """Embeds each span once its audio is in, while the rest is read."""
        received = _Received()
        arrived = asyncio.Event()

        async def read() -> None:
            try:
                async for chunk in audio:
                    received.add(chunk)
                    arrived.set()
                received.ended = True
            finally:
                arrived.set()

        reader = asyncio.create_task(read())
        embedded: list[np.ndarray] = []
        try:
            while len(embedded) < len(spans):
                ready = list(itertools.takewhile(received.covers, spans[len(embedded) :]))
                if ready:
                    clips = [self._clip(received, span) for span in ready]
                    async with self._slots:
                        embedded += await asyncio.to_thread(self._embed_all, clips)
                else:
                    if reader.done():
                        reader.result()  # a failed read's error is the call's
                    await arrived.wait()
                    arrived.clear()
            await reader  # the rest of the stream, after the last span
        finally:
            if not reader.done():
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader
        return embedded

    def _label(
        self, config: gpu_pb2.DiarizationConfig, spans: list[_Span], embedded: list[np.ndarray]
    ) -> gpu_pb2.DiarizeResponse:
        if not spans:
            return gpu_pb2.DiarizeResponse(speaker_count=0, engine=self.name)
        embeddings = np.stack(embedded)
        labels = self._cluster(config, spans, embeddings)
        turns = [
            gpu_pb2.SpeakerTurn(
                span=gpu_pb2.TimeSpan(
                    start_offset=_duration(span.start / SAMPLE_RATE),
                    end_offset=_duration(span.end / SAMPLE_RATE),
                ),
                speaker=f"SPEAKER_{label + 1}",
                span_index=span.index,
            )
            for span, label in zip(spans, labels.tolist(), strict=True)
        ]
        if all(span.index == -1 for span in spans):
            turns = _merge_adjacent(turns)
        return gpu_pb2.DiarizeResponse(
            turns=turns,
            speaker_count=len(set(labels.tolist())),
            engine=self.name,
            voices=_voices(spans, embeddings, labels),
        )

    def _find_and_embed(self, audio: Audio) -> tuple[list[_Span], list[np.ndarray]]:
        spans = self._found_spans(audio)
        return spans, self._embed_all([self._clip(audio, span) for span in spans])

    def _embed_all(self, clips: list[Audio]) -> list[np.ndarray]:
        return [self._embed(clip) for clip in clips]

    def _embed(self, clip: Audio) -> np.ndarray:
        self._live_first.yield_to_live()
        return self._encoder.embed_utterance(clip)

    def _cluster(
        self, config: gpu_pb2.DiarizationConfig, spans: list[_Span], embeddings: np.ndarray
    ) -> np.ndarray:
        reliable = np.array([(s.end - s.start) >= _RELIABLE_S * SAMPLE_RATE for s in spans])
        if reliable.sum() < 2:
            reliable[:] = True
        voted = cluster_speakers(
            embeddings[reliable],
            num_speakers=config.num_speakers,
            max_speakers=config.max_speakers or self._max_speakers,
            min_silhouette=self._min_silhouette,
        )
        centroids = np.stack(
            [embeddings[reliable][voted == k].mean(axis=0) for k in range(voted.max() + 1)]
        )
        centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
        labels = np.argmax(embeddings @ centroids.T, axis=1)
        labels[reliable] = voted
        return first_appearance_order(labels)

    @staticmethod
    def _given_spans(config: gpu_pb2.DiarizationConfig) -> list[_Span]:
        """The request's spans in samples, in time order.

        Clustering numbers speakers by first appearance, so they are embedded in this order.
        """
        spans = []
        for index, span in enumerate(config.spans):
            start = max(0, round(_seconds(span.start_offset) * SAMPLE_RATE))
            end = max(start, round(_seconds(span.end_offset) * SAMPLE_RATE))
            spans.append(_Span(start, end, index))
        return sorted(spans, key=lambda span: (span.start, span.index))

    @staticmethod
    def _found_spans(audio: Audio) -> list[_Span]:
        """Speech found by energy, in pieces of at most `_FOUND_PIECE_S`, in time order."""
        piece = int(_FOUND_PIECE_S * SAMPLE_RATE)
        found = []
        for utterance in find_utterances(audio, silence_s=0.5, max_utterance_s=30.0):
            # Split evenly, so no piece is a sliver too short to embed.
            count = max(1, round(len(utterance.audio) / piece))
            edges = np.linspace(utterance.start, utterance.end, count + 1).astype(int)
            found += [_Span(int(a), int(b), -1) for a, b in itertools.pairwise(edges)]
        return found

    @staticmethod
    def _clip(audio: Audio | _Received, span: _Span) -> Audio:
        clip = audio[span.start : span.end]
        if len(clip) < SAMPLE_RATE // 10:
            # A span shorter than 0.1 s (or past the end) carries no voice to speak of:
            # widen it to half a second around its middle.
            middle = min((span.start + span.end) // 2, len(audio))
            clip = audio[max(0, middle - _SHORT_HALF) : middle + _SHORT_HALF]
        return clip if len(clip) else np.zeros(SAMPLE_RATE // 2, dtype=np.float32)


def _voices(
    spans: list[_Span], embeddings: np.ndarray, labels: np.ndarray
) -> list[gpu_pb2.SpeakerVoice]:
    """Each speaker's centroid: the mean of its spans' embeddings, longer spans weighing more."""
    lengths = np.array([(span.end - span.start) / SAMPLE_RATE for span in spans])
    voices = []
    for label in sorted(set(labels.tolist())):
        mine = labels == label
        centroid = (embeddings[mine] * lengths[mine, None]).sum(axis=0)
        norm = float(np.linalg.norm(centroid))
        if norm == 0:
            continue
        voices.append(
            gpu_pb2.SpeakerVoice(
                speaker=f"SPEAKER_{label + 1}",
                embedding=(centroid / norm).tolist(),
                speech_seconds=float(lengths[mine].sum()),
                encoder=ENCODER,
            )
        )
    return voices


def _merge_adjacent(turns: list[gpu_pb2.SpeakerTurn]) -> list[gpu_pb2.SpeakerTurn]:
    merged: list[gpu_pb2.SpeakerTurn] = []
    for turn in turns:
        previous = merged[-1] if merged else None
        if (
            previous is not None
            and previous.speaker == turn.speaker
            and _seconds(turn.span.start_offset) - _seconds(previous.span.end_offset) < 1.0
        ):
            previous.span.end_offset.CopyFrom(turn.span.end_offset)
        else:
            merged.append(turn)
    return merged
