"""Grouping speaker embeddings into speakers: average-linkage clustering on cosine distance.

With a known speaker count the dendrogram is cut there. Otherwise every cut from 2 to the
maximum is scored by its mean silhouette and the best one wins; when even the best scores
below `min_silhouette`, the recording is taken to have one speaker. Only cuts whose every
cluster holds at least `min_cluster_size` spans compete: with a few spans per voice, one odd
span of a known voice often stands apart as well as a second voice does, and treating it as
a new speaker was the commonest mistake on our test meetings. The price: when the count is
estimated, a voice heard in a single span joins the nearest speaker (give `num_speakers` when
it is known).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

Floats = npt.NDArray[np.float32]
Labels = npt.NDArray[np.int64]


def cosine_distances(embeddings: Floats) -> npt.NDArray[np.float64]:
    """Pairwise 1 - cosine similarity.

    Args:
        embeddings: N x D vectors (need not be normalised).

    Returns:
        N x N distances in [0, 2].
    """
    vectors = embeddings.astype(np.float64)
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    distances = 1.0 - vectors @ vectors.T
    np.fill_diagonal(distances, 0.0)
    return np.asarray(np.clip(distances, 0.0, 2.0))


def average_linkage(distances: npt.NDArray[np.float64]) -> list[Labels]:
    """Runs average-linkage agglomeration and records every partition on the way.

    Args:
        distances: N x N symmetric distances.

    Returns:
        `partitions[k - 1]` assigns each of the N items to one of k clusters, for k = 1..N.
    """
    n = len(distances)
    members: dict[int, list[int]] = {i: [i] for i in range(n)}
    work = distances.astype(np.float64).copy()
    np.fill_diagonal(work, np.inf)
    active = np.ones(n, dtype=bool)
    labels = np.arange(n, dtype=np.int64)
    partitions: list[Labels] = [labels.copy()]
    for _ in range(n - 1):
        masked = np.where(active[:, None] & active[None, :], work, np.inf)
        a, b = divmod(int(np.argmin(masked)), n)
        a, b = min(a, b), max(a, b)
        size_a, size_b = len(members[a]), len(members[b])
        # Lance-Williams update for average linkage.
        merged = (size_a * work[a] + size_b * work[b]) / (size_a + size_b)
        work[a], work[:, a] = merged, merged
        work[a, a] = np.inf
        active[b] = False
        work[b], work[:, b] = np.inf, np.inf
        members[a] += members.pop(b)
        labels[members[a]] = a
        partitions.append(labels.copy())
    partitions.reverse()
    return partitions


def silhouette(distances: npt.NDArray[np.float64], labels: Labels) -> float:
    """Mean silhouette of a partition (0 for a single cluster).

    Args:
        distances: N x N distances.
        labels: Cluster of each item.

    Returns:
        The mean over items of (b - a) / max(a, b), singletons counting 0.
    """
    clusters = np.unique(labels)
    if len(clusters) < 2:
        return 0.0
    scores = []
    for i in range(len(labels)):
        own = labels == labels[i]
        if own.sum() == 1:
            scores.append(0.0)
            continue
        a = distances[i, own].sum() / (own.sum() - 1)
        b = min(distances[i, labels == c].mean() for c in clusters if c != labels[i])
        scores.append((b - a) / max(a, b, 1e-12))
    return float(np.mean(scores))


def cluster_speakers(
    embeddings: Floats,
    num_speakers: int = 0,
    max_speakers: int = 8,
    min_silhouette: float = 0.1,
    min_cluster_size: int = 2,
) -> Labels:
    """Assigns each embedding to a speaker.

    Args:
        embeddings: N x D speaker embeddings, one per span.
        num_speakers: The count when known; 0 estimates it.
        max_speakers: Upper bound when estimating.
        min_silhouette: Below this best silhouette, one speaker is assumed.
        min_cluster_size: When estimating, the fewest spans a speaker may have.

    Returns:
        A cluster number per embedding, 0, 1, ... in order of first appearance.
    """
    n = len(embeddings)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    if n == 1:
        return np.zeros(1, dtype=np.int64)
    distances = cosine_distances(embeddings)
    partitions = average_linkage(distances)
    if num_speakers > 0:
        chosen = partitions[min(num_speakers, n) - 1]
    else:
        upper = min(max(max_speakers, 1), n - 1)
        scored = [
            (silhouette(distances, partitions[k - 1]), k)
            for k in range(2, upper + 1)
            if np.unique(partitions[k - 1], return_counts=True)[1].min() >= min_cluster_size
        ]
        best_score, best_k = max(scored, default=(0.0, 1))
        chosen = partitions[best_k - 1] if best_score >= min_silhouette else partitions[0]
    return first_appearance_order(chosen)


def first_appearance_order(labels: Labels) -> Labels:
    """Renumbers clusters 0, 1, ... in the order they first occur."""
    mapping: dict[int, int] = {}
    for label in labels.tolist():
        mapping.setdefault(label, len(mapping))
    return np.array([mapping[label] for label in labels.tolist()], dtype=np.int64)
