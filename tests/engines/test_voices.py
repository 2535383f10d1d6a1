"""Voice profiles with the real diarizer: a voice enrolled from one meeting, or from a
recording of it alone, is named in another where it says other things; a stranger stays
unnamed; two enrolled voices get their own names in the transcript, the summary's owners
and the SRT; another user's profiles never match; a deleted profile names no one; a
recording that cannot make a voice is refused and changes nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import pytest
import pytest_asyncio

from gen.meeting.v1 import exports_pb2, meeting_service_pb2, voice_audio_pb2, voices_pb2
from meeting_service.server import RunningMeetingService
from tests.engines import ENGINES
from tests.support.engine_mesh import WITHIN_S, Stub, create, process, run_engine_mesh, transcript
from tests.support.engines import Engines, seconds
from tests.support.gpu import as_wav
from tests.support.meeting import auth, error_reason
from tests.support.speech import SAMPLE_RATE, speak

pytestmark = ENGINES

OWNER = "voice-owner"
VOICES = {
    "ana": ("-v", "en-gb+f3", "-p", "70", "-s", "160"),
    "ben": ("-v", "en-us", "-p", "40", "-s", "160"),
    "stranger": ("-v", "en-us+f4", "-p", "80", "-s", "175"),
}
FIRST = [
    ("ana", "Good morning, let us look at the numbers for this quarter."),
    ("ben", "I think the marketing budget needs another review before we decide."),
    ("ana", "Please send me the draft of the proposal by the end of the day."),
    ("ben", "Sure, I will have it ready this afternoon for everyone."),
]
LATER = [
    ("ben", "The customer asked whether the release can move to next month."),
    ("stranger", "We should hire two more engineers for the platform team this year."),
    ("ana", "Thanks everyone, I will write up the notes and share them tomorrow."),
    ("stranger", "I can help with the interviews on Thursday and Friday."),
    ("ben", "Good, then we meet again next week at the same time."),
]
# "Last week": Ana is enrolled from FIRST, Ben from a recording of him alone; then a meeting
# of Ana, Ben and a stranger, each committing to something.
BEN_ALONE = (
    "This is a recording of my voice for the meeting service. I speak for a little while "
    "so that it can learn how I sound."
)
DONE = [
    ("ben", "The customer asked whether the release can move, so I will call them by Friday."),
    ("stranger", "We should hire two more engineers for the platform team this year."),
    ("ana", "Thanks everyone, I will write up the notes and share them tomorrow."),
    ("stranger", "I will help with the interviews on Thursday and Friday."),
    ("ben", "Good, then we meet again next week at the same time."),
]
PAUSE_S = 0.8


@dataclass(frozen=True)
class Spoken:
    """A synthesised meeting: its audio and who speaks when."""

    audio: np.ndarray
    turns: list[tuple[str, float, float]]  # (voice, start s, end s)

    def voice_at(self, start_s: float, end_s: float) -> str:
        """The voice that speaks most of a stretch."""
        overlap: dict[str, float] = {}
        for voice, start, end in self.turns:
            overlap[voice] = overlap.get(voice, 0.0) + max(
                0.0, min(end_s, end) - max(start_s, start)
            )
        return max(overlap, key=overlap.__getitem__)


def _spoken(lines: list[tuple[str, str]], where: Path) -> Spoken:
    pieces, turns, position = [], [], PAUSE_S
    pause = np.zeros(int(PAUSE_S * SAMPLE_RATE), dtype=np.float32)
    pieces.append(pause)
    for number, (voice, text) in enumerate(lines):
        line = speak([(VOICES[voice], text)], where / str(number), pause_s=0.0)
        turns.append((voice, position, position + len(line) / SAMPLE_RATE))
        pieces += [line, pause]
        position += (len(line) + len(pause)) / SAMPLE_RATE
    return Spoken(np.concatenate(pieces), turns)


@pytest_asyncio.fixture(scope="module")
async def mesh(
    engines: Engines, database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[Stub, RunningMeetingService]]:
    async with run_engine_mesh(engines, database_url, tmp_path_factory.mktemp("mesh")) as running:
        yield running


async def _names(stub: Stub, user: str, spoken: Spoken, speakers: int) -> dict[str, set[str]]:
    """Processes a meeting; returns the names its segments show, by the voice speaking."""
    return (await _processed(stub, user, spoken, speakers))[1]


async def _processed(
    stub: Stub, user: str, spoken: Spoken, speakers: int
) -> tuple[str, dict[str, set[str]]]:
    """Processes a meeting; returns its id and the names its segments show, by voice."""
    meeting = await create(stub, user, expected_speakers=speakers)
    await process(stub, user, meeting.id, spoken.audio)
    shown: dict[str, set[str]] = {}
    for segment in (await transcript(stub, user, meeting.id)).segments:
        voice = spoken.voice_at(seconds(segment.start_offset), seconds(segment.end_offset))
        shown.setdefault(voice, set()).add(segment.speaker_name or segment.speaker)
    return meeting.id, shown


async def _enroll_recording(stub: Stub, user: str, name: str, recording: bytes) -> str:
    created = await stub.CreateVoiceProfileFromAudio(
        voice_audio_pb2.CreateVoiceProfileFromAudioRequest(name=name, audio=recording),
        metadata=auth(user),
        timeout=WITHIN_S,
    )
    return created.voice_profile.id


async def test_enrolled_voices_are_named_in_a_later_meeting_and_a_stranger_is_not(
    mesh: tuple[Stub, RunningMeetingService], tmp_path: Path
) -> None:
    stub, _ = mesh
    first = _spoken(FIRST, tmp_path / "first")
    later = _spoken(LATER, tmp_path / "later")

    enrollment = await create(stub, OWNER, expected_speakers=2)
    await process(stub, OWNER, enrollment.id, first.audio)
    labels: dict[str, str] = {}
    for segment in (await transcript(stub, OWNER, enrollment.id)).segments:
        voice = first.voice_at(seconds(segment.start_offset), seconds(segment.end_offset))
        labels.setdefault(voice, segment.speaker)
    assert set(labels) == {"ana", "ben"} and len(set(labels.values())) == 2, labels
    profiles = {}
    for voice, name in (("ana", "Ana"), ("ben", "Ben")):
        created = await stub.CreateVoiceProfile(
            voices_pb2.CreateVoiceProfileRequest(
                name=name,
                sample=voices_pb2.VoiceSample(meeting_id=enrollment.id, speaker=labels[voice]),
            ),
            metadata=auth(OWNER),
            timeout=WITHIN_S,
        )
        profiles[voice] = created.voice_profile.id

    shown = await _names(stub, OWNER, later, speakers=3)
    assert shown["ana"] == {"Ana"}, shown
    assert shown["ben"] == {"Ben"}, shown
    (stranger,) = shown["stranger"]
    assert stranger.startswith("SPEAKER_"), shown

    # Another user's meeting with the same voices: the profiles are not theirs.
    other = await _names(stub, "someone-else", later, speakers=3)
    assert all(name.startswith("SPEAKER_") for names in other.values() for name in names)

    # A deleted profile names no one any more.
    await stub.DeleteVoiceProfile(
        voices_pb2.DeleteVoiceProfileRequest(voice_profile_id=profiles["ben"]),
        metadata=auth(OWNER),
        timeout=WITHIN_S,
    )
    after = await _names(stub, OWNER, later, speakers=3)
    assert after["ana"] == {"Ana"}, after
    assert all(name.startswith("SPEAKER_") for name in after["ben"]), after
    listed = await stub.ListVoiceProfiles(
        voices_pb2.ListVoiceProfilesRequest(), metadata=auth(OWNER), timeout=WITHIN_S
    )
    assert [p.name for p in listed.voice_profiles] == ["Ana"]


async def test_two_voices_enrolled_last_week_are_named_in_transcript_summary_and_srt(
    mesh: tuple[Stub, RunningMeetingService], tmp_path: Path
) -> None:
    stub, _ = mesh
    user = "done-owner"
    # Ana from her segments of an earlier meeting.
    first = _spoken(FIRST, tmp_path / "first")
    enrollment, _ = await _processed(stub, user, first, speakers=2)
    ana = next(
        s.speaker
        for s in (await transcript(stub, user, enrollment)).segments
        if first.voice_at(seconds(s.start_offset), seconds(s.end_offset)) == "ana"
    )
    await stub.CreateVoiceProfile(
        voices_pb2.CreateVoiceProfileRequest(
            name="Ana", sample=voices_pb2.VoiceSample(meeting_id=enrollment, speaker=ana)
        ),
        metadata=auth(user),
        timeout=WITHIN_S,
    )
    # Ben from a recording of him alone; what cannot make a voice is refused first.
    ben_alone = as_wav(speak([(VOICES["ben"], BEN_ALONE)], tmp_path / "ben"))
    too_short = as_wav(speak([(VOICES["ben"], "Yes.")], tmp_path / "yes"))
    for recording, reason in (
        (b"%PDF-1.7 not audio" * 30, "NOT_AUDIO"),
        (too_short, "INVALID_FIELD"),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await _enroll_recording(stub, user, "Ben", recording)
        code, found, _ = error_reason(refused.value)
        assert (code, found) == (grpc.StatusCode.INVALID_ARGUMENT, reason), refused.value
    await _enroll_recording(stub, user, "Ben", ben_alone)
    listed = await stub.ListVoiceProfiles(
        voices_pb2.ListVoiceProfilesRequest(), metadata=auth(user), timeout=WITHIN_S
    )
    assert [(p.name, p.sample_count) for p in listed.voice_profiles] == [("Ana", 1), ("Ben", 1)]

    done = _spoken(DONE, tmp_path / "done")
    meeting_id, shown = await _processed(stub, user, done, speakers=3)
    assert shown["ana"] == {"Ana"}, shown
    assert shown["ben"] == {"Ben"}, shown
    (stranger,) = shown["stranger"]
    assert stranger.startswith("SPEAKER_"), shown

    summary = (
        await stub.GetSummary(
            meeting_service_pb2.GetSummaryRequest(meeting_id=meeting_id),
            metadata=auth(user),
            timeout=WITHIN_S,
        )
    ).summary
    owners = {item.owner for item in summary.action_items if item.owner_speaker}
    assert {"Ana", "Ben"} <= owners and owners <= {"Ana", "Ben", stranger}, summary

    srt = (
        await stub.ExportTranscript(
            exports_pb2.ExportTranscriptRequest(
                meeting_id=meeting_id, format=exports_pb2.EXPORT_FORMAT_SRT
            ),
            metadata=auth(user),
            timeout=WITHIN_S,
        )
    ).data.decode()
    assert "Ana:" in srt and "Ben:" in srt and f"{stranger}:" in srt, srt

    # The same meeting in another user's hands: neither profile is theirs.
    other = await _names(stub, "not-the-owner", done, speakers=3)
    assert all(name.startswith("SPEAKER_") for names in other.values() for name in names)
