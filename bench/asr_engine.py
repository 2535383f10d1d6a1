"""Real-time factor, time to first segment and peak memory of the whisper engine.

Usage: uv run python bench/asr_engine.py [--model tiny.en|base|PATH] [--repeat N]

Synthesises the two-speaker test meeting (espeak-ng + sox, about 27 s), loads the model
through `create_real_engines` as gpu_node does, and transcribes the meeting in batch mode
N times (the first run is reported separately: it includes one-off warm-up). Prints JSON.
Run one model per process, so that peak RSS belongs to that model alone.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np

from gen.gpu.v1 import gpu_pb2
from gpu_node.engines.base import RecognitionEngine
from tests.support.speech import make_meeting, word_error_rate


async def transcribe_once(engine: RecognitionEngine, audio: np.ndarray) -> tuple[float, float, str]:
    async def chunks() -> AsyncIterator[np.ndarray]:
        for start in range(0, len(audio), 16000):
            yield audio[start : start + 16000]

    started = time.perf_counter()
    first = None
    texts: list[str] = []
    async for batch in engine.recognize(gpu_pb2.RecognitionConfig(), chunks()):
        if first is None:
            first = time.perf_counter() - started
        texts.extend(segment.text for segment in batch)
    return time.perf_counter() - started, first or 0.0, " ".join(texts)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()

    from gpu_node.engines.real import create_real_engines

    with tempfile.TemporaryDirectory() as tmp:
        meeting = make_meeting(Path(tmp) / "speech")
        started = time.perf_counter()
        recognition, _, _ = create_real_engines(
            asr_model=args.model, asr_device=args.device, model_cache_dir=Path(tmp) / "models"
        )
        load_s = time.perf_counter() - started
        runs = [await transcribe_once(recognition, meeting.audio) for _ in range(args.repeat + 1)]
    warm = runs[1:]
    print(
        json.dumps(
            {
                "model": args.model,
                "engine": recognition.name,
                "audio_s": round(meeting.duration_s, 2),
                "load_s": round(load_s, 2),
                "cold_rtf": round(runs[0][0] / meeting.duration_s, 3),
                "rtf": round(statistics.median(r[0] for r in warm) / meeting.duration_s, 3),
                "first_segment_s": round(statistics.median(r[1] for r in warm), 2),
                "wer": round(word_error_rate(meeting.text, warm[-1][2]), 3),
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
