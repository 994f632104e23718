"""The dataset container every loader returns (train/valid/test arrays plus what figures need), and the
``SplitData`` protocol: what the trainer, the scores and the figures read from a dataset.

Kept in its own module (not in :mod:`aae_tune.data.mnist`) because MNIST, SVHN and user
array files all produce it.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np

__all__ = ["MNIST_IMAGE_SHAPE", "DataSplits", "SplitData", "guess_image_shape"]

MNIST_IMAGE_SHAPE: tuple[int, ...] = (28, 28)
# The paper's MNIST split sizes (train, valid, test); duplicated from mnist.py to avoid an import cycle.
_MNIST_FULL_SIZES = (50000, 10000, 10000)


@dataclass(frozen=True)
class DataSplits:
    """The three splits as arrays: x is (N, D) float32, y is (N,) int64 class labels.

    ``image_shape`` is the per-image shape that a row of x reshapes to (C order), for figures:
    (28, 28) grayscale MNIST, (32, 32, 3) colour SVHN in HWC order. ``standardized`` tells
    whether pixels are per-dimension standardised (zero mean, unit std on train; SVHN) rather
    than in [0, 1] (MNIST), because reconstruction losses and image plots must treat them
    differently.
    """

    train_x: np.ndarray
    train_y: np.ndarray
    valid_x: np.ndarray
    valid_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    source: str  # where the data came from, for logs and run metadata
    image_shape: tuple[int, ...] = MNIST_IMAGE_SHAPE
    standardized: bool = False

    @property
    def is_full(self) -> bool:
        """True for the real 60K+10K MNIST (50000/10000/10000), False for the embedded subset or other data."""
        sizes = (len(self.train_y), len(self.valid_y), len(self.test_y))
        return tuple(self.image_shape) == MNIST_IMAGE_SHAPE and sizes == _MNIST_FULL_SIZES

    def head(self, n_train: int, n_valid: int | None = None, n_test: int | None = None) -> DataSplits:
        """The first examples of each split (views, no copy): smoke runs, tests and benchmarks."""
        # name only the splits that were cut, each with what it holds now (a 4000-image subset cut to 5000 is 4000)
        sizes = {"train": (n_train, len(self.train_y)), "valid": (n_valid, len(self.valid_y)),
                 "test": (n_test, len(self.test_y))}
        parts = [f"{split} {min(n, total)} of {total}" for split, (n, total) in sizes.items() if n is not None]
        return dataclasses.replace(
            self,
            train_x=self.train_x[:n_train],
            train_y=self.train_y[:n_train],
            valid_x=self.valid_x[:n_valid],
            valid_y=self.valid_y[:n_valid],
            test_x=self.test_x[:n_test],
            test_y=self.test_y[:n_test],
            source=f"{self.source} ({', '.join(parts)})",
        )


class SplitData(Protocol):
    """What training and scoring read from a dataset (``DataSplits`` is one; tests pass slices of one)."""

    train_x: np.ndarray  # (N, D) float32: pixels in [0, 1], or standardised per dimension (SVHN)
    train_y: np.ndarray  # (N,) int64
    valid_x: np.ndarray
    valid_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray


def guess_image_shape(dim: int) -> tuple[int, ...]:
    """Per-image shape of ``dim`` flattened pixels when nothing says otherwise: (s, s) grayscale, else
    (s, s, 3) colour in HWC order, else one row of pixels."""
    side = math.isqrt(dim)
    if side * side == dim:
        return (side, side)
    side = math.isqrt(dim // 3)
    if dim % 3 == 0 and side * side * 3 == dim:
        return (side, side, 3)
    return (1, dim)
