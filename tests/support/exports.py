"""Parsing exports back with independent libraries (srt, webvtt-py), for the export tests."""

from __future__ import annotations

import io
import itertools
from collections.abc import Collection
from dataclasses import dataclass

import srt  # type: ignore[import-untyped]
import webvtt

from meeting_service.transcripts.exports import MAX_CUE_MS, MAX_LINE_CHARS, MAX_LINES


@dataclass(frozen=True)
class ParsedCue:
    """A cue as an independent parser read it."""

    start: float
    end: float
    speaker: str
    text: str


def parse_srt(data: str, speakers: Collection[str] = ()) -> list[ParsedCue]:
    """Parses SRT with the `srt` package; a "NAME: " prefix naming one of `speakers` is the
    cue's speaker."""
    cues = []
    for subtitle in srt.parse(data):
        speaker, _, rest = subtitle.content.partition(": ")
        if speaker not in speakers:
            speaker, rest = "", subtitle.content
        cues.append(
            ParsedCue(subtitle.start.total_seconds(), subtitle.end.total_seconds(), speaker, rest)
        )
    return cues


def parse_vtt(data: str) -> list[ParsedCue]:
    """Parses WebVTT with webvtt-py; the speaker is the `<v>` voice."""
    return [
        ParsedCue(
            c.start_time.in_milliseconds() / 1000,
            c.end_time.in_milliseconds() / 1000,
            c.voice or "",
            c.text,
        )
        for c in webvtt.from_buffer(io.StringIO(data)).captions
    ]


def assert_well_timed(cues: list[ParsedCue], within: float) -> None:
    """Checks the subtitle rules: ordered, no overlap, within the recording, at most 7 s,
    at most two lines of 42 characters (a single longer word may stand alone)."""
    for previous, cue in itertools.pairwise(cues):
        assert previous.end <= cue.start, (previous, cue)
    for cue in cues:
        assert 0 <= cue.start < cue.end <= within, cue
        assert cue.end - cue.start <= MAX_CUE_MS / 1000 + 1e-9, cue
        lines = cue.text.split("\n")
        assert len(lines) <= MAX_LINES, cue
        first = f"{cue.speaker}: {lines[0]}" if cue.speaker else lines[0]
        for line in [first, *lines[1:]]:
            assert len(line) <= MAX_LINE_CHARS or " " not in line, line
