"""`asr`: real-time factor, first segment and peak RSS of the whisper engine on CPU.

Runs `bench/asr_engine.py` (the engines engineer's measurement) once per model, each in a
fresh process so that its peak RSS is that model's alone, on every core of this machine.
The reference is faster-whisper's own published CPU figure, quoted (a different machine
and a larger model: it places our figure, it is not a like-for-like ratio).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

from bench.context import BenchContext
from bench.model import Check, Result, ratio

RTF_LIMIT = 0.15
# faster-whisper's README (PyPI 0.4.0, https://pypi.org/project/faster-whisper/0.4.0):
# "small" model, int8, beam 5, 13 minutes of audio in 2m04s with 8 threads on an Intel
# Xeon Gold 6226R: RTF 124 s / 780 s.
PUBLISHED_RTF = round(124 / 780, 3)
PUBLISHED = "faster-whisper README: small, int8, beam 5, 8 threads Xeon Gold 6226R, 13 min in 2m04s"


async def _measure(model: str, repeat: int) -> dict[str, object]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.asr_engine",
        "--model",
        model,
        "--repeat",
        str(repeat),
        "--device",
        "cpu",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "MESH_LOG_LEVEL": "WARNING"},
    )
    out, err = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"asr_engine --model {model} failed:\n{err.decode()[-2000:]}")
    result: dict[str, object] = json.loads(out.decode().strip().splitlines()[-1])
    return result


async def asr(context: BenchContext) -> Result:
    """tiny.en and base (quick: tiny.en only, one timed run)."""
    models, repeat = (["tiny.en"], 1) if context.quick else (["tiny.en", "base"], 3)
    figures = {model: await _measure(model, repeat) for model in models}
    checks = [
        Check(
            f"RTF {model}",
            f"{data['rtf']}",
            f"<= {RTF_LIMIT}",
            float(str(data["rtf"])) <= RTF_LIMIT,
        )
        for model, data in figures.items()
    ]
    headline = float(str(figures["tiny.en"]["rtf"]))
    details: dict[str, object] = {"published_reference": PUBLISHED, "cores": os.cpu_count()}
    for model, data in figures.items():
        for key in (
            "rtf",
            "cold_rtf",
            "first_segment_s",
            "peak_rss_mb",
            "wer",
            "load_s",
            "audio_s",
        ):
            details[f"{model}_{key}"] = data.get(key)
    return Result(
        name="asr",
        value=headline,
        unit="RTF (tiny.en)",
        reference=PUBLISHED_RTF,
        ratio=ratio(headline, PUBLISHED_RTF),
        goal="RTF <= 0.15 on 2 cores",
        met=all(c.met for c in checks),
        checks=checks,
        details=details,
        limits=(
            "CPU: CTranslate2 int8 decoding with beam 5 on every core, shared with other "
            "work on this machine; the test meeting is ~27 s of espeak speech."
        ),
    )
