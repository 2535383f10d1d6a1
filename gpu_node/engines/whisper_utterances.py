"""Cutting a stream of audio into utterances by energy, with bounded latency.

Live recognition needs to know when someone stopped talking without waiting for the end of
the stream, and diarization needs speech spans when the caller gives none. Both use this
energy detector: 30 ms frames are speech when they stand `margin_db` above a noise floor
that follows the quiet frames (and never below `min_speech_db`, so digital silence does not
make every click speech). An utterance ends after `silence_s` of non-speech, or is cut at
`max_utterance_s` so that latency stays bounded during long monologues.

Sample positions are absolute (from the first sample fed), so callers turn them into times.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

SAMPLE_RATE = 16_000
FRAME = 480  # 30 ms

Floats = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Utterance:
    """A stretch of speech."""

    start: int
    """First sample, from the beginning of the stream."""
    audio: Floats

    @property
    def end(self) -> int:
        """One past the last sample."""
        return self.start + len(self.audio)


def frame_db(frame: Floats) -> float:
    """Level of a frame in dBFS (digital silence reads -100)."""
    rms = float(np.sqrt(np.mean(np.square(frame, dtype=np.float64))))
    return 20.0 * float(np.log10(max(rms, 1e-5)))


@dataclass
class UtteranceSegmenter:
    """Streaming utterance detector: feed chunks, get finished utterances back.

    Attributes:
        silence_s: Non-speech that ends an utterance.
        max_utterance_s: Longest utterance; longer speech is cut there.
        min_speech_s: Utterances with less speech than this are dropped as noise.
        pre_roll_s: Audio kept before the first speech frame (soft onsets).
        margin_db: How far above the noise floor speech must be.
        min_speech_db: Speech is never quieter than this.
    """

    silence_s: float = 0.6
    max_utterance_s: float = 15.0
    min_speech_s: float = 0.15
    pre_roll_s: float = 0.2
    margin_db: float = 15.0
    min_speech_db: float = -55.0
    _pending: Floats = field(default_factory=lambda: np.zeros(0, dtype=np.float32))
    _position: int = 0  # absolute sample index of _pending[0]
    _floor_db: float = -70.0
    _pre_roll: deque[Floats] = field(default_factory=deque)
    _frames: list[Floats] = field(default_factory=list)
    _start: int = 0
    _voiced: int = 0
    _silent_run: int = 0

    @property
    def position(self) -> int:
        """Samples fed so far."""
        return self._position + len(self._pending)

    def current(self) -> Utterance | None:
        """The utterance in progress, for partial results; None between utterances."""
        if not self._frames:
            return None
        return Utterance(self._start, np.concatenate(self._frames))

    def feed(self, chunk: Floats) -> list[Utterance]:
        """Adds audio.

        Args:
            chunk: The next samples, any length.

        Returns:
            The utterances that this chunk finished, in order.
        """
        self._pending = np.concatenate([self._pending, chunk.astype(np.float32)])
        finished: list[Utterance] = []
        while len(self._pending) >= FRAME:
            frame, self._pending = self._pending[:FRAME], self._pending[FRAME:]
            done = self._frame(frame, self._position)
            self._position += FRAME
            if done is not None:
                finished.append(done)
        return finished

    def flush(self) -> Utterance | None:
        """Ends the stream: the utterance in progress (with any tail) is finished."""
        if self._frames and len(self._pending):
            self._frames.append(self._pending)
        self._position += len(self._pending)
        self._pending = np.zeros(0, dtype=np.float32)
        return self._finish(trailing_silence=self._silent_run)

    def _frame(self, frame: Floats, start: int) -> Utterance | None:
        level = frame_db(frame)
        speech = level >= max(self._floor_db + self.margin_db, self.min_speech_db)
        if not speech:
            # The floor follows quiet frames only, and slowly, so speech never raises it.
            self._floor_db = 0.95 * self._floor_db + 0.05 * level
        if not self._frames:
            if speech:
                self._start = start - sum(len(f) for f in self._pre_roll)
                self._frames = [*self._pre_roll, frame]
                self._pre_roll.clear()
                self._voiced, self._silent_run = 1, 0
            else:
                self._pre_roll.append(frame)
                while len(self._pre_roll) * FRAME > self.pre_roll_s * SAMPLE_RATE:
                    self._pre_roll.popleft()
            return None
        self._frames.append(frame)
        if speech:
            self._voiced += 1
            self._silent_run = 0
        else:
            self._silent_run += 1
        if self._silent_run * FRAME >= self.silence_s * SAMPLE_RATE:
            return self._finish(trailing_silence=self._silent_run)
        if len(self._frames) * FRAME >= self.max_utterance_s * SAMPLE_RATE:
            return self._finish(trailing_silence=0)
        return None

    def _finish(self, trailing_silence: int) -> Utterance | None:
        if not self._frames:
            return None
        # Keep 0.1 s of the trailing silence: whisper likes a soft ending.
        keep = max(len(self._frames) - max(trailing_silence - 3, 0), 1)
        audio = np.concatenate(self._frames[:keep])
        voiced, start = self._voiced, self._start
        self._frames, self._voiced, self._silent_run = [], 0, 0
        if voiced * FRAME < self.min_speech_s * SAMPLE_RATE:
            return None
        return Utterance(start, audio)


def find_utterances(
    audio: Floats, *, silence_s: float = 0.6, max_utterance_s: float = 15.0
) -> list[Utterance]:
    """Runs the segmenter over a whole recording.

    Args:
        audio: 16 kHz mono samples.
        silence_s: Non-speech that ends an utterance.
        max_utterance_s: Longest utterance.

    Returns:
        The utterances in time order.
    """
    segmenter = UtteranceSegmenter(silence_s=silence_s, max_utterance_s=max_utterance_s)
    found = segmenter.feed(audio)
    last = segmenter.flush()
    return [*found, *([last] if last is not None else [])]


def quietest_cut(audio: Floats, search_from: int) -> int:
    """Where to cut a long recording: the start of its quietest frame after `search_from`.

    Args:
        audio: Samples.
        search_from: First sample considered.

    Returns:
        A sample index in [search_from, len(audio)].
    """
    region = audio[search_from:]
    n = len(region) // FRAME
    if n == 0:
        return len(audio)
    levels = [frame_db(region[i * FRAME : (i + 1) * FRAME]) for i in range(n)]
    return search_from + int(np.argmin(levels)) * FRAME
