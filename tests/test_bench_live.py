"""`live_latency` counts from the frame that lets the mock engine close each segment."""

from __future__ import annotations

import numpy as np

from bench.scenarios.live import FRAME_S, SAMPLE_RATE, _closing_frame, _utterances
from gpu_node.engines.mock import EnergySegmenter


def test_each_final_is_counted_from_the_frame_that_closed_it() -> None:
    # Utterances every 2 s do not fall on the engine's 30 ms frames: a final can need the
    # next 100 ms frame after the one its nominal end (tone end + 300 ms) falls in.
    audio = np.frombuffer(_utterances(6), dtype="<i2").astype(np.float32) / 32768.0
    frame = round(FRAME_S * SAMPLE_RATE)
    segmenter = EnergySegmenter()
    closed: list[tuple[int, float]] = []
    for number, start in enumerate(range(0, audio.size, frame)):
        for run in segmenter.push(audio[start : start + frame]):
            closed.append((number, run.end / SAMPLE_RATE))

    assert len(closed) == 6
    nominal = [round((2 * k + 1.5) / FRAME_S) - 1 for k in range(6)]
    assert [number for number, _ in closed] != nominal
    for number, end_s in closed:
        assert _closing_frame(end_s) == number
