"""Whisper on a GPU: real-time factor at batch 1 and batched, and live streams per GPU.

Usage: python -m bench.gpu_asr [--device cuda|cpu] [--models tiny.en,base] [--dry-run]
       [--out FILE]. `bench/gpu.sh` runs it after checking the GPU; `--dry-run` runs every
step tiny on the CPU so the script itself can be checked on any machine.

For each model, on the two-voice espeak meeting (tests/support/speech.py) repeated to
`--audio-s` seconds:

- **RTF, batch 1**: `WhisperModel.transcribe` (beam 5, as gpu_node's batch mode), warm;
- **RTF, batched**: faster-whisper's `BatchedInferencePipeline` at each `--batch-sizes`;
- **live streams**: K streams at once, each "speaking" the meeting's lines in real time:
  each line is handed over when it ends (as gpu_node's live mode does after its silence
  rule) and its latency runs from that moment to its text. K doubles until the p99 latency
  plus the silence rule (`asr_live_silence_s`) passes the goal; the last K that met it is
  the streams one GPU carries.

Prints (and with `--out` writes) one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from bench.loadgen import percentile
from gpu_node.engines.real_settings import RealEngineSettings
from gpu_node.engines.whisper_models import resolve_model
from tests.support.speech import SAMPLE_RATE, Recording, make_meeting

Audio = npt.NDArray[np.float32]
BEAM = RealEngineSettings.model_fields["asr_beam_size"].default
SILENCE_S = RealEngineSettings.model_fields["asr_live_silence_s"].default
LATENCY_GOAL_S = 1.5


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu_asr", description=__doc__)
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--compute-type", default="", help="default: float16 (cuda), int8 (cpu)")
    parser.add_argument("--models", default="tiny.en,base")
    parser.add_argument("--audio-s", type=float, default=300.0)
    parser.add_argument("--batch-sizes", default="4,8,16")
    parser.add_argument("--live-s", type=float, default=30.0, help="audio per live stream")
    parser.add_argument("--max-streams", type=int, default=256)
    parser.add_argument("--goal-s", type=float, default=LATENCY_GOAL_S)
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="tiny.en on the CPU, a few seconds of audio, batch 2, up to 2 streams",
    )
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    return parser


def _transcribe(model: Any, audio: Audio) -> str:
    segments, _ = model.transcribe(audio, beam_size=BEAM, language="en")
    return " ".join(segment.text for segment in segments)


def _rtf(run: Any, audio: Audio, repeat: int) -> float:
    run(audio[: 5 * SAMPLE_RATE])  # warm-up: the first call allocates and compiles
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        run(audio)
        times.append(time.perf_counter() - started)
    return round(statistics.median(times) / (len(audio) / SAMPLE_RATE), 4)


async def _streams(model: Any, meeting: Recording, streams: int, live_s: float) -> list[float]:
    """Latencies (s) of every line of `streams` real-time speakers, from the line's end."""
    pieces = [
        (
            meeting.audio[int(line.start_s * SAMPLE_RATE) : int(line.end_s * SAMPLE_RATE)],
            repeat * meeting.duration_s + line.end_s,
        )
        for repeat in range(int(np.ceil(live_s / meeting.duration_s)))
        for line in meeting.lines
    ]
    # The lines that end within `live_s` (at least one).
    schedule = [piece for piece in pieces if piece[1] <= live_s] or pieces[:1]
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    with ThreadPoolExecutor(streams) as pool:

        async def speaker(number: int) -> None:
            # The first line is due at once (the wait before it measures nothing); starts
            # are staggered so that the streams' lines do not all end at the same moment.
            origin = time.monotonic() - schedule[0][1] + number * 2.0 / streams
            for audio, end_s in schedule:
                due = origin + end_s
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                await loop.run_in_executor(pool, _transcribe, model, audio)
                latencies.append(time.monotonic() - due)

        await asyncio.gather(*(speaker(n) for n in range(streams)))
    return latencies


def _load(name: str, device: str, compute_type: str, workers: int, cache: Path) -> Any:
    from faster_whisper import WhisperModel

    return WhisperModel(
        str(resolve_model(name, cache)),
        device=device,
        compute_type=compute_type,
        cpu_threads=os.cpu_count() or 1,
        num_workers=workers,
    )


async def _model_figures(
    model: Any, audio: Audio, meeting: Recording, args: argparse.Namespace
) -> dict[str, Any]:
    from faster_whisper import BatchedInferencePipeline

    repeat = 1 if args.dry_run else 3
    figures: dict[str, Any] = {"rtf_batch_1": _rtf(lambda a: _transcribe(model, a), audio, repeat)}
    batched = BatchedInferencePipeline(model=model)
    for size in (int(s) for s in args.batch_sizes.split(",")):

        def run(a: Audio, size: int = size) -> None:
            segments, _ = batched.transcribe(a, batch_size=size, beam_size=BEAM, language="en")
            for _ in segments:
                pass

        figures[f"rtf_batched_{size}"] = _rtf(run, audio, repeat)
    levels: list[dict[str, float]] = []
    streams = 1
    while streams <= args.max_streams:
        latencies = await _streams(model, meeting, streams, args.live_s)
        p99 = percentile(latencies, 99) + SILENCE_S
        levels.append(
            {
                "streams": streams,
                "p50_s": round(percentile(latencies, 50) + SILENCE_S, 3),
                "p99_s": round(p99, 3),
                "lines": len(latencies),
            }
        )
        if p99 >= args.goal_s:
            break
        streams *= 2
    met = [level["streams"] for level in levels if level["p99_s"] < args.goal_s]
    figures["live_levels"] = levels
    figures["live_streams_within_goal"] = max(met, default=0)
    return figures


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Runs every measurement; returns the figures."""
    if args.dry_run:
        args.device, args.models, args.audio_s = "cpu", "tiny.en", 6.0
        args.batch_sizes, args.live_s, args.max_streams = "2", 4.0, 2
    compute_type = args.compute_type or ("float16" if args.device == "cuda" else "int8")
    result: dict[str, Any] = {
        "device": args.device,
        "compute_type": compute_type,
        "dry_run": args.dry_run,
        "beam_size": BEAM,
        "latency_goal_s": args.goal_s,
        "silence_rule_s": SILENCE_S,
        "models": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        meeting = await asyncio.to_thread(make_meeting, Path(tmp) / "speech")
        repeats = max(1, int(np.ceil(args.audio_s / meeting.duration_s)))
        audio = np.tile(meeting.audio, repeats)[: int(args.audio_s * SAMPLE_RATE)]
        result["audio_s"] = round(len(audio) / SAMPLE_RATE, 1)
        for name in args.models.split(","):
            model = _load(name, args.device, compute_type, args.max_streams, Path(tmp) / "m")
            result["models"][name] = await _model_figures(model, audio, meeting, args)
    return result


def main(argv: list[str] | None = None) -> int:
    """Runs the measurements and prints the JSON."""
    args = _parser().parse_args(argv)
    result = asyncio.run(measure(args))
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
