"""Transcripts as files: SubRip, WebVTT, plain text, Markdown and JSON.

Pure functions over a meeting, its segments and its summary; the reader feeds them and the
servicer sends what they make. Subtitle cues follow the conventions the subtitle tools share
(docs/integrations.md): a cue ends at the end of a sentence, before it would need more than
two lines of 42 characters, and before it would last more than 7 seconds; cues never
overlap; each carries its speaker when diarization named one. Cue times come from the word
timings when the words spell the segment's text, otherwise from the segment's span shared
out by the length of each word.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from google.protobuf import duration_pb2

from contract_errors.meeting import invalid_field
from gen.meeting.v1 import exports_pb2, meeting_pb2

MAX_LINE_CHARS = 42
MAX_LINES = 2
MAX_CUE_MS = 7000
_SENTENCE_END = re.compile(r"[.!?…]['\")\]]*$")
_UNSAFE_FILENAME = re.compile(r"[^A-Za-z0-9._-]+")
# "_" is left alone: inside a word (SPEAKER_1) it never starts emphasis.
_MARKDOWN_SPECIAL = re.compile(r"([\\`*\[\]<>#|])")
_BLANKS = re.compile(r"\s+")


@dataclass(frozen=True)
class Export:
    """A transcript as a file.

    Attributes:
        content_type: Its media type with charset.
        data: Its bytes.
        filename: A safe file name with the format's extension.
    """

    content_type: str
    data: bytes
    filename: str


@dataclass(frozen=True)
class Cue:
    """One subtitle cue.

    Attributes:
        start_ms: Start, in milliseconds from the start of the recording.
        end_ms: End, after `start_ms`.
        speaker: The speaker's name, else its label ("" when unknown or left out).
        lines: The text, wrapped into at most two lines (one long word may stand alone).
    """

    start_ms: int
    end_ms: int
    speaker: str
    lines: tuple[str, ...]


@dataclass(frozen=True)
class _Word:
    text: str
    start_ms: int
    end_ms: int


@dataclass(frozen=True)
class _Document:
    meeting: meeting_pb2.Meeting
    segments: list[meeting_pb2.Segment]
    summary: meeting_pb2.Summary | None
    with_speakers: bool


def export(
    export_format: int,
    meeting: meeting_pb2.Meeting,
    segments: Sequence[meeting_pb2.Segment],
    summary: meeting_pb2.Summary | None,
    *,
    with_speakers: bool = True,
) -> Export:
    """Renders a transcript in a format.

    Args:
        export_format: A `meeting.v1.ExportFormat` value.
        meeting: The meeting (title, language, duration, creation time).
        segments: The latest version of every segment; those without text are skipped.
        summary: The summary, when written.
        with_speakers: Whether speaker labels appear.

    Returns:
        The file.

    Raises:
        MeshError: INVALID_FIELD (`format`) for UNSPECIFIED or an unknown value.
    """
    render, extension, content_type = _renderer(export_format)
    spoken = sorted(
        (s for s in segments if s.text.strip()), key=lambda s: (_ms(s.start_offset), s.index)
    )
    document = _Document(meeting, spoken, summary, with_speakers)
    return Export(content_type, render(document).encode(), f"{_file_stem(meeting)}.{extension}")


def check_format(export_format: int) -> None:
    """Refuses a format this module cannot render.

    Raises:
        MeshError: INVALID_FIELD (`format`).
    """
    _renderer(export_format)


def _renderer(export_format: int) -> tuple[Callable[[_Document], str], str, str]:
    renderers: dict[int, tuple[Callable[[_Document], str], str, str]] = {
        exports_pb2.EXPORT_FORMAT_SRT: (_srt, "srt", "application/x-subrip; charset=utf-8"),
        exports_pb2.EXPORT_FORMAT_VTT: (_vtt, "vtt", "text/vtt; charset=utf-8"),
        exports_pb2.EXPORT_FORMAT_TEXT: (_text, "txt", "text/plain; charset=utf-8"),
        exports_pb2.EXPORT_FORMAT_MARKDOWN: (_markdown, "md", "text/markdown; charset=utf-8"),
        exports_pb2.EXPORT_FORMAT_JSON: (_json, "json", "application/json"),
    }
    found = renderers.get(export_format)
    if found is None:
        names = ", ".join(exports_pb2.ExportFormat.Name(v) for v in renderers)  # type: ignore[arg-type]
        raise invalid_field("format", f"unknown export format {export_format}; one of {names}")
    return found


# --- cues ------------------------------------------------------------------------------


def cues(segments: Sequence[meeting_pb2.Segment], *, with_speakers: bool = True) -> list[Cue]:
    """Cuts segments into subtitle cues (see the module's rules).

    Args:
        segments: The segments, in time order.
        with_speakers: Whether cues carry the speaker (its label counts towards the
            first line's length).

    Returns:
        The cues, in time order, none overlapping the next.
    """
    made: list[Cue] = []
    for segment in segments:
        speaker = (segment.speaker_name or segment.speaker) if with_speakers else ""
        prefix = f"{speaker}: " if speaker else ""
        group: list[_Word] = []
        for word in _timed_words(segment):
            if group and not _fits(prefix, [*group, word]):
                made.append(_cue(group, speaker, prefix))
                group = []
            group.append(word)
            if _SENTENCE_END.search(word.text):
                made.append(_cue(group, speaker, prefix))
                group = []
        if group:
            made.append(_cue(group, speaker, prefix))
    return _without_overlaps(made)


def _fits(prefix: str, words: list[_Word]) -> bool:
    if words[-1].end_ms - words[0].start_ms > MAX_CUE_MS:
        return False
    return len(_wrap(prefix + " ".join(w.text for w in words))) <= MAX_LINES


def _wrap(text: str) -> list[str]:
    return textwrap.wrap(text, MAX_LINE_CHARS, break_long_words=False, break_on_hyphens=False)


def _cue(words: list[_Word], speaker: str, prefix: str) -> Cue:
    start = words[0].start_ms
    end = min(max(words[-1].end_ms, start + 1), start + MAX_CUE_MS)
    lines = _wrap(prefix + " ".join(w.text for w in words))
    if prefix:
        lines[0] = lines[0].removeprefix(prefix)
    return Cue(start, end, speaker, tuple(lines))


def _without_overlaps(made: list[Cue]) -> list[Cue]:
    fixed: list[Cue] = []
    for cue in sorted(made, key=lambda c: (c.start_ms, c.end_ms)):
        if fixed and cue.start_ms < fixed[-1].end_ms:
            previous = fixed[-1]
            if cue.start_ms > previous.start_ms:
                fixed[-1] = replace(previous, end_ms=cue.start_ms)
            else:  # same start: this one follows the previous one
                start = previous.end_ms
                cue = replace(cue, start_ms=start, end_ms=max(cue.end_ms, start + 1))
        fixed.append(cue)
    return fixed


def _timed_words(segment: meeting_pb2.Segment) -> list[_Word]:
    start, end = _ms(segment.start_offset), _ms(segment.end_offset)
    end = max(end, start)
    words = [w for w in segment.words if w.text.strip()]
    if words and _BLANKS.sub(" ", " ".join(w.text.strip() for w in words)) == _BLANKS.sub(
        " ", segment.text.strip()
    ):
        return [
            _Word(
                w.text.strip(),
                min(max(_ms(w.start_offset), start), end),
                min(max(_ms(w.end_offset), start), end),
            )
            for w in words
        ]
    # The words do not spell the text (or there are none): share the span by length.
    tokens = segment.text.split()
    total = sum(len(t) + 1 for t in tokens)
    timed, done = [], 0
    for token in tokens:
        begin = start + (end - start) * done // total
        done += len(token) + 1
        timed.append(_Word(token, begin, start + (end - start) * done // total))
    return timed


def _ms(value: duration_pb2.Duration) -> int:
    return value.seconds * 1000 + value.nanos // 1_000_000


def _clock(ms: int, separator: str) -> str:
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{seconds:02d}{separator}{millis:03d}"


# --- formats ---------------------------------------------------------------------------


def _srt(document: _Document) -> str:
    blocks = []
    for number, cue in enumerate(cues(document.segments, with_speakers=document.with_speakers), 1):
        lines = list(cue.lines)
        if cue.speaker:
            lines[0] = f"{cue.speaker}: {lines[0]}"
        times = f"{_clock(cue.start_ms, ',')} --> {_clock(cue.end_ms, ',')}"
        blocks.append(f"{number}\n{times}\n" + "\n".join(_no_arrow(line) for line in lines))
    return "\n\n".join(blocks) + "\n" if blocks else ""


def _vtt(document: _Document) -> str:
    blocks = ["WEBVTT"]
    for cue in cues(document.segments, with_speakers=document.with_speakers):
        text = "\n".join(_vtt_escape(_no_arrow(line)) for line in cue.lines)
        if cue.speaker:
            text = f"<v {_vtt_escape(cue.speaker)}>{text}"
        blocks.append(f"{_clock(cue.start_ms, '.')} --> {_clock(cue.end_ms, '.')}\n{text}")
    return "\n\n".join(blocks) + "\n"


def _no_arrow(line: str) -> str:
    # "-->" inside cue text ends the cue's timing line for some parsers.
    return line.replace("-->", "->")


def _vtt_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _turns(document: _Document) -> list[tuple[str, int, str]]:
    """(speaker, start ms, text) per run of segments by the same speaker."""
    turns: list[tuple[str, int, str]] = []
    for segment in document.segments:
        speaker = (segment.speaker_name or segment.speaker) if document.with_speakers else ""
        text = segment.text.strip()
        if turns and turns[-1][0] == speaker:
            who, start, said = turns[-1]
            turns[-1] = (who, start, f"{said} {text}")
        else:
            turns.append((speaker, _ms(segment.start_offset), text))
    return turns


def _text(document: _Document) -> str:
    if not document.segments:
        return ""
    if not any(speaker for speaker, _, _ in _turns(document)):
        return " ".join(s.text.strip() for s in document.segments) + "\n"
    paragraphs = [f"{who}: {said}" if who else said for who, _, said in _turns(document)]
    return "\n\n".join(paragraphs) + "\n"


def _markdown(document: _Document) -> str:
    meeting = document.meeting
    out = [f"# {_md(meeting.title or 'Meeting ' + meeting.id)}", ""]
    facts = []
    if meeting.HasField("create_time"):
        facts.append(f"Date: {meeting.create_time.ToDatetime(dt.UTC):%Y-%m-%d %H:%M} UTC")
    if meeting.HasField("duration"):
        facts.append(f"Duration: {_clock(_ms(meeting.duration), '.')[:8]}")
    if meeting.language:
        facts.append(f"Language: {meeting.language}")
    if facts:
        out += [" · ".join(facts), ""]
    summary = document.summary
    if summary is not None and summary.text:
        out += ["## Summary", "", _md(summary.text.strip()), ""]
    if summary is not None and summary.action_items:
        out += ["## Action items", ""]
        for item in summary.action_items:
            extra = [f"**{_md(item.owner)}**" if item.owner else "", _md(item.due)]
            details = ", ".join(part for part in extra if part)
            out.append(f"- [ ] {_md(item.text)}" + (f" ({details})" if details else ""))
        out.append("")
    if summary is not None and summary.keywords:
        out += ["Keywords: " + ", ".join(_md(k) for k in summary.keywords), ""]
    out += ["## Transcript", ""]
    for who, start, said in _turns(document):
        time = f"`{_clock(start, '.')[:8]}`"
        out += [f"**{_md(who)}** {time}: {_md(said)}" if who else f"{time} {_md(said)}", ""]
    return "\n".join(out)


def _md(text: str) -> str:
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text)


def _seconds(value: duration_pb2.Duration) -> float:
    return round(_ms(value) / 1000, 3)


def _json(document: _Document) -> str:
    meeting = document.meeting
    segments: list[dict[str, Any]] = []
    for segment in document.segments:
        item: dict[str, Any] = {
            "id": segment.index,
            "start": _seconds(segment.start_offset),
            "end": _seconds(segment.end_offset),
            "text": segment.text.strip(),
        }
        if document.with_speakers:
            item["speaker"] = segment.speaker
            if segment.speaker_name:
                item["speaker_name"] = segment.speaker_name
        item["language"] = segment.language
        item["confidence"] = round(segment.confidence, 4)
        item["words"] = [
            {
                "word": w.text,
                "start": _seconds(w.start_offset),
                "end": _seconds(w.end_offset),
                "probability": round(w.confidence, 4),
            }
            for w in segment.words
        ]
        segments.append(item)
    body: dict[str, Any] = {
        "meeting": {
            "id": meeting.id,
            "title": meeting.title,
            "language": meeting.language,
            "duration": _seconds(meeting.duration) if meeting.HasField("duration") else None,
        },
        "text": _text(replace(document, with_speakers=False)).strip(),
        "segments": segments,
    }
    if document.with_speakers:
        body["speakers"] = list(dict.fromkeys(s.speaker for s in document.segments if s.speaker))
    summary = document.summary
    body["summary"] = (
        None
        if summary is None
        else {
            "text": summary.text,
            "action_items": [
                {"text": i.text, "owner": i.owner, "due": i.due} for i in summary.action_items
            ],
            "keywords": list(summary.keywords),
        }
    )
    return json.dumps(body, ensure_ascii=False, indent=2) + "\n"


def _file_stem(meeting: meeting_pb2.Meeting) -> str:
    stem = _UNSAFE_FILENAME.sub("-", meeting.title).strip("-.")[:80]
    return stem or f"meeting-{meeting.id}"
