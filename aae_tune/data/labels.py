"""Which training labels a semi-supervised run may see: a seeded subset balanced per class (Sec. 5: "100
labels" means 10 per digit), and the label vector the trainer uses, with -1 where the label is hidden."""

from __future__ import annotations

import numpy as np


def balanced_subset(y: np.ndarray, n: int, num_classes: int, seed: int) -> np.ndarray:
    """Sorted indices of ``n`` examples of ``y`` (N,), n // K per class (the first n % K classes get one more),
    drawn without replacement with ``seed``. Raises ValueError when a class has too few examples."""
    y = np.asarray(y)
    if n >= len(y):
        return np.arange(len(y))
    rng = np.random.default_rng(seed)
    picked = []
    for k in range(num_classes):
        want = n // num_classes + (1 if k < n % num_classes else 0)
        members = np.flatnonzero(y == k)
        if len(members) < want:
            raise ValueError(f"class {k} has {len(members)} training examples, fewer than the {want} asked for")
        picked.append(rng.choice(members, size=want, replace=False))
    return np.sort(np.concatenate(picked))


def visible_labels(y: np.ndarray, num_labeled: int | None, num_classes: int, seed: int) -> np.ndarray:
    """(N,) int64 labels with every hidden one set to -1; ``num_labeled=None`` keeps them all."""
    y = np.asarray(y, dtype=np.int64)
    if num_labeled is None or num_labeled >= len(y):
        return y.copy()
    out = np.full_like(y, -1)
    keep = balanced_subset(y, num_labeled, num_classes, seed)
    out[keep] = y[keep]
    return out
