"""The mock engine: honest about its input, deterministic, partial before final."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator

import numpy as np
import pytest
from google.protobuf import duration_pb2

from gen.gpu.v1 import gpu_pb2
from gpu_node.engines.base import Audio, all_segments
from gpu_node.engines.factory import create_engines
from gpu_node.engines.mock import (
    MockDiarizationEngine,
    MockRecognitionEngine,
    MockSummarizationEngine,
)
from tests.support.engines import chunked
from tests.support.gpu import conversation, silence, tone


async def pieces(audio: Audio, size: int) -> AsyncIterator[Audio]:
    for start in range(0, audio.size, size):
        yield audio[start : start + size]


async def run(audio: Audio, size: int = 4000, **config: object) -> list[gpu_pb2.RecognizedSegment]:
    engine = MockRecognitionEngine()
    settings = gpu_pb2.RecognitionConfig(**config)  # type: ignore[arg-type]
    batches = engine.recognize(settings, pieces(audio, size))
    return await all_segments(batches)


def seconds(value: duration_pb2.Duration) -> float:
    return value.ToNanoseconds() / 1e9


async def test_silence_gives_no_segments() -> None:
    assert await run(silence(5.0)) == []
    quiet_noise = np.random.default_rng(1).normal(0, 0.003, 16_000 * 3).astype(np.float32)
    assert await run(quiet_noise, interim_results=True) == []


async def test_each_utterance_is_one_final_segment_at_its_time() -> None:
    segments = await run(conversation())
    assert [s.segment_index for s in segments] == [0, 1, 2]
    assert all(s.is_final for s in segments)
    # The utterances are at 0.5-2.0 s, 2.6-3.8 s and 4.4-5.3 s.
    for segment, (start, end) in zip(segments, [(0.5, 2.0), (2.6, 3.8), (4.4, 5.3)], strict=True):
        assert seconds(segment.start_offset) == pytest.approx(start, abs=0.05)
        assert seconds(segment.end_offset) == pytest.approx(end, abs=0.05)
        assert segment.text.startswith(f"speech {segment.segment_index + 1} (")
        assert segment.words, "a final segment names its stretches"
    assert segments[0].text != segments[1].text


async def test_same_audio_same_result() -> None:
    audio = conversation()
    first = await run(audio, size=3000, interim_results=True)
    assert first == await run(audio.copy(), size=3000, interim_results=True)


async def test_finals_do_not_depend_on_chunking() -> None:
    audio = conversation()
    reference = await run(audio, size=16_000)
    for size in (1, 479, 480, 7777, audio.size):
        assert await run(audio, size=size) == reference


async def test_different_audio_gives_different_text() -> None:
    low = await run(np.concatenate([tone(1.0, 180.0), silence(0.5)]))
    high = await run(np.concatenate([tone(1.0, 420.0), silence(0.5)]))
    assert len(low) == len(high) == 1
    assert low[0].text != high[0].text


async def test_partials_come_before_the_final_with_the_same_index() -> None:
    segments = await run(np.concatenate([tone(3.5, 200.0), silence(0.5)]), interim_results=True)
    assert [s.is_final for s in segments][-1] is True
    partials = [s for s in segments if not s.is_final]
    assert len(partials) >= 2
    assert {s.segment_index for s in segments} == {0}
    ends = [seconds(s.end_offset) for s in segments]
    assert ends == sorted(ends), "each version covers at least what the previous did"
    assert not [s for s in await run(np.concatenate([tone(3.5), silence(0.5)])) if not s.is_final]


async def test_start_offset_shifts_every_time() -> None:
    plain = await run(conversation())
    offset = duration_pb2.Duration(seconds=60)
    shifted = await run(conversation(), start_offset=offset)
    for a, b in zip(plain, shifted, strict=True):
        assert seconds(b.start_offset) == pytest.approx(seconds(a.start_offset) + 60)
        assert seconds(b.words[0].end_offset) == pytest.approx(seconds(a.words[0].end_offset) + 60)


async def test_diarization_labels_voices_by_pitch_in_order_of_appearance() -> None:
    audio = conversation()
    segments = await run(audio)
    config = gpu_pb2.DiarizationConfig(
        spans=[
            gpu_pb2.TimeSpan(start_offset=s.start_offset, end_offset=s.end_offset) for s in segments
        ]
    )
    result = await MockDiarizationEngine().diarize(config, chunked(audio))
    assert [t.speaker for t in result.turns] == ["SPEAKER_1", "SPEAKER_2", "SPEAKER_1"]
    assert [t.span_index for t in result.turns] == [0, 1, 2]
    assert result.speaker_count == 2
    assert await MockDiarizationEngine().diarize(config, chunked(audio)) == result

    one = await MockDiarizationEngine().diarize(
        gpu_pb2.DiarizationConfig(num_speakers=1, spans=config.spans), chunked(audio)
    )
    assert {t.speaker for t in one.turns} == {"SPEAKER_1"}


async def test_diarization_without_spans_finds_speech_itself() -> None:
    result = await MockDiarizationEngine().diarize(
        gpu_pb2.DiarizationConfig(), chunked(conversation())
    )
    assert [t.span_index for t in result.turns] == [-1, -1, -1]
    assert [t.speaker for t in result.turns] == ["SPEAKER_1", "SPEAKER_2", "SPEAKER_1"]
    empty = await MockDiarizationEngine().diarize(
        gpu_pb2.DiarizationConfig(), chunked(silence(2.0))
    )
    assert list(empty.turns) == [] and empty.speaker_count == 0


async def test_summary_picks_sentences_and_finds_action_items() -> None:
    lines = [
        gpu_pb2.TranscriptLine(speaker="SPEAKER_1", text="Good morning everyone."),
        gpu_pb2.TranscriptLine(
            speaker="SPEAKER_1",
            text="The budget for the launch is too small. We need a bigger launch budget.",
        ),
        gpu_pb2.TranscriptLine(
            speaker="SPEAKER_2", text="Alice will send the budget report by Friday."
        ),
        gpu_pb2.TranscriptLine(speaker="SPEAKER_2", text="I will book the venue tomorrow."),
        gpu_pb2.TranscriptLine(speaker="SPEAKER_1", text="This will take time."),
    ]
    result = await MockSummarizationEngine().summarize(lines, "en", 2)
    sentences = [
        "Good morning everyone.",
        "The budget for the launch is too small.",
        "We need a bigger launch budget.",
        "Alice will send the budget report by Friday.",
        "I will book the venue tomorrow.",
        "This will take time.",
    ]
    picked = [s for s in sentences if s in result.summary]
    assert len(picked) == 2 and " ".join(picked) == result.summary
    assert "budget" in result.summary
    assert [(a.owner, a.due) for a in result.action_items] == [
        ("Alice", "by Friday"),
        ("SPEAKER_2", "tomorrow"),
    ]
    assert result.keywords[0] == "budget"
    assert result.engine == "mock"
    assert await MockSummarizationEngine().summarize(lines, "en", 2) == result
    empty = await MockSummarizationEngine().summarize([], "", 0)
    assert empty.summary == "" and not empty.action_items


def test_factory_builds_the_mock_without_loading_heavy_libraries() -> None:
    probe = (
        "import sys; from gpu_node.engines.factory import create_engines; "
        "e = create_engines('mock'); "
        "print(e.recognition.name, sorted(m for m in ('faster_whisper', 'ctranslate2', "
        "'onnxruntime', 'gpu_node.engines.real') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.split() == ["mock", "[]"]
    with pytest.raises(ValueError, match="unknown engine"):
        create_engines("gpt")
