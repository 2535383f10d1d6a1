"""Live first: batch work on a node pauses while a live final is decoded, never for good."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np

from gen.gpu.v1 import gpu_pb2
from gpu_node.engines.base import all_segments
from gpu_node.engines.live_first import LiveFirst
from gpu_node.engines.speakers import ResemblyzerDiarizationEngine
from gpu_node.engines.voice_encoder import VoiceEncoder
from gpu_node.engines.whisper import WhisperRecognitionEngine
from tests.engines import ENGINES
from tests.support.engines import chunked
from tests.support.gpu import eventually
from tests.support.speech import SAMPLE_RATE, Recording, word_error_rate

pytestmark = ENGINES

BATCH = gpu_pb2.RecognitionConfig(mode=gpu_pb2.RECOGNITION_MODE_BATCH, language="en")


def lines(meeting: Recording, first: int, last: int) -> tuple[np.ndarray, str]:
    start = int((meeting.lines[first].start_s - 0.3) * SAMPLE_RATE)
    end = int((meeting.lines[last].end_s + 0.5) * SAMPLE_RATE)
    text = " ".join(line.text for line in meeting.lines[first : last + 1])
    return meeting.audio[start:end], text


def engine_with(gate: LiveFirst, model_cache: Path) -> WhisperRecognitionEngine:
    from gpu_node.engines.whisper_models import choose_placement, load_model, resolve_model

    model = load_model(resolve_model("tiny.en", model_cache), choose_placement("cpu", "auto", 0, 0))
    return WhisperRecognitionEngine(model, "whisper:tiny.en", live_first=gate)


async def test_batch_waits_for_a_live_final_and_then_completes(
    model_cache: Path, meeting: Recording
) -> None:
    gate = LiveFirst(max_wait_s=600.0)
    engine = engine_with(gate, model_cache)
    audio, text = lines(meeting, 2, 3)
    got: list[gpu_pb2.RecognizedSegment] = []

    async def transcribe() -> None:
        got.extend(await all_segments(engine.recognize(BATCH, chunked(audio))))

    with gate.live():
        batch = asyncio.create_task(transcribe())
        await eventually(lambda: gate.waiting == 1, "batch paused at the gate", within=120.0)
        assert got == [] and not batch.done()
    await asyncio.wait_for(batch, 300.0)
    assert word_error_rate(text, " ".join(s.text for s in got)) < 0.15


async def test_batch_is_never_starved_by_live_finals(model_cache: Path, meeting: Recording) -> None:
    gate = LiveFirst(max_wait_s=0.01)
    engine = engine_with(gate, model_cache)
    diarization = ResemblyzerDiarizationEngine(VoiceEncoder(), live_first=gate)
    audio, text = lines(meeting, 2, 3)
    # Live finals back to back for the whole job: each step still goes on after its wait.
    with gate.live():
        segments = await all_segments(engine.recognize(BATCH, chunked(audio)))
        diarized = await diarization.diarize(gpu_pb2.DiarizationConfig(), chunked(audio))
    assert word_error_rate(text, " ".join(s.text for s in segments)) < 0.15
    assert diarized.speaker_count >= 1


async def test_live_and_batch_on_one_node_both_finish(
    model_cache: Path, meeting: Recording
) -> None:
    # A gate that a live final failed to release would hold the batch job for 600 s a step.
    gate = LiveFirst(max_wait_s=600.0)
    engine = engine_with(gate, model_cache)
    audio, text = lines(meeting, 2, 3)
    live = gpu_pb2.RecognitionConfig(mode=gpu_pb2.RECOGNITION_MODE_LIVE, language="en")

    async def run(config: gpu_pb2.RecognitionConfig) -> str:
        segments = await all_segments(engine.recognize(config, chunked(audio)))
        return " ".join(s.text for s in segments if s.is_final)

    live_text, batch_text = await asyncio.wait_for(asyncio.gather(run(live), run(BATCH)), 300.0)
    assert word_error_rate(text, live_text) < 0.2, live_text
    assert word_error_rate(text, batch_text) < 0.15, batch_text
    assert gate.waiting == 0
