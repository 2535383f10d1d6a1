"""The deterministic mock engine: honest about its input, never pretending to understand it.

It runs anywhere in microseconds, so development and tests exercise the whole GPU path
without models:

- **Recognition** finds speech by energy: 30 ms frames whose RMS exceeds a threshold are
  speech; a segment ends after 300 ms of silence (or at 15 s). It cannot know the words, so
  its text says what it found, e.g. `speech 2 (1.20s-2.75s): w3fa2 w91c0`: one token per
  400 ms of the segment, named by a hash of those samples. Different audio gives different
  tokens; the same audio gives the same result however it is chunked. Partials (when asked)
  come every second of an open segment, then the final version.
- **Diarization** labels each span by its zero-crossing rate (a rough pitch proxy): spans
  sort by it and split at the widest relative gaps, so a low and a high voice get two
  labels, and one voice gets one. Each speaker's voice is that rate as a bump on a log
  scale (encoder `mock-zcr`): voices 25 % apart are far below any sane match threshold,
  the same tone matches itself.
- **Summarization** picks the sentences with the most frequent content words, finds action
  items with the rule "<Name> will <verb> ..." ("I will ..." takes the line's speaker), and
  lists the most frequent content words as keywords.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import numpy as np
from google.protobuf import duration_pb2

from gen.gpu.v1 import gpu_pb2
from gpu_node.engines.base import SAMPLE_RATE, Audio, SegmentBatch

NAME = "mock"

FRAME_SAMPLES = 480  # 30 ms
SPEECH_RMS = 0.02  # about -34 dBFS: above room noise, below any voice at a sane level
END_SILENCE_FRAMES = 10  # 300 ms of silence ends a segment
MIN_SPEECH_FRAMES = 4  # shorter bursts (clicks) are not speech
MAX_SEGMENT_FRAMES = 500  # 15 s: cut long monologues to bound latency
WORD_SAMPLES = 6400  # one token per 400 ms
PARTIAL_EVERY_FRAMES = 33  # about one partial per second of an open segment
DEFAULT_SUMMARY_SENTENCES = 3
_SPEAKER_GAP_RATIO = 1.25  # spans whose ZCR differs by more than 25 % are other voices
VOICE_ENCODER = "mock-zcr"
# The voice embedding's bumps: centres on a log scale of the ZCR from 0.002 to 1, spaced
# half a speaker gap apart, each as wide as the spacing.
_VOICE_STEP = float(np.log(_SPEAKER_GAP_RATIO)) / 2
_VOICE_CENTRES = np.arange(np.log(0.002), _VOICE_STEP, _VOICE_STEP)
_DEFAULT_MAX_SPEAKERS = 8


@dataclass(frozen=True)
class SpeechRun:
    """A stretch of detected speech, in samples from the start of the stream.

    Attributes:
        start: First sample.
        end: One past the last speech sample.
        samples: The audio of [start, end).
        final: False while the segment may still grow.
    """

    start: int
    end: int
    samples: Audio
    final: bool


class EnergySegmenter:
    """Cuts a stream of audio into speech runs by frame energy.

    Frames count from the start of the stream, so the result does not depend on how the
    audio was chunked.
    """

    def __init__(self, interim: bool = False) -> None:
        self._interim = interim
        self._pending = np.empty(0, dtype=np.float32)
        self._frame = 0  # index of the next frame to classify
        self._open: list[Audio] = []  # frames of the open run (speech and inner silence)
        self._open_start = 0
        self._speech_frames = 0
        self._silence = 0
        self._last_partial = 0

    def push(self, audio: Audio) -> list[SpeechRun]:
        """Feeds audio and returns the runs it completed (and partials, when asked).

        Args:
            audio: The next samples.

        Returns:
            Runs in time order; `final` False marks a partial.
        """
        data = np.concatenate([self._pending, audio]) if self._pending.size else audio
        whole = data.size - data.size % FRAME_SAMPLES
        self._pending = data[whole:].copy()
        runs: list[SpeechRun] = []
        if whole == 0:
            return runs
        frames = data[:whole].reshape(-1, FRAME_SAMPLES)
        loud = np.sqrt(np.mean(np.square(frames, dtype=np.float64), axis=1)) > SPEECH_RMS
        for frame, is_speech in zip(frames, loud, strict=True):
            run = self._step(frame, bool(is_speech))
            if run is not None:
                runs.append(run)
        if (
            self._interim
            and self._open
            and self._frame - self._last_partial >= PARTIAL_EVERY_FRAMES
        ):
            self._last_partial = self._frame
            runs.append(self._run(final=False))
        return runs

    def flush(self) -> list[SpeechRun]:
        """Ends the stream: returns the open run, if it is speech.

        Returns:
            Zero or one final run.
        """
        if self._pending.size:
            padded = np.zeros(FRAME_SAMPLES, dtype=np.float32)
            padded[: self._pending.size] = self._pending
            loud = float(np.sqrt(np.mean(np.square(padded, dtype=np.float64)))) > SPEECH_RMS
            self._pending = np.empty(0, dtype=np.float32)
            run = self._step(padded, loud)
            if run is not None:
                return [run]
        return self._close()

    def _step(self, frame: Audio, is_speech: bool) -> SpeechRun | None:
        index = self._frame
        self._frame += 1
        if not self._open:
            if not is_speech:
                return None
            self._open_start = index
            self._last_partial = index
            self._speech_frames = 0
            self._silence = 0
        self._open.append(frame)
        if is_speech:
            self._speech_frames += 1
            self._silence = 0
        else:
            self._silence += 1
        if self._silence >= END_SILENCE_FRAMES or len(self._open) >= MAX_SEGMENT_FRAMES:
            closed = self._close()
            return closed[0] if closed else None
        return None

    def _close(self) -> list[SpeechRun]:
        if not self._open:
            return []
        run = self._run(final=True) if self._speech_frames >= MIN_SPEECH_FRAMES else None
        self._open = []
        return [run] if run is not None else []

    def _run(self, final: bool) -> SpeechRun:
        frames = self._open[: len(self._open) - self._silence] if self._silence else self._open
        samples = np.concatenate(frames) if frames else np.empty(0, dtype=np.float32)
        start = self._open_start * FRAME_SAMPLES
        return SpeechRun(start, start + samples.size, samples, final)


def _token(samples: Audio) -> str:
    # Hash the int16 values the audio came from, so the token names the input exactly.
    pcm = np.round(samples * 32768.0).astype("<i2").tobytes()
    return "w" + hashlib.blake2b(pcm, digest_size=2).hexdigest()


def _seconds(samples: int) -> float:
    return samples / SAMPLE_RATE


def _duration(seconds: float) -> duration_pb2.Duration:
    value = duration_pb2.Duration()
    value.FromNanoseconds(round(seconds * 1e9))
    return value


class MockRecognitionEngine:
    """Speech by energy; text that says what was found. See the module docstring.

    Args:
        stream_cost_s: Seconds each stream waits, without using the CPU, once its audio has
            ended and before its last segments: a stand-in for a GPU's fixed work per
            stream, so benchmarks can give nodes a capacity (docs/bench.md, `gpu_scaling`).
    """

    name = NAME
    # Its text is English whatever was spoken.
    languages: Sequence[str] = ("en",)
    translates = False
    takes_vocabulary = False

    def __init__(self, stream_cost_s: float = 0.0) -> None:
        self._stream_cost_s = stream_cost_s

    async def recognize(
        self, config: gpu_pb2.RecognitionConfig, audio: AsyncIterator[Audio]
    ) -> AsyncIterator[SegmentBatch]:
        """Yields partial and final segments as the audio arrives.

        Args:
            config: The stream's settings; `interim_results` and `start_offset` are used.
            audio: 16 kHz mono float32 chunks.

        Yields:
            The segments each chunk completed, as one batch; finals numbered from 0 in
            time order.
        """
        offset = (
            config.start_offset.ToNanoseconds() / 1e9 if config.HasField("start_offset") else 0.0
        )
        language = config.language or "und"
        segmenter = EnergySegmenter(interim=config.interim_results)
        index = 0

        def batch(runs: list[SpeechRun]) -> list[gpu_pb2.RecognizedSegment]:
            nonlocal index
            segments = []
            for run in runs:
                segments.append(_segment(run, index, offset, language))
                index += run.final
            return segments

        async for chunk in audio:
            if ready := batch(segmenter.push(chunk)):
                yield ready
        if self._stream_cost_s:
            await asyncio.sleep(self._stream_cost_s)
        if ready := batch(segmenter.flush()):
            yield ready


def _segment(run: SpeechRun, index: int, offset: float, language: str) -> gpu_pb2.RecognizedSegment:
    words: list[gpu_pb2.RecognizedWord] = []
    for begin in range(0, run.samples.size, WORD_SAMPLES):
        window = run.samples[begin : begin + WORD_SAMPLES]
        if not run.final and window.size < WORD_SAMPLES:
            break  # a partial names only windows that can no longer change
        word = gpu_pb2.RecognizedWord(text=_token(window), confidence=0.5)
        word.start_offset.CopyFrom(_duration(offset + _seconds(run.start + begin)))
        word.end_offset.CopyFrom(_duration(offset + _seconds(run.start + begin + window.size)))
        words.append(word)
    start, end = offset + _seconds(run.start), offset + _seconds(run.end)
    label = f"speech {index + 1} ({start:.2f}s-{end:.2f}s)"
    text = f"{label}: {' '.join(w.text for w in words)}" if words else label
    segment = gpu_pb2.RecognizedSegment(
        segment_index=index,
        text=text,
        confidence=0.5,
        words=words,
        is_final=run.final,
        language=language,
    )
    segment.start_offset.CopyFrom(_duration(start))
    segment.end_offset.CopyFrom(_duration(end))
    return segment


def zero_crossing_rate(samples: Audio) -> float:
    """Returns the fraction of sample pairs whose sign differs (0 for empty audio).

    Args:
        samples: Audio.

    Returns:
        A value in [0, 1].
    """
    if samples.size < 2:
        return 0.0
    signs = np.signbit(samples)
    return float(np.count_nonzero(signs[1:] != signs[:-1])) / (samples.size - 1)


def group_by_gaps(values: Sequence[float], count: int, max_groups: int) -> list[int]:
    """Groups 1-D values by splitting their sorted order at the widest relative gaps.

    Args:
        values: One value per item.
        count: Number of groups wanted; 0 means split at every gap wider than 25 %.
        max_groups: Upper bound when estimating.

    Returns:
        A group number per item (numbers are arbitrary; callers relabel).
    """
    if not values:
        return []
    order = sorted(range(len(values)), key=lambda i: (values[i], i))
    ratios = [
        (values[order[k + 1]] + 1e-9) / (values[order[k]] + 1e-9) for k in range(len(order) - 1)
    ]
    by_width = sorted(range(len(ratios)), key=lambda k: (-ratios[k], k))
    if count > 0:
        cuts = set(by_width[: count - 1])
    else:
        cuts = {k for k in by_width[: max_groups - 1] if ratios[k] > _SPEAKER_GAP_RATIO}
    groups = [0] * len(values)
    group = 0
    for position, item in enumerate(order):
        groups[item] = group
        if position in cuts:
            group += 1
    return groups


class MockDiarizationEngine:
    """Speakers by zero-crossing rate. See the module docstring."""

    name = NAME

    async def diarize(
        self, config: gpu_pb2.DiarizationConfig, audio: Audio
    ) -> gpu_pb2.DiarizeResponse:
        """Labels each span (or each run of speech found by energy).

        Args:
            config: Speaker count hints and the spans to label.
            audio: The whole recording.

        Returns:
            One turn per span, labels in order of first appearance.
        """
        spans: list[tuple[int, int, int]] = []  # (start sample, end sample, span index)
        if config.spans:
            for i, span in enumerate(config.spans):
                start = round(span.start_offset.ToNanoseconds() * SAMPLE_RATE / 1e9)
                end = round(span.end_offset.ToNanoseconds() * SAMPLE_RATE / 1e9)
                spans.append((max(0, start), max(start, end), i))
        else:
            segmenter = EnergySegmenter()
            runs = [*segmenter.push(audio), *segmenter.flush()]
            spans = [(run.start, run.end, -1) for run in runs]
        features = [zero_crossing_rate(_loud_part(audio[start:end])) for start, end, _ in spans]
        count = min(config.num_speakers, len(spans)) if config.num_speakers > 0 else 0
        groups = group_by_gaps(features, count, config.max_speakers or _DEFAULT_MAX_SPEAKERS)
        labels: dict[int, str] = {}
        response = gpu_pb2.DiarizeResponse(engine=NAME)
        timed = sorted(zip(spans, groups, strict=True), key=lambda item: (item[0][0], item[0][2]))
        for (start, end, span_index), group in timed:
            label = labels.setdefault(group, f"SPEAKER_{len(labels) + 1}")
            turn = response.turns.add(speaker=label, span_index=span_index)
            turn.span.start_offset.CopyFrom(_duration(_seconds(start)))
            turn.span.end_offset.CopyFrom(_duration(_seconds(end)))
        response.speaker_count = len(labels)
        for group, label in labels.items():
            mine = [
                (end - start, feature)
                for (start, end, _), feature, g in zip(spans, features, groups, strict=True)
                if g == group
            ]
            seconds = sum(length for length, _ in mine) / SAMPLE_RATE
            rate = sum(length * feature for length, feature in mine) / max(1, seconds * SAMPLE_RATE)
            response.voices.add(
                speaker=label,
                embedding=_voice_embedding(rate),
                speech_seconds=seconds,
                encoder=VOICE_ENCODER,
            )
        return response


def _voice_embedding(rate: float) -> list[float]:
    bumps = np.exp(-0.5 * ((np.log(max(rate, 1e-4)) - _VOICE_CENTRES) / _VOICE_STEP) ** 2)
    return [float(x) for x in bumps / np.linalg.norm(bumps)]


def _loud_part(samples: Audio) -> Audio:
    # Pauses inside a span would drag its zero-crossing rate towards the noise floor's.
    whole = samples.size - samples.size % FRAME_SAMPLES
    if whole == 0:
        return samples
    frames = samples[:whole].reshape(-1, FRAME_SAMPLES)
    loud = np.sqrt(np.mean(np.square(frames, dtype=np.float64), axis=1)) > SPEECH_RMS
    return frames[loud].reshape(-1) if loud.any() else samples


_SENTENCE = re.compile(r"[^.!?]+[.!?]*")
_WORD = re.compile(r"[A-Za-z][A-Za-z'-]+")
_ACTION = re.compile(r"\b([A-Z][a-z]+|I|We|we) will ([a-z]+\b[^.!?]*)")
_DUE = re.compile(
    r"\b((?:on|by|before|until) (?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday"
    r"|tomorrow|the end of (?:the )?(?:day|week|month))|tomorrow|today|next week|this week)\b",
    re.IGNORECASE,
)
_STOPWORDS = frozenset(
    """a about after again all also am an and any are as at be because been before being but by
    can could did do does doing done for from had has have having he her here him his how i
    if in into is it its just let me more most my no not now of off on once only or other
    our out over own same she should so some such than that the their them then there these
    they this those through to too under until up very was we were what when where which
    while who whom why will with would you your yes okay well going get got think know like
    really right thing things lets""".split()  # noqa: SIM905 - a list literal would take a hundred lines
)


@dataclass(frozen=True)
class _Sentence:
    text: str
    speaker: str
    position: int


class MockSummarizationEngine:
    """Extractive summary by word frequency, rule-based action items. See the module."""

    name = NAME

    async def summarize(
        self, lines: Sequence[gpu_pb2.TranscriptLine], language: str, max_sentences: int
    ) -> gpu_pb2.SummarizeResponse:
        """Summarizes by picking sentences of the transcript.

        Args:
            lines: The transcript in order.
            language: Unused: the rules are for English.
            max_sentences: Most sentences picked; 0 means 3.

        Returns:
            The picked sentences in transcript order, action items, keywords.
        """
        sentences: list[_Sentence] = []
        for line in lines:
            for match in _SENTENCE.finditer(line.text):
                if text := match.group().strip():
                    sentences.append(_Sentence(text, line.speaker, len(sentences)))
        frequency = Counter(
            word.lower()
            for sentence in sentences
            for word in _WORD.findall(sentence.text)
            if word.lower() not in _STOPWORDS
        )
        response = gpu_pb2.SummarizeResponse(engine=NAME)
        limit = max_sentences if max_sentences > 0 else DEFAULT_SUMMARY_SENTENCES

        def score(sentence: _Sentence) -> float:
            words = [w.lower() for w in _WORD.findall(sentence.text)]
            content = [frequency[w] for w in words if w not in _STOPWORDS]
            return sum(content) / (len(words) ** 0.5) if words else 0.0

        ranked = sorted(sentences, key=lambda s: (-score(s), s.position))[:limit]
        response.summary = " ".join(s.text for s in sorted(ranked, key=lambda s: s.position))
        for sentence in sentences:
            action = _ACTION.search(sentence.text)
            if action is None:
                continue
            who = action.group(1)
            if who.lower() in _STOPWORDS and who not in ("I", "We", "we"):
                continue  # "This will take time" names no owner
            owner = sentence.speaker if who in ("I", "We", "we") else who
            due = _DUE.search(sentence.text)
            response.action_items.add(
                text=sentence.text, owner=owner, due=due.group(1) if due else ""
            )
        response.keywords.extend(word for word, _ in frequency.most_common(5))
        return response
