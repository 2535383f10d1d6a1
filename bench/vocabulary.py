"""How often the recognizer gets a meeting's vocabulary words right, with and without it.

Usage: uv run python bench/vocabulary.py [--model tiny.en|base|PATH]

Synthesises one sentence per vocabulary word (names, products) in two espeak-ng voices,
recognizes each in batch mode and in live mode (real-time pacing is not needed: the live
path cuts utterances by silence whatever the pace), once without and once with the whole
vocabulary in `RecognitionConfig.vocabulary`, and counts the sentences whose word was
missed. Prints JSON: the miss rate of each mode and the sentences heard.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np

from gen.gpu.v1 import gpu_pb2
from gpu_node.engines.base import RecognitionEngine
from tests.support.speech import speak

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


async def heard(
    engine: RecognitionEngine, audio: np.ndarray, mode: int, vocabulary: list[str]
) -> str:
    """What the engine recognized in `audio` (final segments joined)."""

    async def chunks() -> AsyncIterator[np.ndarray]:
        for start in range(0, len(audio), 1600):
            yield audio[start : start + 1600]

    config = gpu_pb2.RecognitionConfig(language="en", mode=mode, vocabulary=vocabulary)  # type: ignore[arg-type]
    texts = [s.text async for s in engine.recognize(config, chunks()) if s.is_final]
    return " ".join(texts)


def has_word(text: str, word: str) -> bool:
    """Whether `word` appears in `text` as a word, ignoring case."""
    return re.search(rf"\b{re.escape(word)}\b", text, re.IGNORECASE) is not None


async def measure(model: str) -> dict[str, Any]:
    from gpu_node.engines.real import create_real_engines

    with tempfile.TemporaryDirectory() as scratch:
        recognition, _, _ = create_real_engines(
            asr_model=model, asr_device="cpu", model_cache_dir=Path(scratch) / "models"
        )
        modes = {"batch": gpu_pb2.RECOGNITION_MODE_BATCH, "live": gpu_pb2.RECOGNITION_MODE_LIVE}
        results: dict[str, Any] = {"model": model, "sentences": len(SENTENCES) * len(VOICES)}
        samples: list[dict[str, str]] = []
        for voice in VOICES:
            for word, text in SENTENCES:
                audio = speak([(voice, text)], Path(scratch) / "speech")
                row = {"voice": voice[1], "word": word}
                for mode_name, mode in modes.items():
                    for given in (False, True):
                        key = f"{mode_name}_{'with' if given else 'without'}"
                        got = await heard(recognition, audio, mode, VOCABULARY if given else [])
                        row[key] = got
                        results.setdefault(f"{key}_missed", 0)
                        results[f"{key}_missed"] += not has_word(got, word)
                samples.append(row)
        for key in [k for k in results if k.endswith("_missed")]:
            results[key.removesuffix("_missed") + "_miss_rate"] = round(
                results[key] / results["sentences"], 3
            )
        results["heard"] = samples
        return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny.en")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(measure(args.model)), indent=2))


if __name__ == "__main__":
    main()
