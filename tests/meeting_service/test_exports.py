"""Exports as files, parsed back by independent libraries (srt, webvtt-py)."""

from __future__ import annotations

import json

import pytest
from google.protobuf import duration_pb2

from gen.meeting.v1 import exports_pb2, meeting_pb2
from meeting_service.transcripts.exports import export
from mesh_common.errors import MeshError
from tests.support.exports import assert_well_timed, parse_srt, parse_vtt

F = exports_pb2.ExportFormat
LONG = (
    "Thanks for joining the weekly planning meeting, we have a long agenda today so let "
    "us get going right away without any further delay or small talk about the weather"
)


def at(ms: int) -> duration_pb2.Duration:
    return duration_pb2.Duration(seconds=ms // 1000, nanos=ms % 1000 * 1_000_000)


def segment(
    index: int, start_ms: int, end_ms: int, text: str, speaker: str = ""
) -> meeting_pb2.Segment:
    return meeting_pb2.Segment(
        index=index,
        start_offset=at(start_ms),
        end_offset=at(end_ms),
        text=text,
        speaker=speaker,
        final=True,
    )


MEETING = meeting_pb2.Meeting(
    id="5d0e2a4c-1111-4222-8333-944445555666", title="Weekly sync: Q3/plan"
)
SEGMENTS = [
    segment(0, 0, 2_000, "Hello everyone. Welcome!", "Alice"),
    segment(1, 2_000, 20_000, LONG + ".", "Alice"),
    # Starts before the previous segment ends: the cues must still not overlap.
    segment(2, 19_500, 21_000, "Sure & <fine>.", "Bob"),
    segment(3, 21_000, 22_000, "   "),  # no text: no cue
]
SUMMARY = meeting_pb2.Summary(
    text="A planning meeting.",
    action_items=[meeting_pb2.ActionItem(text="Send the agenda", owner="Bob", due="Friday")],
    keywords=["planning"],
)


def text_of(fmt: int, **kwargs: bool) -> str:
    return export(fmt, MEETING, SEGMENTS, SUMMARY, **kwargs).data.decode()


@pytest.mark.parametrize(
    ("fmt", "parse"),
    [
        (F.EXPORT_FORMAT_SRT, lambda data: parse_srt(data, {"Alice", "Bob"})),
        (F.EXPORT_FORMAT_VTT, parse_vtt),
    ],
)
def test_subtitles_parse_back_split_at_sentences_length_and_duration(fmt: int, parse) -> None:  # type: ignore[no-untyped-def]
    cues = parse(text_of(fmt))
    assert_well_timed(cues, within=21.0)
    # "Hello everyone." and "Welcome!" are sentences of their own; the long sentence needs
    # several cues (length and 7 s); Bob's line is one.
    assert [c.text for c in cues[:2]] == ["Hello everyone.", "Welcome!"]
    assert len(cues) >= 2 + 3 + 1
    assert [c.speaker for c in cues] == ["Alice"] * (len(cues) - 1) + ["Bob"]
    spoken = " ".join(c.text.replace("\n", " ") for c in cues[2:-1])
    assert spoken == LONG + "."
    assert (
        cues[-1].text.replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">")
        == "Sure & <fine>."
    )


def test_vtt_carries_voice_tags_and_escapes_markup() -> None:
    data = text_of(F.EXPORT_FORMAT_VTT)
    assert data.startswith("WEBVTT\n\n")
    assert "<v Alice>Hello everyone." in data
    assert "<v Bob>Sure &amp; &lt;fine&gt;." in data


def test_word_timings_time_the_cues_when_the_words_spell_the_text() -> None:
    timed = segment(0, 0, 10_000, "One two. Three four.", "A")
    for i, word in enumerate(["One", "two.", "Three", "four."]):
        timed.words.add(text=word, start_offset=at(1000 + i * 2000), end_offset=at(2000 + i * 2000))
    cues = parse_srt(export(F.EXPORT_FORMAT_SRT, MEETING, [timed], None).data.decode(), {"A"})
    assert [(c.start, c.end, c.text) for c in cues] == [
        (1.0, 4.0, "One two."),
        (5.0, 8.0, "Three four."),
    ]


def test_speakers_can_be_left_out() -> None:
    cues = parse_srt(text_of(F.EXPORT_FORMAT_SRT, with_speakers=False), {"Alice", "Bob"})
    assert {c.speaker for c in cues} == {""}
    assert text_of(F.EXPORT_FORMAT_TEXT, with_speakers=False) == (
        " ".join(s.text for s in SEGMENTS[:3]) + "\n"
    )


def test_text_is_one_paragraph_per_speaker_turn() -> None:
    assert text_of(F.EXPORT_FORMAT_TEXT) == (
        f"Alice: Hello everyone. Welcome! {LONG}.\n\nBob: Sure & <fine>.\n"
    )


def test_markdown_has_the_summary_action_items_and_transcript() -> None:
    data = text_of(F.EXPORT_FORMAT_MARKDOWN)
    assert data.startswith("# Weekly sync: Q3/plan\n")
    assert "## Summary\n\nA planning meeting.\n" in data
    assert "- [ ] Send the agenda (**Bob**, Friday)" in data
    assert "**Alice** `00:00:00`: Hello everyone. Welcome!" in data
    assert "**Bob** `00:00:19`: Sure & \\<fine\\>." in data


def test_json_has_segments_speakers_and_summary() -> None:
    body = json.loads(text_of(F.EXPORT_FORMAT_JSON))
    assert [s["start"] for s in body["segments"]] == [0.0, 2.0, 19.5]
    assert body["speakers"] == ["Alice", "Bob"]
    assert body["summary"]["action_items"] == [
        {"text": "Send the agenda", "owner": "Bob", "due": "Friday"}
    ]
    assert body["meeting"]["title"] == MEETING.title


def test_files_are_named_after_the_title_with_the_format_extension() -> None:
    names = {f: export(f, MEETING, SEGMENTS, None).filename for f in (1, 2, 3, 4, 5)}
    assert names == {
        1: "Weekly-sync-Q3-plan.srt",
        2: "Weekly-sync-Q3-plan.vtt",
        3: "Weekly-sync-Q3-plan.txt",
        4: "Weekly-sync-Q3-plan.md",
        5: "Weekly-sync-Q3-plan.json",
    }
    untitled = export(1, meeting_pb2.Meeting(id=MEETING.id), SEGMENTS, None)
    assert untitled.filename == f"meeting-{MEETING.id}.srt"


def test_an_unknown_format_is_an_invalid_field() -> None:
    with pytest.raises(MeshError) as raised:
        export(F.EXPORT_FORMAT_UNSPECIFIED, MEETING, SEGMENTS, None)
    assert raised.value.metadata == {"field": "format"}
