"""Between `gpu.v1` results and `meeting.v1` messages: one place for each translation."""

from __future__ import annotations

from collections.abc import Sequence

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


def span(segment: meeting_pb2.Segment) -> gpu_pb2.TimeSpan:
    """The stretch of audio a segment covers."""
    return gpu_pb2.TimeSpan(start_offset=segment.start_offset, end_offset=segment.end_offset)


def with_speakers(
    segments: Sequence[meeting_pb2.Segment], diarized: gpu_pb2.DiarizeResponse
) -> list[meeting_pb2.Segment]:
    """Applies diarization turns (one per span, by `span_index`) to the segments.

    Args:
        segments: The segments whose spans were sent, in that order.
        diarized: The engine's answer.

    Returns:
        New versions of the segments whose speaker changed (unchanged ones are left out,
        so a rerun stores nothing twice).
    """
    speakers: dict[int, str] = {
        turn.span_index: turn.speaker
        for turn in diarized.turns
        if 0 <= turn.span_index < len(segments)
    }
    changed: list[meeting_pb2.Segment] = []
    for position, segment in enumerate(segments):
        speaker = speakers.get(position)
        if speaker is not None and speaker != segment.speaker:
            updated = meeting_pb2.Segment()
            updated.CopyFrom(segment)
            updated.speaker = speaker
            changed.append(updated)
    return changed


def transcript_lines(segments: Sequence[meeting_pb2.Segment]) -> list[gpu_pb2.TranscriptLine]:
    """The transcript as the summarizer reads it."""
    return [
        gpu_pb2.TranscriptLine(speaker=s.speaker, text=s.text, start_offset=s.start_offset)
        for s in segments
    ]


def summary(response: gpu_pb2.SummarizeResponse) -> meeting_pb2.Summary:
    """The stored summary of a summarizer's answer."""
    return meeting_pb2.Summary(
        text=response.summary,
        action_items=[
            meeting_pb2.ActionItem(text=a.text, owner=a.owner, due=a.due)
            for a in response.action_items
        ],
        keywords=list(response.keywords),
        backend=response.engine,
    )
