"""A two-speaker "meeting" with a known script, spoken by espeak-ng and resampled by sox.

Nothing is downloaded: each line is synthesised with one of two clearly different voices,
resampled to 16 kHz mono, and joined with known pauses, so tests know exactly who said what
and when. Also a small word error rate function to compare transcripts with the script.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import wave
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

SAMPLE_RATE = 16_000

# Two voices that differ in accent, sex and pitch.
VOICES: dict[str, tuple[str, ...]] = {
    "alex": ("-v", "en-us", "-p", "40", "-s", "160"),
    "maria": ("-v", "en-gb+f3", "-p", "70", "-s", "160"),
}

SCRIPT: tuple[tuple[str, str], ...] = (
    ("alex", "Good morning everyone, let's review the quarterly budget."),
    ("maria", "Thanks. The marketing costs went up again this quarter."),
    ("alex", "We need a clear plan to reduce those costs."),
    ("maria", "Maria will send the report on Friday."),
    ("alex", "Great. I will schedule a meeting with the finance team next week."),
    ("maria", "The new website launch is still planned for the spring."),
    ("alex", "Perfect, thank you all for joining today."),
)

# A line whose name tiny.en mis-hears without a vocabulary ("Priya will" as "We'll"; see
# the bench's `vocabulary` scenario).
PRIYA = (("-v", "en-us", "-p", "40", "-s", "160"), "Priya will send the report on Friday.")

PAUSE_S = 0.8
LEAD_S = 0.5


@dataclass(frozen=True)
class Line:
    """One line of the script, where it lies in the recording."""

    speaker: str
    text: str
    start_s: float
    end_s: float


@dataclass(frozen=True)
class Recording:
    """The synthesised meeting."""

    audio: npt.NDArray[np.float32]
    lines: tuple[Line, ...]
    wav_path: Path

    @property
    def text(self) -> str:
        """The whole script as one string."""
        return " ".join(line.text for line in self.lines)

    @property
    def duration_s(self) -> float:
        """Length in seconds."""
        return len(self.audio) / SAMPLE_RATE


def tools_missing() -> list[str]:
    """Names the speech tools that are not on PATH."""
    return [tool for tool in ("espeak-ng", "sox") if shutil.which(tool) is None]


def _synthesise(text: str, voice: tuple[str, ...], directory: Path, name: str) -> np.ndarray:
    raw = directory / f"{name}.raw.wav"
    resampled = directory / f"{name}.16k.wav"
    subprocess.run(["espeak-ng", *voice, "-w", str(raw), text], check=True, capture_output=True)
    subprocess.run(
        ["sox", str(raw), "-r", str(SAMPLE_RATE), "-c", "1", "-b", "16", str(resampled)],
        check=True,
        capture_output=True,
    )
    samples = read_wav(resampled)
    # espeak pads each line with its own silence; trim it so the line times are exact.
    loud = np.flatnonzero(np.abs(samples) > 0.01)
    return samples[loud[0] : loud[-1] + 1] if len(loud) else samples


def read_wav(path: Path) -> npt.NDArray[np.float32]:
    """Reads a 16-bit mono WAV file as float32 samples in [-1, 1]."""
    with wave.open(str(path), "rb") as wav:
        data = wav.readframes(wav.getnframes())
    return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0


def write_wav(path: Path, audio: npt.NDArray[np.float32]) -> None:
    """Writes float32 samples as a 16 kHz 16-bit mono WAV file."""
    pcm = np.clip(np.round(audio * 32767.0), -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(SAMPLE_RATE)
        wav.writeframes(pcm.tobytes())


def make_meeting(directory: Path) -> Recording:
    """Synthesises the two-speaker meeting (about 30 s) into `directory`.

    Args:
        directory: Where the intermediate and final WAV files go.

    Returns:
        The recording with the time of every line.

    Raises:
        RuntimeError: espeak-ng or sox is not installed.
    """
    missing = tools_missing()
    if missing:
        raise RuntimeError(f"test speech needs {' and '.join(missing)} (apt-get install them)")
    directory.mkdir(parents=True, exist_ok=True)
    pieces: list[np.ndarray] = [np.zeros(int(LEAD_S * SAMPLE_RATE), dtype=np.float32)]
    lines: list[Line] = []
    position = len(pieces[0])
    for number, (speaker, text) in enumerate(SCRIPT):
        samples = _synthesise(text, VOICES[speaker], directory, f"line{number}")
        lines.append(
            Line(speaker, text, position / SAMPLE_RATE, (position + len(samples)) / SAMPLE_RATE)
        )
        pause = np.zeros(int(PAUSE_S * SAMPLE_RATE), dtype=np.float32)
        pieces += [samples, pause]
        position += len(samples) + len(pause)
    audio = np.concatenate(pieces).astype(np.float32)
    path = directory / "meeting.wav"
    write_wav(path, audio)
    return Recording(audio, tuple(lines), path)


def speak(
    lines: Sequence[tuple[tuple[str, ...], str]], directory: Path, pause_s: float = PAUSE_S
) -> npt.NDArray[np.float32]:
    """Synthesises lines, each with its espeak-ng arguments, joined by pauses.

    Args:
        lines: (espeak-ng arguments such as ("-v", "de"), text) per line.
        directory: Where the intermediate WAV files go.
        pause_s: Silence before and after each line.

    Returns:
        16 kHz mono samples.
    """
    directory.mkdir(parents=True, exist_ok=True)
    pause = np.zeros(int(pause_s * SAMPLE_RATE), dtype=np.float32)
    pieces: list[np.ndarray] = [pause]
    for number, (voice, text) in enumerate(lines):
        pieces += [_synthesise(text, voice, directory, f"spoken{number}"), pause]
    return np.concatenate(pieces).astype(np.float32)


def normalise_words(text: str) -> list[str]:
    """Lower-cases, drops punctuation and splits into words."""
    text = text.lower().replace("'", "")
    return re.sub(r"[^a-z0-9]+", " ", text).split()


def word_error_rate(reference: str, hypothesis: str) -> float:
    """Normalised word error rate: word-level edit distance over the reference length.

    Args:
        reference: What was said.
        hypothesis: What was recognised.

    Returns:
        (substitutions + deletions + insertions) / reference words.
    """
    ref, hyp = normalise_words(reference), normalise_words(hypothesis)
    previous = list(range(len(hyp) + 1))
    for i, ref_word in enumerate(ref, start=1):
        current = [i] + [0] * len(hyp)
        for j, hyp_word in enumerate(hyp, start=1):
            current[j] = min(
                previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ref_word != hyp_word)
            )
        previous = current
    return previous[-1] / max(len(ref), 1)
