"""What `live_latency_real` counts as a live final, read from the events a client gets.

The events are the gateway's own JSON of real `TranscriptEvent`s, in the order a live
session followed by its job produces them.
"""

from __future__ import annotations

import json

from google.protobuf import duration_pb2

from bench.scenarios.live_real import Finals
from gateway.jsonpb import to_json_bytes
from gen.meeting.v1 import meeting_pb2

LIVE = meeting_pb2.MEETING_STATUS_LIVE
DIARIZING = meeting_pb2.MEETING_STATUS_DIARIZING


def _segment(index: int, end_s: float, *, final: bool, speaker: str = "") -> dict[str, object]:
    segment = meeting_pb2.Segment(
        index=index,
        end_offset=duration_pb2.Duration(seconds=int(end_s), nanos=int(end_s % 1 * 1e9)),
        text="hello",
        final=final,
        speaker=speaker,
    )
    return dict(json.loads(to_json_bytes(meeting_pb2.TranscriptEvent(segment=segment))))


def _status(status: meeting_pb2.MeetingStatus.ValueType) -> dict[str, object]:
    change = meeting_pb2.StatusChange(status=status)
    return dict(json.loads(to_json_bytes(meeting_pb2.TranscriptEvent(status_change=change))))


def test_only_each_segments_first_final_counts_and_the_end_of_live_ends_the_reading() -> None:
    finals = Finals()
    finals.take(_status(LIVE), 0.0)
    finals.take(_segment(0, 1.0, final=False), 1.0)
    finals.take(_segment(0, 1.5, final=True), 2.0)
    finals.take(_segment(1, 3.25, final=True), 4.0)
    assert not finals.ended

    finals.take(_status(DIARIZING), 5.0)
    # The job stores every segment again, final and with its speaker, long after.
    finals.take(_segment(0, 1.5, final=True, speaker="S1"), 30.0)
    finals.take(_segment(1, 3.25, final=True, speaker="S2"), 30.0)

    assert finals.ended
    assert finals.arrivals == {0: (1.5, 2.0), 1: (3.25, 4.0)}


def test_a_meeting_awaiting_audio_has_not_ended() -> None:
    finals = Finals()
    finals.take(_status(meeting_pb2.MEETING_STATUS_AWAITING_AUDIO), 0.0)
    assert not finals.ended


def test_a_finals_create_time_is_kept_on_the_arrivals_clock() -> None:
    finals = Finals()
    event = _segment(0, 1.5, final=True)
    event["createTime"] = "2026-01-02T03:04:05.250Z"
    finals.take(event, 2.0)
    finals.take({**event, "createTime": "2026-01-02T03:04:09Z"}, 3.0)  # the job's copy

    assert finals.stored == {0: 1767323045.25}
