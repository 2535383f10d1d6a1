"""Naming a meeting's speakers after the caller's voice profiles.

Cosine similarity of voice embeddings, one profile per speaker at most, by optimal
assignment above a threshold.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from meeting_service.voices.repository import ProfileVoice, Voice

Vectors = npt.NDArray[np.floating]

# Cosine similarity a speaker's centroid must reach to take a profile's name; calibrated on
# generated voices by the bench's `voice_id` scenario (figures in docs/engines.md).
DEFAULT_THRESHOLD = 0.9


def unit(vectors: Vectors) -> Vectors:
    """Scales each row to length 1 (a zero row stays zero)."""
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.where(norms == 0, 1, norms)


def assign(speakers: Vectors, profiles: Vectors, threshold: float) -> dict[int, int]:
    """Gives speakers the profiles they sound like, each profile to one speaker at most.

    The pairs maximise the total similarity among pairs at or above the threshold, so
    two speakers never take the same name, and a speaker who is nobody's voice (below
    the threshold with every profile) takes none.

    Args:
        speakers: One embedding per speaker (rows).
        profiles: One embedding per profile (rows).
        threshold: Lowest cosine similarity of a pair.

    Returns:
        Speaker row to profile row, for the speakers named.
    """
    if not len(speakers) or not len(profiles):
        return {}
    similarity = unit(speakers) @ unit(profiles).T
    # Pairs below the threshold get no gain, so the assignment never prefers them.
    gain = np.where(similarity >= threshold, similarity, 0.0)
    rows, columns = _max_assignment(gain)
    return {
        int(r): int(c) for r, c in zip(rows, columns, strict=True) if similarity[r, c] >= threshold
    }


def _max_assignment(gain: Vectors) -> tuple[list[int], list[int]]:
    """The assignment of rows to columns with the largest total gain (Hungarian method)."""
    transposed = gain.shape[0] > gain.shape[1]
    cost = -(gain.T if transposed else gain)
    n, m = cost.shape  # n <= m
    u = np.zeros(n + 1)
    v = np.zeros(m + 1)
    match = np.zeros(m + 1, dtype=int)  # column -> row (1-based; 0 = free)
    for row in range(1, n + 1):
        match[0] = row
        column = 0
        least = np.full(m + 1, np.inf)
        used = np.zeros(m + 1, dtype=bool)
        way = np.zeros(m + 1, dtype=int)
        while True:
            used[column] = True
            current = match[column]
            delta = np.inf
            nearest = 0
            for j in range(1, m + 1):
                if used[j]:
                    continue
                reduced = cost[current - 1, j - 1] - u[current] - v[j]
                if reduced < least[j]:
                    least[j] = reduced
                    way[j] = column
                if least[j] < delta:
                    delta = least[j]
                    nearest = j
            for j in range(m + 1):
                if used[j]:
                    u[match[j]] += delta
                    v[j] -= delta
                else:
                    least[j] -= delta
            column = nearest
            if match[column] == 0:
                break
        while column:
            previous = way[column]
            match[column] = match[previous]
            column = previous
    pairs = [(int(match[j]) - 1, j - 1) for j in range(1, m + 1) if match[j]]
    if transposed:
        pairs = [(c, r) for r, c in pairs]
    pairs.sort()
    return [r for r, _ in pairs], [c for _, c in pairs]


def names_for(
    voices: Sequence[Voice], samples: Sequence[ProfileVoice], threshold: float = DEFAULT_THRESHOLD
) -> dict[str, str]:
    """Names the speakers whose voices match profiles.

    A profile's voice is the mean of its samples, each weighted by its seconds of speech.

    Args:
        voices: A meeting's speakers, in one embedding space.
        samples: The owner's profiles' samples, in the same space.
        threshold: Lowest cosine similarity of a match.

    Returns:
        Speaker label to profile name, for the speakers matched.
    """
    by_profile: dict[object, list[ProfileVoice]] = {}
    for sample in samples:
        by_profile.setdefault(sample.profile_id, []).append(sample)
    if not voices or not by_profile:
        return {}
    profiles = list(by_profile.values())
    centroids = np.stack(
        [
            sum(
                (np.asarray(s.embedding) * max(s.speech_seconds, 1e-3) for s in group),
                start=np.zeros(len(group[0].embedding)),
            )
            for group in profiles
        ]
    )
    speakers = np.stack([np.asarray(v.embedding) for v in voices])
    matched = assign(speakers, centroids, threshold)
    return {voices[s].label: profiles[p][0].name for s, p in matched.items()}
