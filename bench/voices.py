"""Identification of enrolled voices, and strangers wrongly named, on generated speech.

Usage: uv run python bench/voices.py [--threshold T]

Synthesises eight espeak-ng voices (accents, sexes, pitch and speed variants), each saying
three sentences in an "enrollment" meeting and three other sentences in a later meeting.
Five voices are enrolled: a profile is the mean of their enrollment sentences' embeddings
(resemblyzer's encoder, as gpu_node's diarization computes them); the other three are
strangers. Each voice of the later meeting is matched to the profiles as meeting_service
does (`meeting_service.voices.matching.assign`): cosine similarity of centroids, optimal
assignment, a threshold. Prints JSON: the similarities of same and different voices, and
for a sweep of thresholds the identification accuracy of enrolled voices and the rate of
strangers given a name; then the same for profiles enrolled from a recording of each voice
alone saying the enrollment sentences (`CreateVoiceProfileFromAudio`: the diarizer finds
the speech itself and embeds it as one speaker).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from gen.gpu.v1 import gpu_pb2
from gpu_node.engines.speakers import ResemblyzerDiarizationEngine
from gpu_node.engines.voice_encoder import VoiceEncoder
from meeting_service.voices.matching import DEFAULT_THRESHOLD, assign
from tests.support.speech import speak

VOICES: dict[str, tuple[str, ...]] = {
    "ana": ("-v", "en-gb+f3", "-p", "70", "-s", "160"),
    "ben": ("-v", "en-us", "-p", "40", "-s", "160"),
    "chen": ("-v", "en-us+m3", "-p", "25", "-s", "145"),
    "dana": ("-v", "en-us+f4", "-p", "80", "-s", "175"),
    "emil": ("-v", "en-sc", "-p", "50", "-s", "150"),
    "fay": ("-v", "en-029+f2", "-p", "60", "-s", "165"),
    "gus": ("-v", "en-gb-x-rp+m7", "-p", "35", "-s", "185"),
    "hana": ("-v", "en-us+f2", "-p", "65", "-s", "140"),
}
ENROLLED = ("ana", "ben", "chen", "dana", "emil")
FIRST_MEETING = (
    "Good morning, let us look at the numbers for this quarter.",
    "I think the marketing budget needs another review before we decide.",
    "Please send me the draft of the proposal by the end of the day.",
)
LATER_MEETING = (
    "The customer asked whether the release can move to next month.",
    "We should hire two more engineers for the platform team this year.",
    "Thanks everyone, I will write up the notes and share them tomorrow.",
)
THRESHOLDS = (0.8, 0.9, 0.93, 0.94, 0.95, 0.955, 0.96, 0.965, 0.97)


def _centroid(
    encoder: VoiceEncoder, voice: tuple[str, ...], lines: tuple[str, ...], where: Path
) -> np.ndarray:
    embeddings = [encoder.embed_utterance(speak([(voice, line)], where)) for line in lines]
    centroid = np.mean(embeddings, axis=0)
    return centroid / np.linalg.norm(centroid)


def _recorded(encoder: VoiceEncoder, voice: tuple[str, ...], where: Path) -> np.ndarray:
    """The voice of a recording of it alone, as gpu_node hears an uploaded sample."""
    audio = speak([(voice, line) for line in FIRST_MEETING], where)
    config = gpu_pb2.DiarizationConfig(num_speakers=1)
    response = asyncio.run(ResemblyzerDiarizationEngine(encoder).diarize(config, audio))
    (heard,) = response.voices
    return np.asarray(heard.embedding)


def measure() -> dict[str, Any]:
    encoder = VoiceEncoder()
    with tempfile.TemporaryDirectory() as scratch:
        where = Path(scratch)
        enrolled = {
            name: _centroid(encoder, VOICES[name], FIRST_MEETING, where) for name in ENROLLED
        }
        recorded = {name: _recorded(encoder, VOICES[name], where) for name in ENROLLED}
        later = {
            name: _centroid(encoder, voice, LATER_MEETING, where) for name, voice in VOICES.items()
        }
    return {
        "voices": len(VOICES),
        "enrolled": len(ENROLLED),
        "default_threshold": DEFAULT_THRESHOLD,
        **_identification(enrolled, later),
        "enrolled_from_a_recording_alone": _identification(recorded, later),
    }


def _identification(
    enrolled: dict[str, np.ndarray], later: dict[str, np.ndarray]
) -> dict[str, Any]:
    same = [float(later[name] @ enrolled[name]) for name in ENROLLED]
    different = [
        float(later[name] @ enrolled[other])
        for name in VOICES
        for other in ENROLLED
        if other != name
    ]
    labels = list(later)
    profiles = list(enrolled)
    strangers = [name for name in VOICES if name not in ENROLLED]
    profile_matrix = np.stack([enrolled[p] for p in profiles])
    sweep = []
    for threshold in THRESHOLDS:
        # All eight voices in one later meeting: names by optimal assignment.
        together = assign(np.stack([later[n] for n in labels]), profile_matrix, threshold)
        given = {labels[s]: profiles[p] for s, p in together.items()}
        # Each voice alone in a meeting: nobody else competes for its best profile.
        alone = {
            name: profiles[p]
            for name in labels
            for _, p in assign(later[name][None, :], profile_matrix, threshold).items()
        }
        sweep.append(
            {
                "threshold": threshold,
                "identified_together": sum(given.get(n) == n for n in ENROLLED) / len(ENROLLED),
                "strangers_named_together": sum(n in given for n in strangers) / len(strangers),
                "identified_alone": sum(alone.get(n) == n for n in ENROLLED) / len(ENROLLED),
                "enrolled_misnamed_alone": sum(n in alone and alone[n] != n for n in ENROLLED)
                / len(ENROLLED),
                "strangers_named_alone": sum(n in alone for n in strangers) / len(strangers),
            }
        )
    return {
        "same_voice_similarity": {
            "min": round(min(same), 3),
            "mean": round(float(np.mean(same)), 3),
        },
        "different_voice_similarity": {
            "max": round(max(different), 3),
            "mean": round(float(np.mean(different)), 3),
        },
        "sweep": sweep,
    }


def main() -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    print(json.dumps(measure(), indent=2))


if __name__ == "__main__":
    main()
