"""The three engines together, as gpu_node's callers use them: transcribe, diarize, summarize."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from gen.gpu.v1 import gpu_pb2
from gpu_node.engines.summaries_extractive import split_sentences
from tests.engines import ENGINES
from tests.support.engines import Engines, chunked, seconds
from tests.support.speech import Recording

pytestmark = ENGINES


def script_speaker(meeting: Recording, segment: gpu_pb2.RecognizedSegment) -> str:
    start, end = seconds(segment.start_offset), seconds(segment.end_offset)
    overlap: Counter[str] = Counter()
    for line in meeting.lines:
        shared = min(end, line.end_s) - max(start, line.start_s)
        overlap[line.speaker] += round(1000 * max(0.0, shared))
    return overlap.most_common(1)[0][0]


async def test_recognized_segments_get_the_right_speakers_and_a_faithful_summary(
    engines: Engines,
    meeting: Recording,
    batch_segments: Sequence[gpu_pb2.RecognizedSegment],
) -> None:
    _, diarization, summarization = engines
    spans = [
        gpu_pb2.TimeSpan(start_offset=s.start_offset, end_offset=s.end_offset)
        for s in batch_segments
    ]
    config = gpu_pb2.DiarizationConfig(spans=spans)
    turns = (await diarization.diarize(config, chunked(meeting.audio))).turns
    label_of = {turn.span_index: turn.speaker for turn in turns}
    pairs = [(label_of[i], script_speaker(meeting, s)) for i, s in enumerate(batch_segments)]
    majority = {
        label: Counter(who for lab, who in pairs if lab == label).most_common(1)[0][0]
        for label, _ in pairs
    }
    assert all(majority[label] == who for label, who in pairs), pairs
    assert sorted(majority.values()) == ["alex", "maria"]

    lines = [
        gpu_pb2.TranscriptLine(speaker=label_of[i], text=s.text, start_offset=s.start_offset)
        for i, s in enumerate(batch_segments)
    ]
    result = await summarization.summarize(lines, "en", 3)
    said = {sentence.text for sentence in split_sentences(lines)}
    summary_sentences = split_sentences([gpu_pb2.TranscriptLine(text=result.summary)])
    assert summary_sentences and all(s.text in said for s in summary_sentences), result.summary
    assert any(
        item.owner == "Maria" and "friday" in item.due.lower() for item in result.action_items
    ), result.action_items
