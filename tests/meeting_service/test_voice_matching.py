"""Naming a meeting's speakers after the owner's voice profiles: the threshold decides who
is close enough, and two speakers never take the same name."""

from __future__ import annotations

import math
import uuid

from meeting_service.voices.matching import DEFAULT_THRESHOLD, names_for
from meeting_service.voices.repository import ProfileVoice, Voice


def _unit(angle: float) -> list[float]:
    """A 2-D voice at `angle` radians: cos(angle) is its similarity to the voice at 0."""
    return [math.cos(angle), math.sin(angle)]


def _speaker(label: str, angle: float) -> Voice:
    return Voice(label=label, encoder="test", embedding=_unit(angle), speech_seconds=5.0)


def _profile(name: str, angle: float) -> ProfileVoice:
    return ProfileVoice(
        profile_id=uuid.uuid4(), name=name, embedding=_unit(angle), speech_seconds=5.0
    )


def test_a_voice_is_named_at_the_default_threshold_and_not_above_its_similarity() -> None:
    close = math.acos(0.95)  # similarity 0.95 to Maria's profile
    speakers = [_speaker("SPEAKER_1", close)]
    maria = [_profile("Maria", 0.0)]

    assert DEFAULT_THRESHOLD < 0.95
    assert names_for(speakers, maria) == {"SPEAKER_1": "Maria"}
    # A deployment that set MESH_VOICE_MATCH_THRESHOLD above 0.95 leaves her unnamed.
    assert names_for(speakers, maria, 0.97) == {}


def test_two_speakers_never_take_one_name_and_a_stranger_stays_unnamed() -> None:
    speakers = [
        _speaker("SPEAKER_1", 0.0),
        _speaker("SPEAKER_2", 0.05),  # also close to Maria, but less so
        _speaker("SPEAKER_3", math.pi / 2),  # nobody's voice
    ]
    assert names_for(speakers, [_profile("Maria", 0.0)]) == {"SPEAKER_1": "Maria"}
