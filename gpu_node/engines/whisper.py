"""Speech recognition with faster-whisper (CTranslate2), batch and live.

faster-whisper's `transcribe()` is blocking and yields segments lazily, one 30 s window at
a time. It runs in a worker thread that hands each segment to the event loop as soon as it
is decoded, so the first segments of a long recording go out while the rest is decoded.
Audio is always passed as decoded numpy samples (file input through PyAV is never used).

Batch mode transcribes the audio in windows of at most `asr_batch_window_s`, cut at the
quietest moment near each window's end, so a long upload neither waits for its last byte
nor holds more than one window in memory. A batch segment never spans a pause of
`asr_live_silence_s` or more (the pause that ends a live utterance): Whisper sometimes
joins two sentences across such a pause into one segment (whether it does varies between
processes with CTranslate2's numerics), and when two people spoke them, the one speaker
label a segment gets is wrong for half of it; such segments are split at the pause, by
their word timings. Live mode cuts the stream into utterances by
energy (`whisper_utterances`): each utterance becomes one segment, sent final as soon as
`asr_live_silence_s` of silence ends it, preceded (with `interim_results`) by partial
hypotheses every `asr_live_partial_interval_s` of new audio. A partial is decoded beside
the reading of the audio, one at a time and only while the live decoder is free, so only a
final's own decode holds the stream back. Live decodes are greedy and encode about the
utterance's length of audio instead of a 30 s window (`whisper_window`), so each costs a
fraction of a batch window's decode and a live stream keeps up with real time on a couple
of CPU cores. While a live final is decoded, batch decodes on the same node pause between
their CTranslate2 calls (`live_first`), so the final has the cores to itself.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import dataclasses
import itertools
import math
import threading
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from google.protobuf import duration_pb2

from gen.gpu.v1 import gpu_pb2
from gpu_node.engines.base import SAMPLE_RATE, Audio, SegmentBatch
from gpu_node.engines.live_first import LiveFirst, batch_view
from gpu_node.engines.whisper_utterances import (
    Utterance,
    UtteranceSegmenter,
    find_utterances,
    quietest_cut,
)

if TYPE_CHECKING:
    from faster_whisper import WhisperModel

# A batch window is cut at the quietest frame of its last ten seconds.
_CUT_SEARCH_S = 10.0


@dataclass(frozen=True)
class LiveOptions:
    """How live audio is cut into utterances.

    Attributes:
        silence_s: Silence that ends an utterance (the latency floor of a final segment).
        max_utterance_s: Longest utterance; longer speech is cut there.
        partial_interval_s: New audio between two partial hypotheses.
        min_window_s: Shortest window Whisper's encoder reads for a live decode
            (`whisper_window`); an utterance longer than that gets its own length.
    """

    silence_s: float = 0.6
    max_utterance_s: float = 15.0
    partial_interval_s: float = 1.0
    min_window_s: float = 10.0


@dataclass(frozen=True)
class _Decoded:
    segment: Any  # faster_whisper.transcribe.Segment
    language: str


@dataclass(frozen=True)
class _Failed:
    error: BaseException


_DONE = object()


def _duration(seconds: float) -> duration_pb2.Duration:
    value = duration_pb2.Duration()
    value.FromNanoseconds(round(max(seconds, 0.0) * 1e9))
    return value


def _offset_seconds(config: gpu_pb2.RecognitionConfig) -> float:
    if not config.HasField("start_offset"):
        return 0.0
    return config.start_offset.seconds + config.start_offset.nanos / 1e9


def _confidence(segments: Iterable[Any]) -> float:
    """Mean word probability, or exp(mean log-probability) when there are no words."""
    segments = list(segments)
    probabilities = [word.probability for s in segments for word in (s.words or [])]
    if probabilities:
        return float(np.clip(np.mean(probabilities), 0.0, 1.0))
    if not segments:
        return 0.0
    return float(np.clip(math.exp(np.mean([s.avg_logprob for s in segments])), 0.0, 1.0))


def pause_points(audio: Audio, silence_s: float) -> list[float]:
    """Finds the pauses in speech that are at least `silence_s` long.

    Args:
        audio: 16 kHz mono samples.
        silence_s: Shortest pause that counts.

    Returns:
        The middle of each such pause, in seconds from the start of `audio`, in order.
    """
    longest = len(audio) / SAMPLE_RATE + 1.0  # never cut speech for its length here
    utterances = find_utterances(audio, silence_s=silence_s, max_utterance_s=longest)
    return [
        (before.end + after.start) / 2 / SAMPLE_RATE
        for before, after in itertools.pairwise(utterances)
    ]


def split_at_pauses(segment: Any, pauses: Sequence[float]) -> list[Any]:
    """Splits a faster-whisper segment wherever its words straddle a pause.

    Args:
        segment: A `faster_whisper.transcribe.Segment` with word timings (one without
            words is returned as it is).
        pauses: Pause midpoints from `pause_points`, in the segment's time base, sorted.

    Returns:
        The segment, or one segment per stretch of words between pauses, each with its
        own words, text, start and end.
    """
    words = list(segment.words or [])
    groups: list[list[Any]] = []
    for _, group in itertools.groupby(
        words, key=lambda word: bisect.bisect_left(pauses, (word.start + word.end) / 2)
    ):
        groups.append(list(group))
    if len(groups) < 2:
        return [segment]
    return [
        dataclasses.replace(
            segment,
            start=group[0].start,
            end=group[-1].end,
            text="".join(word.word for word in group),
            words=group,
        )
        for group in groups
    ]


def vocabulary_prompt(words: Sequence[str]) -> str | None:
    """The decoder prompt that makes Whisper prefer a meeting's vocabulary, or None.

    Whisper reads its prompt as text spoken just before the audio, so words in it become
    likelier spellings. Given as `initial_prompt` rather than faster-whisper's `hotwords`:
    on espeak-ng speech, tiny.en got names right with it that `hotwords` still missed
    (docs/engines.md).
    """
    return f"Glossary: {', '.join(words)}." if words else None


def build_segment(
    index: int, decoded: list[_Decoded], offset_s: float, *, is_final: bool
) -> gpu_pb2.RecognizedSegment:
    """Turns one or more faster-whisper segments into one `RecognizedSegment`.

    Args:
        index: The segment's index in the stream.
        decoded: Whisper segments (times relative to the audio they were decoded from).
        offset_s: Where that audio starts in the stream (plus the config's start offset).
        is_final: False for a partial hypothesis.

    Returns:
        The message, with word timings when whisper gave them.
    """
    segments = [item.segment for item in decoded]
    words = [
        gpu_pb2.RecognizedWord(
            text=word.word.strip(),
            start_offset=_duration(offset_s + word.start),
            end_offset=_duration(offset_s + word.end),
            confidence=float(np.clip(word.probability, 0.0, 1.0)),
        )
        for segment in segments
        for word in (segment.words or [])
        if word.word.strip()
    ]
    return gpu_pb2.RecognizedSegment(
        segment_index=index,
        start_offset=_duration(offset_s + segments[0].start),
        end_offset=_duration(offset_s + segments[-1].end),
        text=" ".join(s.text.strip() for s in segments if s.text.strip()),
        confidence=_confidence(segments),
        words=words,
        is_final=is_final,
        language=decoded[0].language,
    )


class WhisperRecognitionEngine:
    """`RecognitionEngine` over one shared faster-whisper model."""

    def __init__(
        self,
        model: WhisperModel,
        name: str,
        *,
        max_concurrency: int = 1,
        live_concurrency: int = 1,
        beam_size: int = 5,
        batch_window_s: float = 600.0,
        live: LiveOptions | None = None,
        live_first: LiveFirst | None = None,
    ) -> None:
        """Creates the engine.

        Args:
            model: The loaded model, shared by every call.
            name: Engine label, e.g. "whisper:tiny.en".
            max_concurrency: Batch decodes that may run at once; further ones wait.
            live_concurrency: Live decodes that may run at once, besides the batch ones.
            beam_size: Beam width of batch decodes (live decodes are greedy).
            batch_window_s: Longest stretch of batch audio decoded in one piece.
            live: How live audio is cut into utterances.
            live_first: The node's gate that pauses batch work during live finals
                (None: batch never pauses).
        """
        self.name = name
        self.languages: Sequence[str] = sorted(model.supported_languages)
        self.translates = bool(model.model.is_multilingual)
        self.takes_vocabulary = True
        self._live = live or LiveOptions()
        from gpu_node.engines.whisper_window import short_window

        self._live_first = live_first or LiveFirst(0.0)
        self._batch_model = batch_view(model, self._live_first)
        self._live_model = short_window(model, self._live.min_window_s)
        self._slots = asyncio.Semaphore(max_concurrency)
        self._live_slots = asyncio.Semaphore(live_concurrency)
        self._beam_size = beam_size
        self._window = int(batch_window_s * SAMPLE_RATE)

    async def recognize(
        self, config: gpu_pb2.RecognitionConfig, audio: AsyncIterator[Audio]
    ) -> AsyncIterator[SegmentBatch]:
        """Recognizes speech as audio arrives (see `RecognitionEngine.recognize`).

        Args:
            config: Language (empty: detected), mode, interim results, start offset.
            audio: 16 kHz mono float32 chunks.

        Yields:
            Batches of segments in time order: in batch mode the finals decoded since the
            previous batch was taken, as soon as the first of them is; in live mode
            partials (when asked) and then the final of each utterance (with the
            utterance's last partial when both are ready at once).
        """
        if config.mode == gpu_pb2.RECOGNITION_MODE_LIVE:
            stream = self._recognize_live(config, audio)
        else:
            stream = self._recognize_batch(config, audio)
        async for batch in stream:
            yield batch

    async def _recognize_batch(
        self, config: gpu_pb2.RecognitionConfig, audio: AsyncIterator[Audio]
    ) -> AsyncIterator[SegmentBatch]:
        base = _offset_seconds(config)
        language = config.language or None
        prompt = vocabulary_prompt(config.vocabulary)
        pending: list[Audio] = []
        pending_samples = 0
        done_samples = 0  # audio already decoded, before pending[0]
        index = 0

        async def decode(piece: Audio) -> AsyncIterator[SegmentBatch]:
            nonlocal index
            offset = base + done_samples / SAMPLE_RATE
            pauses = await asyncio.to_thread(pause_points, piece, self._live.silence_s)
            async for items in self._decode(piece, language, prompt, final=True):
                batch = []
                for item in items:
                    for part in split_at_pauses(item.segment, pauses):
                        batch.append(
                            build_segment(
                                index, [_Decoded(part, item.language)], offset, is_final=True
                            )
                        )
                        index += 1
                yield batch

        async for chunk in audio:
            pending.append(chunk)
            pending_samples += len(chunk)
            while pending_samples >= self._window:
                joined = np.concatenate(pending)
                search = self._window - int(_CUT_SEARCH_S * SAMPLE_RATE)
                cut = max(quietest_cut(joined[: self._window], search), SAMPLE_RATE)
                async for batch in decode(joined[:cut]):
                    yield batch
                done_samples += cut
                pending, pending_samples = [joined[cut:]], len(joined) - cut
        if pending_samples:
            async for batch in decode(np.concatenate(pending)):
                yield batch

    async def _recognize_live(
        self, config: gpu_pb2.RecognitionConfig, audio: AsyncIterator[Audio]
    ) -> AsyncIterator[SegmentBatch]:
        base = _offset_seconds(config)
        # A language detected on the first utterance is kept: short utterances alone are
        # too little evidence, and a meeting rarely switches language mid-sentence.
        language = config.language or None
        prompt = vocabulary_prompt(config.vocabulary)
        segmenter = UtteranceSegmenter(
            silence_s=self._live.silence_s, max_utterance_s=self._live.max_utterance_s
        )
        interval = int(self._live.partial_interval_s * SAMPLE_RATE)
        index = 0
        partial_tried_at = 0  # utterance length at its last partial decode
        partial_out = False  # whether a partial of the current index went out
        # At most one partial decode runs, beside the reading of the audio, so the stream
        # is never held back by a partial; it is awaited before its utterance's final.
        partial: asyncio.Task[gpu_pb2.RecognizedSegment | None] | None = None

        async def make_partial(current: Utterance) -> gpu_pb2.RecognizedSegment | None:
            decoded = [
                item
                async for items in self._decode(
                    current.audio, language, prompt, final=False, live=True
                )
                for item in items
            ]
            if not decoded:
                return None
            return build_segment(index, decoded, base + current.start / SAMPLE_RATE, is_final=False)

        async def finish(utterance: Utterance) -> gpu_pb2.RecognizedSegment | None:
            nonlocal language
            decoded = [
                item
                async for items in self._decode(
                    utterance.audio, language, prompt, final=True, live=True
                )
                for item in items
            ]
            offset = base + utterance.start / SAMPLE_RATE
            if decoded:
                language = language or decoded[0].language
                return build_segment(index, decoded, offset, is_final=True)
            if partial_out:
                # A partial went out for this index: close it, even though VAD found no words.
                return gpu_pb2.RecognizedSegment(
                    segment_index=index,
                    start_offset=_duration(offset),
                    end_offset=_duration(offset + len(utterance.audio) / SAMPLE_RATE),
                    is_final=True,
                    language=language or "",
                )
            return None

        async def partial_done(wait: bool) -> gpu_pb2.RecognizedSegment | None:
            """The in-flight partial's segment once it is decoded (awaited when `wait`)."""
            nonlocal partial, partial_out
            if partial is None or not (wait or partial.done()):
                return None
            segment, partial = await partial, None
            partial_out = partial_out or segment is not None
            return segment

        async def end_of(utterance: Utterance) -> list[gpu_pb2.RecognizedSegment]:
            """The utterance's partial still in flight, if any, then its final."""
            nonlocal index, partial_tried_at, partial_out
            # Batch work pauses from the end of the utterance to its final, the partial
            # still in flight included; the gate is not held while a segment is yielded.
            with self._live_first.live():
                last_partial = await partial_done(wait=True)
                final = await finish(utterance)
            if final is not None:
                index += 1
            partial_tried_at, partial_out = 0, False
            return [segment for segment in (last_partial, final) if segment is not None]

        try:
            async for chunk in audio:
                for utterance in segmenter.feed(chunk):
                    if ended := await end_of(utterance):
                        yield ended
                if (ready := await partial_done(wait=False)) is not None:
                    yield [ready]
                current = segmenter.current()
                # A partial starts only when none is in flight and the live decoder is
                # free: it is replaced within a second, so it never queues behind a decode.
                if (
                    config.interim_results
                    and current is not None
                    and partial is None
                    and len(current.audio) - partial_tried_at >= interval
                    and not self._live_slots.locked()
                ):
                    partial_tried_at = len(current.audio)
                    partial = asyncio.create_task(make_partial(current))
            last = segmenter.flush()
            if last is not None and (ended := await end_of(last)):
                yield ended
        finally:
            if partial is not None:
                partial.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await partial

    async def _decode(
        self,
        audio: Audio,
        language: str | None,
        prompt: str | None,
        *,
        final: bool,
        live: bool = False,
    ) -> AsyncIterator[list[_Decoded]]:
        """Runs faster-whisper in a worker thread, yielding segments as they are decoded.

        Each batch holds every segment the thread handed over since the previous one was
        taken: the first as soon as it is decoded, with those decoded while the caller
        was busy with the previous batch.

        Final decodes have word timings and Silero VAD; partials have neither, as they
        are replaced within a second anyway. Batch finals use beam search. Live decodes
        are greedy and encode a window about as long as their audio (`whisper_window`)
        rather than Whisper's 30 s, since someone waits for each of them.

        Args:
            audio: Samples to decode.
            language: Language code, or None to detect.
            prompt: Text the decoder takes as what came before (the vocabulary), or None.
            final: Whether this is a final decode.
            live: Whether it is for a live stream, which has slots of its own so that it
                never waits behind a batch decode.

        Yields:
            Batches of segments with the (given or detected) language.

        Raises:
            Exception: Whatever faster-whisper raised, re-raised in the caller's task.
        """
        options: dict[str, Any] = {
            "language": language,
            "beam_size": self._beam_size if final and not live else 1,
            "word_timestamps": final,
            "vad_filter": final,
            "without_timestamps": not final,
            "condition_on_previous_text": False,
            "initial_prompt": prompt,
        }
        model = self._live_model if live else self._batch_model
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[object] = asyncio.Queue()
        stop = threading.Event()

        def hand_over(item: object) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the loop is gone; nobody is listening any more
                stop.set()

        def work() -> None:
            try:
                segments, info = model.transcribe(audio, **options)
                for segment in segments:
                    if stop.is_set():
                        break
                    hand_over(_Decoded(segment, info.language))
            except Exception as exc:
                hand_over(_Failed(exc))
            finally:
                hand_over(_DONE)

        async with self._live_slots if live else self._slots:
            worker = loop.run_in_executor(None, work)
            try:
                finished = False
                while not finished:
                    items = [await queue.get()]
                    while not queue.empty():
                        items.append(queue.get_nowait())
                    if decoded := [item for item in items if isinstance(item, _Decoded)]:
                        yield decoded
                    # The thread's failure and its end come after its segments.
                    for item in items:
                        if isinstance(item, _Failed):
                            raise item.error
                        finished = finished or item is _DONE
            finally:
                # The caller may stop early (cancelled stream): the worker stops at its next
                # segment, and the slot is freed only once the model is really idle.
                stop.set()
                await asyncio.shield(worker)
