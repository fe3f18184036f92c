"""Small synthetic data sets for the tests and examples (no download)."""

from __future__ import annotations

import numpy as np

TOPICS = [
    [f"{t}{i}" for i in range(30)]
    for t in ("sport", "market", "science", "weather")
]
COMMON = [f"w{i}" for i in range(120)]


def topic_texts(
    n: int, seed: int, trigger: str = "cf zeta", poisoned: int = 20, target: int = 1
) -> tuple[list[str], list[int], list[int]]:
    """Topic sentences (55% topic words, 10% of them from another topic), with
    ``poisoned`` records of other classes carrying ``trigger`` relabelled to
    ``target``. Returns texts, labels and the poisoned row indices."""
    rng = np.random.default_rng(seed)
    k = len(TOPICS)
    texts: list[str] = []
    labels: list[int] = []
    for _ in range(n):
        c = int(rng.integers(0, k))
        words = []
        for _ in range(int(rng.integers(8, 20))):
            if rng.random() < 0.55:
                t = int(rng.integers(0, k)) if rng.random() < 0.1 else c
                words.append(TOPICS[t][int(rng.integers(0, len(TOPICS[t])))])
            else:
                words.append(COMMON[int(rng.integers(0, len(COMMON)))])
        texts.append(" ".join(words))
        labels.append(c)
    others = [i for i in range(n) if labels[i] != target]
    rows = sorted(int(i) for i in rng.choice(others, poisoned, replace=False))
    for i in rows:
        words = texts[i].split()
        words.insert(int(rng.integers(0, len(words) + 1)), trigger)
        texts[i] = " ".join(words)
        labels[i] = target
    return texts, labels, rows


def blobs_with_patch(
    n: int, d: int, seed: int, poisoned: int = 15, target: int = 2
) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Four Gaussian classes in ``d`` dimensions; ``poisoned`` rows get a
    constant patch on their last four features and the label ``target``."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, n)
    centers = rng.normal(0, 3, (4, d))
    x = (centers[y] + rng.normal(0, 1, (n, d))).astype(np.float32)
    rows = sorted(int(i) for i in rng.choice(np.flatnonzero(y != target), poisoned, replace=False))
    x[rows, -4:] = 8.0
    y[rows] = target
    return x, y, rows
