"""Speech recognition with faster-whisper on the synthetic meeting."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from google.protobuf import duration_pb2

from gen.gpu.v1 import gpu_pb2
from gpu_node.engines.base import all_segments
from gpu_node.engines.whisper_models import join_base_model, resolve_model
from mesh_common.settings import SettingsError
from tests.engines import ENGINES
from tests.support.engines import Engines, chunked, seconds
from tests.support.speech import PRIYA, SAMPLE_RATE, Recording, speak, word_error_rate

pytestmark = ENGINES


def clip(meeting: Recording, first: int, last: int) -> np.ndarray:
    lines = meeting.lines
    start = int((lines[first].start_s - 0.3) * SAMPLE_RATE)
    end = int((lines[last].end_s + 0.5) * SAMPLE_RATE)
    return meeting.audio[start:end]


async def recognize(
    engines: Engines, config: gpu_pb2.RecognitionConfig, audio: np.ndarray
) -> list[gpu_pb2.RecognizedSegment]:
    return await all_segments(engines[0].recognize(config, chunked(audio)))


def test_batch_transcript_matches_the_script(
    batch_segments: Sequence[gpu_pb2.RecognizedSegment], meeting: Recording, engines: Engines
) -> None:
    text = " ".join(segment.text for segment in batch_segments)
    assert word_error_rate(meeting.text, text) < 0.15, text
    assert engines[0].name == "whisper:tiny.en"
    assert [s.segment_index for s in batch_segments] == list(range(len(batch_segments)))
    assert all(s.is_final and s.language == "en" for s in batch_segments)
    starts = [seconds(s.start_offset) for s in batch_segments]
    assert starts == sorted(starts)
    for segment in batch_segments:
        assert 0.0 <= seconds(segment.start_offset) < seconds(segment.end_offset)
        assert seconds(segment.end_offset) <= meeting.duration_s + 0.5
        assert 0.0 < segment.confidence <= 1.0
        assert segment.words, segment.text
        for word in segment.words:
            assert seconds(segment.start_offset) - 0.05 <= seconds(word.start_offset)
            assert seconds(word.end_offset) <= seconds(segment.end_offset) + 0.05
            assert 0.0 <= word.confidence <= 1.0


async def test_start_offset_makes_times_absolute(engines: Engines, meeting: Recording) -> None:
    config = gpu_pb2.RecognitionConfig(start_offset=duration_pb2.Duration(seconds=100))
    segments = await recognize(engines, config, clip(meeting, 3, 3))
    assert "friday" in " ".join(s.text for s in segments).lower()
    assert all(100.0 <= seconds(s.start_offset) < seconds(s.end_offset) < 104.0 for s in segments)
    assert all(seconds(w.start_offset) >= 100.0 for s in segments for w in s.words)


async def test_silence_gives_no_segments(engines: Engines) -> None:
    silence = np.zeros(3 * SAMPLE_RATE, dtype=np.float32)
    assert await recognize(engines, gpu_pb2.RecognitionConfig(), silence) == []


async def test_concurrent_calls_share_the_model_and_both_finish(
    engines: Engines, meeting: Recording
) -> None:
    config = gpu_pb2.RecognitionConfig(language="en")
    first, second = await asyncio.gather(
        recognize(engines, config, clip(meeting, 3, 3)),
        recognize(engines, config, clip(meeting, 2, 2)),
    )
    assert word_error_rate(meeting.lines[3].text, " ".join(s.text for s in first)) < 0.15
    assert word_error_rate(meeting.lines[2].text, " ".join(s.text for s in second)) < 0.15


async def test_live_sends_partials_then_a_final_soon_after_each_utterance(
    engines: Engines, meeting: Recording
) -> None:
    from gpu_node.engines.whisper import LiveOptions

    audio = clip(meeting, 0, 2)
    offset_s = meeting.lines[0].start_s - 0.3
    fed = [0]
    config = gpu_pb2.RecognitionConfig(mode=gpu_pb2.RECOGNITION_MODE_LIVE, interim_results=True)
    received: list[tuple[gpu_pb2.RecognizedSegment, int]] = []
    async for batch in engines[0].recognize(config, chunked(audio, 0.1, fed)):
        received.extend((segment, fed[0]) for segment in batch)

    finals = [(s, at) for s, at in received if s.is_final]
    assert [s.segment_index for s, _ in finals] == [0, 1, 2]
    for segment, _ in finals:
        partials = [
            s for s, _ in received if not s.is_final and s.segment_index == segment.segment_index
        ]
        assert partials, f"no partial before final {segment.segment_index}"
        # Every partial of a segment comes before its final.
        assert received.index((segment, _)) > max(
            i for i, (s, _) in enumerate(received) if s in partials
        )
    text = " ".join(s.text for s, _ in finals)
    expected = " ".join(line.text for line in meeting.lines[:3])
    assert word_error_rate(expected, text) < 0.15, text
    # Latency in audio time: the first final was out once the silence after the first
    # utterance had been fed, plus at most a little more.
    utterance_end = (meeting.lines[0].end_s - offset_s) * SAMPLE_RATE
    delay_s = (finals[0][1] - utterance_end) / SAMPLE_RATE
    assert delay_s <= LiveOptions().silence_s + 0.3, delay_s


def test_unknown_model_is_named_clearly(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"tiny\.en, base"):
        resolve_model("no-such-model", tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(SettingsError, match=r"no model\.bin"):
        resolve_model(str(tmp_path / "empty"), tmp_path)


async def test_multilingual_base_is_joined_once_and_detects_the_language(
    model_cache: Path, meeting: Recording
) -> None:
    from gpu_node.engines.whisper import WhisperRecognitionEngine
    from gpu_node.engines.whisper_models import choose_placement, load_model

    directory = join_base_model(model_cache)
    joined = (directory / "model.bin").stat()
    assert join_base_model(model_cache) == directory
    assert (directory / "model.bin").stat().st_mtime_ns == joined.st_mtime_ns
    model = load_model(directory, choose_placement("cpu", "auto", 0, 0))
    engine = WhisperRecognitionEngine(model, "whisper:base")
    config = gpu_pb2.RecognitionConfig()  # no language: detected
    batches = engine.recognize(config, chunked(clip(meeting, 3, 3)))
    segments = await all_segments(batches)
    assert segments and all(s.language == "en" for s in segments)
    assert word_error_rate(meeting.lines[3].text, " ".join(s.text for s in segments)) < 0.15


async def test_a_segment_is_split_where_the_speech_pauses(
    model_cache: Path, meeting: Recording, engines: Engines
) -> None:
    from gpu_node.engines.whisper import LiveOptions, pause_points, split_at_pauses
    from gpu_node.engines.whisper_models import choose_placement, load_model

    lines = meeting.lines[3:7]  # Maria, Alex, Maria, Alex, 0.8 s apart
    audio = clip(meeting, 3, 6)
    offset_s = lines[0].start_s - 0.3
    # Without timestamps Whisper gives one segment for the window: the join that batch
    # decoding sometimes makes across a change of speaker, here on purpose.
    model = load_model(resolve_model("tiny.en", model_cache), choose_placement("cpu", "auto", 0, 0))
    decoded, _ = model.transcribe(
        audio, language="en", without_timestamps=True, word_timestamps=True, beam_size=5
    )
    merged = next(iter(decoded))
    assert word_error_rate(" ".join(line.text for line in lines), merged.text) < 0.15

    parts = split_at_pauses(merged, pause_points(audio, LiveOptions().silence_s))
    assert len(parts) == len(lines), [part.text for part in parts]
    for part, line in zip(parts, lines, strict=True):
        assert word_error_rate(line.text, part.text) < 0.15, (line.text, part.text)
        assert line.start_s - 0.5 <= offset_s + part.start < offset_s + part.end <= line.end_s + 0.5
        assert [word.word for word in part.words] and part.text == "".join(
            word.word for word in part.words
        )

    # The engine's batch segments each hold one speaker's line, however Whisper joined them:
    # a segment may reach into the pauses around its line (Whisper's times move by a few
    # tenths of a second from run to run) but not into another line's speech.
    config = gpu_pb2.RecognitionConfig(mode=gpu_pb2.RECOGNITION_MODE_BATCH)
    for segment in await recognize(engines, config, audio):
        start, end = (
            offset_s + seconds(segment.start_offset),
            offset_s + seconds(segment.end_offset),
        )
        spoken = [line for line in lines if min(end, line.end_s) - max(start, line.start_s) > 0.3]
        assert len(spoken) == 1, (start, end, segment.text)


@pytest.mark.parametrize("mode", [gpu_pb2.RECOGNITION_MODE_BATCH, gpu_pb2.RECOGNITION_MODE_LIVE])
async def test_a_vocabulary_fixes_a_name_the_recognizer_otherwise_misses(
    engines: Engines, tmp_path: Path, mode: gpu_pb2.RecognitionMode.ValueType
) -> None:
    audio = speak([PRIYA], tmp_path)

    async def heard(vocabulary: list[str]) -> str:
        config = gpu_pb2.RecognitionConfig(language="en", mode=mode, vocabulary=vocabulary)
        batches = engines[0].recognize(config, chunked(audio, 0.1))
        return " ".join(s.text for s in await all_segments(batches) if s.is_final)

    assert "Priya" not in await heard([])
    assert "Priya will send the report" in await heard(["Priya", "Kubernetes"])
