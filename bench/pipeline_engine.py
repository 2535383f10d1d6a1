"""The real engines in one process on one recording: the reference of `pipeline_overhead`.

Usage: python -m bench.pipeline_engine WAV [--model tiny.en] [--threads 0] [--warm-up-s 8]

Loads the engines through `create_real_engines` as gpu_node does (same model, same
threads), warms them up on the recording's first seconds (as the mesh's node is warmed up
by a first job), then runs what a processing job asks of the GPU, on the same decoded
audio and with the same requests: recognition in batch mode, diarization of the final
segments' spans, a summary of the labelled lines. Prints one JSON object: each stage's
wall time and the process's CPU time, the segment count and the speakers found.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

from gen.gpu.v1 import gpu_pb2
from gpu_node.engines.base import SAMPLE_RATE, Audio, pcm16_to_float
from gpu_node.engines.factory import Engines
from meeting_service.recordings.decode import BLOCK_BYTES

# The job sends decoded audio in messages of `BLOCK_BYTES`; the node hands each to the
# engine as it arrives, so the reference feeds the engine the same pieces.
CHUNK_SAMPLES = BLOCK_BYTES // 2


def decode(path: Path) -> Audio:
    """The WAV's samples as the node receives them (LINEAR16 after the 44-byte header)."""
    return pcm16_to_float(path.read_bytes()[44:])


async def _chunks(audio: Audio) -> AsyncIterator[Audio]:
    for start in range(0, len(audio), CHUNK_SAMPLES):
        yield audio[start : start + CHUNK_SAMPLES]


async def process(engines: Engines, audio: Audio) -> dict[str, float | int]:
    """Recognition, diarization and summary of `audio`, timed per stage."""
    started = time.perf_counter()
    config = gpu_pb2.RecognitionConfig(
        encoding=gpu_pb2.AUDIO_ENCODING_LINEAR16,
        sample_rate_hertz=SAMPLE_RATE,
        mode=gpu_pb2.RECOGNITION_MODE_BATCH,
    )
    finals = [
        segment
        async for batch in engines.recognition.recognize(config, _chunks(audio))
        for segment in batch
        if segment.is_final
    ]
    recognized = time.perf_counter()
    spans = [gpu_pb2.TimeSpan(start_offset=s.start_offset, end_offset=s.end_offset) for s in finals]
    diarized = await engines.diarization.diarize(gpu_pb2.DiarizationConfig(spans=spans), audio)
    speakers = {turn.span_index: turn.speaker for turn in diarized.turns}
    labelled = time.perf_counter()
    lines = [
        gpu_pb2.TranscriptLine(
            speaker=speakers.get(i, ""), text=seg.text, start_offset=seg.start_offset
        )
        for i, seg in enumerate(finals)
    ]
    await engines.summarization.summarize(lines, "en", 0)
    done = time.perf_counter()
    return {
        "recognition_s": recognized - started,
        "diarization_s": labelled - recognized,
        "summary_s": done - labelled,
        "segments": len(finals),
        "speakers": diarized.speaker_count,
    }


async def main(argv: list[str] | None = None) -> None:
    """Runs the reference and prints its figures as JSON."""
    parser = argparse.ArgumentParser()
    parser.add_argument("wav", type=Path)
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--warm-up-s", type=float, default=8.0)
    args = parser.parse_args(argv)

    from gpu_node.engines.real import create_real_engines

    engines = Engines(
        *create_real_engines(asr_model=args.model, asr_device="cpu", asr_threads=args.threads)
    )
    audio = decode(args.wav)
    await process(engines, audio[: int(args.warm_up_s * SAMPLE_RATE)])
    cpu_before = time.process_time()
    started = time.perf_counter()
    audio = decode(args.wav)
    decoded = time.perf_counter()
    figures = await process(engines, audio)
    total = time.perf_counter() - started
    print(
        json.dumps(
            {
                **figures,
                "decode_s": decoded - started,
                "total_s": total,
                "cpu_s": time.process_time() - cpu_before,
                "audio_s": len(audio) / SAMPLE_RATE,
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
