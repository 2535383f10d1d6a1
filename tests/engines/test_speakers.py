"""Speaker diarization with resemblyzer's weights in numpy, on the synthetic meeting."""

from __future__ import annotations

import pickle
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
from google.protobuf import duration_pb2

from gen.gpu.v1 import gpu_pb2
from gpu_node.engines.voice_encoder import VoiceEncoder
from gpu_node.engines.voice_encoder_weights import CheckpointError, load_legacy_checkpoint
from tests.engines import ENGINES
from tests.support.engines import Engines, chunked, seconds
from tests.support.speech import Recording

pytestmark = ENGINES


def duration(value: float) -> duration_pb2.Duration:
    result = duration_pb2.Duration()
    result.FromNanoseconds(round(value * 1e9))
    return result


def script_spans(meeting: Recording) -> list[gpu_pb2.TimeSpan]:
    return [
        gpu_pb2.TimeSpan(start_offset=duration(line.start_s), end_offset=duration(line.end_s))
        for line in meeting.lines
    ]


def speaker_at(meeting: Recording, start: float, end: float) -> str:
    """The script speaker who talks most during [start, end]."""
    overlap: Counter[str] = Counter()
    for line in meeting.lines:
        shared = min(end, line.end_s) - max(start, line.start_s)
        overlap[line.speaker] += round(1000 * max(0.0, shared))
    return overlap.most_common(1)[0][0]


def assert_consistent(pairs: list[tuple[str, str]]) -> None:
    """Every label maps to one script speaker and back (by majority, then all agree)."""
    majority = {
        label: Counter(who for lab, who in pairs if lab == label).most_common(1)[0][0]
        for label in {label for label, _ in pairs}
    }
    assert all(majority[label] == who for label, who in pairs), pairs
    assert len(set(majority.values())) == len(majority), majority


@pytest.mark.parametrize("num_speakers", [2, 0], ids=["known", "estimated"])
async def test_each_script_line_gets_its_speaker(
    engines: Engines, meeting: Recording, num_speakers: int
) -> None:
    config = gpu_pb2.DiarizationConfig(num_speakers=num_speakers, spans=script_spans(meeting))
    result = await engines[1].diarize(config, chunked(meeting.audio))
    assert result.speaker_count == 2
    assert result.engine == "resemblyzer"
    assert sorted(turn.span_index for turn in result.turns) == list(range(len(meeting.lines)))
    # Labels are numbered in order of first appearance.
    assert result.turns[0].speaker == "SPEAKER_1"
    pairs = [(t.speaker, meeting.lines[t.span_index].speaker) for t in result.turns]
    assert_consistent(pairs)


async def test_speech_is_found_when_no_spans_are_given(
    engines: Engines, meeting: Recording
) -> None:
    result = await engines[1].diarize(
        gpu_pb2.DiarizationConfig(num_speakers=2), chunked(meeting.audio)
    )
    assert result.speaker_count == 2
    assert all(turn.span_index == -1 for turn in result.turns)
    pairs = [
        (t.speaker, speaker_at(meeting, seconds(t.span.start_offset), seconds(t.span.end_offset)))
        for t in result.turns
    ]
    assert_consistent(pairs)
    covered = sum(seconds(t.span.end_offset) - seconds(t.span.start_offset) for t in result.turns)
    spoken = sum(line.end_s - line.start_s for line in meeting.lines)
    assert 0.8 * spoken <= covered <= meeting.duration_s


async def test_empty_audio_has_no_speakers(engines: Engines) -> None:
    result = await engines[1].diarize(
        gpu_pb2.DiarizationConfig(), chunked(np.zeros(16000, np.float32))
    )
    assert result.speaker_count == 0 and not result.turns


async def test_labels_do_not_depend_on_how_the_audio_arrives(
    engines: Engines, meeting: Recording
) -> None:
    # Spans are embedded as their audio arrives: small chunks, chunks cut inside spans,
    # a span past the end and one too short to embed alone must label as the whole does.
    spans = [
        *script_spans(meeting),
        gpu_pb2.TimeSpan(start_offset=duration(3.0), end_offset=duration(3.05)),
        gpu_pb2.TimeSpan(
            start_offset=duration(meeting.duration_s + 1),
            end_offset=duration(meeting.duration_s + 2),
        ),
    ]
    config = gpu_pb2.DiarizationConfig(spans=spans)
    whole = await engines[1].diarize(config, chunked(meeting.audio, chunk_s=meeting.duration_s))
    for chunk_s in (0.5, 1.37):
        assert await engines[1].diarize(config, chunked(meeting.audio, chunk_s=chunk_s)) == whole


async def test_a_failed_read_is_the_diarizations_error(
    engines: Engines, meeting: Recording
) -> None:
    async def broken() -> AsyncIterator[np.ndarray]:
        yield meeting.audio[: 16000 * 5]
        raise ConnectionError("the stream broke")

    config = gpu_pb2.DiarizationConfig(spans=script_spans(meeting))
    with pytest.raises(ConnectionError, match="the stream broke"):
        await engines[1].diarize(config, broken())


def test_embeddings_are_unit_length_and_closer_within_a_voice(meeting: Recording) -> None:
    encoder = VoiceEncoder()
    clips = [
        meeting.audio[int(line.start_s * 16000) : int(line.end_s * 16000)] for line in meeting.lines
    ]
    embeddings = np.stack([encoder.embed_utterance(c) for c in clips])
    assert np.allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)
    assert (embeddings >= 0).all()
    similarity = embeddings @ embeddings.T
    speakers = [line.speaker for line in meeting.lines]
    same = [similarity[i, j] for i in range(7) for j in range(i) if speakers[i] == speakers[j]]
    other = [similarity[i, j] for i in range(7) for j in range(i) if speakers[i] != speakers[j]]
    assert np.mean(same) > np.mean(other)


def test_checkpoint_reader_refuses_anything_but_tensors(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    with path.open("wb") as out:
        for item in (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True}):
            pickle.dump(item, out, protocol=2)
        # A pickle that would call os.system when loaded by a plain unpickler.
        out.write(b"\x80\x02cos\nsystem\nq\x00X\x04\x00\x00\x00trueq\x01\x85q\x02Rq\x03.")
    with pytest.raises(CheckpointError, match=r"os\.system"):
        load_legacy_checkpoint(path)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises((CheckpointError, pickle.UnpicklingError)):
        load_legacy_checkpoint(tmp_path / "junk.pt")


@pytest.mark.parametrize("voice", ["alex", "maria"])
async def test_one_voice_is_estimated_as_one_speaker(
    engines: Engines, meeting: Recording, voice: str
) -> None:
    spans = [
        s
        for s, line in zip(script_spans(meeting), meeting.lines, strict=True)
        if line.speaker == voice
    ]
    result = await engines[1].diarize(
        gpu_pb2.DiarizationConfig(spans=spans), chunked(meeting.audio)
    )
    assert result.speaker_count == 1
    assert {turn.speaker for turn in result.turns} == {"SPEAKER_1"}


@pytest.mark.parametrize("num_speakers", [2, 0], ids=["known", "estimated"])
async def test_labels_do_not_hinge_on_where_span_edges_fall(
    engines: Engines, meeting: Recording, num_speakers: int
) -> None:
    # Live utterances start ~0.2 s before the speech and batch segments end a little early
    # or late: the same voices must get the same labels whatever the edges (average
    # linkage alone put every line of a live session under one speaker).
    for lead in (0.1, 0.2, 0.3):
        for tail in (-0.1, 0.1):
            spans = [
                gpu_pb2.TimeSpan(
                    start_offset=duration(line.start_s - lead),
                    end_offset=duration(line.end_s + tail),
                )
                for line in meeting.lines
            ]
            config = gpu_pb2.DiarizationConfig(num_speakers=num_speakers, spans=spans)
            result = await engines[1].diarize(config, chunked(meeting.audio))
            pairs = [(t.speaker, meeting.lines[t.span_index].speaker) for t in result.turns]
            assert result.speaker_count == 2, (lead, tail, pairs)
            assert_consistent(pairs)
