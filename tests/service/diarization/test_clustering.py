"""Spectral clustering on synthetic embeddings: voices as directions, windows as noisy samples."""

import numpy as np

from whisper_api.diarization import clustering


def _voices(counts: list[int], *, noise: float = 0.35, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    directions = clustering.normalized(rng.normal(size=(len(counts), 192)))
    truth = np.repeat(np.arange(len(counts)), counts)
    samples = directions[truth] + noise * rng.normal(size=(len(truth), 192)) / np.sqrt(192)
    return clustering.normalized(samples), truth


def _same_partition(found: np.ndarray, truth: np.ndarray) -> bool:
    pairs = {(int(a), int(b)) for a, b in zip(found, truth, strict=True)}
    return len(pairs) == len(set(found)) == len(set(truth))


def test_three_voices_are_three_speakers() -> None:
    embeddings, truth = _voices([40, 25, 60])
    labels = clustering.cluster(embeddings)
    assert _same_partition(labels, truth)


def test_one_voice_is_one_speaker() -> None:
    embeddings, _ = _voices([120])
    assert set(clustering.cluster(embeddings)) == {0}


def test_a_few_windows_are_one_speaker() -> None:
    embeddings, _ = _voices([4, 4])
    assert len(embeddings) < clustering.MIN_WINDOWS
    assert set(clustering.cluster(embeddings)) == {0}


def test_long_files_cluster_a_sample_and_assign_the_rest() -> None:
    embeddings, truth = _voices([2500, 1800])
    assert len(embeddings) > clustering.MAX_CLUSTERED
    assert _same_partition(clustering.cluster(embeddings), truth)


def test_near_identical_clusters_merge() -> None:
    embeddings, _ = _voices([50, 50])
    labels = np.repeat([0, 1], 50)
    centroids = clustering.centroids(embeddings, labels)
    assert centroids[0] @ centroids[1] < clustering.MERGE_SIMILARITY  # distinct voices stay apart
    same = clustering.normalized(embeddings[:50] + 0.01)
    assert set(clustering.cluster(np.vstack([embeddings[:50], same]))) == {0}
