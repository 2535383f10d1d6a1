"""`vocabulary`: how often the recognizer misses a meeting's vocabulary words, with and without it.

One sentence per vocabulary word (names, products) in two espeak-ng voices is recognized
by the real engine (tiny.en, on this machine's CPU) in batch mode and in live mode, once
without and once with the whole vocabulary in `RecognitionConfig.vocabulary`. The error
rate is the share of sentences whose word was not recognized (each sentence holds one
vocabulary word); the word error rate of the whole sentences is reported beside, since a
prompt listing words can also leak them where they were not said. Live audio is fed as
fast as the engine takes it: the live path cuts utterances by silence whatever the pace.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import numpy.typing as npt

from bench.context import BenchContext
from bench.model import Check, Result, ratio
from gen.gpu.v1 import gpu_pb2
from gpu_node.engines.base import RecognitionEngine, all_segments
from gpu_node.engines.real import create_real_engines
from tests.support.speech import speak, word_error_rate

MODEL = "tiny.en"
SENTENCES: tuple[tuple[str, str], ...] = (
    ("Priya", "Priya will send the report on Friday."),
    ("Siobhan", "Siobhan is leading the design review."),
    ("Nguyen", "Ask Nguyen about the contract."),
    ("Kubernetes", "We deploy it on Kubernetes next week."),
    ("Xiaoming", "Xiaoming fixed the login bug."),
    ("Grafana", "The Grafana dashboard shows the latency."),
    ("Oyelaran", "Oyelaran owns the budget."),
    ("Tobias", "Tobias will call the supplier."),
)
VOICES: tuple[tuple[str, ...], ...] = (
    ("-v", "en-us", "-p", "40", "-s", "160"),
    ("-v", "en-gb+f3", "-p", "70", "-s", "160"),
)
VOCABULARY = [word for word, _ in SENTENCES]
MODES = {"batch": gpu_pb2.RECOGNITION_MODE_BATCH, "live": gpu_pb2.RECOGNITION_MODE_LIVE}


async def _heard(
    engine: RecognitionEngine,
    audio: npt.NDArray[np.float32],
    mode: gpu_pb2.RecognitionMode.ValueType,
    vocabulary: list[str],
) -> str:
    """What the engine recognized in `audio` (final segments joined)."""

    async def chunks() -> AsyncIterator[npt.NDArray[np.float32]]:
        for start in range(0, len(audio), 1600):
            yield audio[start : start + 1600]

    config = gpu_pb2.RecognitionConfig(language="en", mode=mode, vocabulary=vocabulary)
    batches = engine.recognize(config, chunks())
    return " ".join(s.text for s in await all_segments(batches) if s.is_final)


def _has_word(text: str, word: str) -> bool:
    return re.search(rf"\b{re.escape(word)}\b", text, re.IGNORECASE) is not None


async def vocabulary(context: BenchContext) -> Result:
    """Both voices (quick: the first only); batch and live; without and with the words."""
    voices = VOICES[:1] if context.quick else VOICES
    recognition, _, _ = create_real_engines(
        asr_model=MODEL,
        asr_device="cpu",
        model_cache_dir=context.workdir / "models",
        summary_llm_url="",
    )
    missed: dict[str, int] = {}
    wer: dict[str, float] = {}
    still_missed: list[str] = []
    for voice in voices:
        for word, text in SENTENCES:
            audio = speak([(voice, text)], context.workdir / "speech")
            for mode_name, mode in MODES.items():
                for given in (False, True):
                    key = f"{mode_name}_{'with' if given else 'without'}"
                    got = await _heard(recognition, audio, mode, VOCABULARY if given else [])
                    missed[key] = missed.get(key, 0) + (not _has_word(got, word))
                    wer[key] = wer.get(key, 0.0) + word_error_rate(text, got)
                    if given and not _has_word(got, word):
                        still_missed.append(f"{word} ({mode_name}, {voice[1]}): {got!r}")
    count = len(voices) * len(SENTENCES)
    rates = {key: round(value / count, 3) for key, value in missed.items()}
    details: dict[str, Any] = {"model": MODEL, "sentences": count}
    details.update({f"{key}_error_rate": rate for key, rate in rates.items()})
    details.update({f"{key}_sentence_wer": round(v / count, 3) for key, v in wer.items()})
    details["missed_with_vocabulary"] = "; ".join(still_missed) or "none"
    checks = [
        Check(
            f"vocabulary word error rate, {mode}, with vs without the vocabulary",
            f"{rates[f'{mode}_with']:g} vs {rates[f'{mode}_without']:g}",
            "at most half",
            rates[f"{mode}_with"] <= rates[f"{mode}_without"] / 2,
        )
        for mode in MODES
    ]
    return Result(
        name="vocabulary",
        value=rates["batch_with"],
        unit="vocabulary words missed, batch, with the vocabulary",
        reference=rates["batch_without"],
        ratio=ratio(rates["batch_with"], rates["batch_without"]),
        goal="the vocabulary halves the words missed, batch and live",
        met=all(c.met for c in checks),
        checks=checks,
        details=details,
        limits=(
            f"{count} short espeak-ng sentences with one rare name or product each, on "
            f"{MODEL}, the smallest English model (larger models miss fewer words to start "
            f"with); one word is 1/{count} of a rate; CPU time shared with other work only "
            "slows it."
        ),
    )
