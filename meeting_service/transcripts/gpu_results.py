"""Between `gpu.v1` results and `meeting.v1` messages: one place for each translation."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

from gen.gpu.v1 import gpu_pb2
from gen.meeting.v1 import meeting_pb2


def from_recognized(recognized: gpu_pb2.RecognizedSegment) -> meeting_pb2.Segment:
    """Builds the transcript segment of a recognized one (no speaker yet).

    `segment_id` and `sequence` are left for the event log to fill in.
    """
    segment = meeting_pb2.Segment(
        index=recognized.segment_index,
        text=recognized.text,
        confidence=recognized.confidence,
        final=recognized.is_final,
        language=recognized.language,
    )
    segment.start_offset.CopyFrom(recognized.start_offset)
    segment.end_offset.CopyFrom(recognized.end_offset)
    for word in recognized.words:
        segment.words.add(
            text=word.text,
            start_offset=word.start_offset,
            end_offset=word.end_offset,
            confidence=word.confidence,
        )
    return segment


def language_heard(segments: Sequence[meeting_pb2.Segment]) -> str:
    """The language most of the segments' text is in, by characters ("" when none says)."""
    weight: Counter[str] = Counter()
    for segment in segments:
        if segment.language:
            weight[segment.language] += len(segment.text)
    return weight.most_common(1)[0][0] if weight else ""


def span(segment: meeting_pb2.Segment) -> gpu_pb2.TimeSpan:
    """The stretch of audio a segment covers."""
    return gpu_pb2.TimeSpan(start_offset=segment.start_offset, end_offset=segment.end_offset)


def with_speakers(
    segments: Sequence[meeting_pb2.Segment],
    diarized: gpu_pb2.DiarizeResponse,
    names: Mapping[str, str],
) -> list[meeting_pb2.Segment]:
    """Applies diarization turns (one per span, by `span_index`) to the segments.

    Args:
        segments: The segments whose spans were sent, in that order.
        diarized: The engine's answer.
        names: The meeting's speaker names: label to name.

    Returns:
        New versions of the segments whose speaker or speaker name changed (unchanged
        ones are left out, so a rerun stores nothing twice).
    """
    speakers: dict[int, str] = {
        turn.span_index: turn.speaker
        for turn in diarized.turns
        if 0 <= turn.span_index < len(segments)
    }
    changed: list[meeting_pb2.Segment] = []
    for position, segment in enumerate(segments):
        speaker = speakers.get(position, segment.speaker)
        name = names.get(speaker, "") if speaker else ""
        if speaker != segment.speaker or name != segment.speaker_name:
            updated = meeting_pb2.Segment()
            updated.CopyFrom(segment)
            updated.speaker = speaker
            updated.speaker_name = name
            changed.append(updated)
    return changed


def transcript_lines(segments: Sequence[meeting_pb2.Segment]) -> list[gpu_pb2.TranscriptLine]:
    """The transcript as the summarizer reads it: each speaker by name when named."""
    return [
        gpu_pb2.TranscriptLine(
            speaker=s.speaker_name or s.speaker, text=s.text, start_offset=s.start_offset
        )
        for s in segments
    ]


def summary(
    response: gpu_pb2.SummarizeResponse, segments: Sequence[meeting_pb2.Segment]
) -> meeting_pb2.Summary:
    """The stored summary of a summarizer's answer over `segments`.

    An owner that is how one of the segments' speakers was shown to the summarizer gets
    that speaker's label as `owner_speaker`, so a later rename reaches it.
    """
    labels = {s.speaker_name or s.speaker: s.speaker for s in segments if s.speaker}
    return meeting_pb2.Summary(
        text=response.summary,
        action_items=[
            meeting_pb2.ActionItem(
                text=a.text,
                owner=a.owner,
                due=a.due,
                owner_speaker=labels.get(a.owner, ""),
                quote=a.quote,
            )
            for a in response.action_items
        ],
        keywords=list(response.keywords),
        backend=response.engine,
        decisions=list(response.decisions),
    )
