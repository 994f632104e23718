"""User-supplied datasets as one ``.npz`` file (e.g. the Toronto Face Database).

Some datasets in the paper cannot be redistributed (TFD is not public), so users bring
their own copy in a simple, pickle-free format that ``np.savez`` writes directly::

    np.savez("tfd.npz", train_x=..., train_y=..., valid_x=..., valid_y=..., test_x=..., test_y=...)

* x: (N, D), or images (N, H, W) / (N, H, W, C); all splits must share the per-image shape.
  Images set ``image_shape`` to (H, W) or (H, W, C) (C == 1 is treated as (H, W)); for flat
  (N, D) data an optional integer key ``image_shape`` gives it, else a square (s, s) or
  (s, s, 3) shape is inferred from D, else ``(1, D)``.
* y: (N,) non-negative integer class labels (integer dtype, or floats with whole values).
* ``standardized`` (optional scalar, default False): True if x is already standardised;
  otherwise x must lie in [0, 1] like MNIST, because the models treat it as pixel intensities.

Output: x float32 (N, D), y int64, in a :class:`DataSplits`. The file is opened with
``allow_pickle=False``, so it cannot run code.
"""

from __future__ import annotations

import math
import os
import zipfile
from pathlib import Path

import numpy as np

from aae_tune.data.splits import DataSplits, guess_image_shape
from aae_tune.errors import DataError

__all__ = ["ARRAY_KEYS", "load_arrays"]

SPLITS = ("train", "valid", "test")
ARRAY_KEYS: tuple[str, ...] = tuple(f"{split}_{part}" for split in SPLITS for part in ("x", "y"))
_FORMAT_HINT = (
    "write it with np.savez(path, train_x=..., train_y=..., valid_x=..., valid_y=..., test_x=..., test_y=...)"
)


def _open_npz(path: Path) -> dict[str, np.ndarray]:
    """All arrays of the file, loaded eagerly so that a corrupt member fails here, naming the file."""
    if not path.is_file():
        raise DataError(f"array file {path} does not exist; pass the path of your .npz file ({_FORMAT_HINT})")
    try:
        with path.open("rb") as handle:
            magic = handle.read(6)
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc}") from exc
    # Sniff first: for a non-zip file np.load falls back to unpickling and reports only "allow_pickle".
    if magic == b"\x93NUMPY":
        raise DataError(f"{path} is a single .npy array, not an .npz archive; {_FORMAT_HINT}")
    if not magic.startswith(b"PK"):
        raise DataError(f"{path} is not an .npz (zip) archive; {_FORMAT_HINT}")
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {key: npz[key] for key in npz.files}
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise DataError(
                f"{path} contains object (pickled) arrays, which are not loaded for safety; save plain numeric "
                f"arrays instead ({_FORMAT_HINT})"
            ) from exc
        raise DataError(f"{path} is not a valid .npz file ({exc}); {_FORMAT_HINT}") from exc
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(
            f"cannot read {path} as an .npz file ({type(exc).__name__}: {exc}); it is truncated or corrupt. "
            f"{_FORMAT_HINT}"
        ) from exc


def _flag(arrays: dict[str, np.ndarray], path: Path) -> bool:
    if "standardized" not in arrays:
        return False
    value = arrays["standardized"]
    if value.shape != () or value.dtype.kind not in "biu" or value.item() not in (0, 1):
        raise DataError(
            f"{path}: key 'standardized' must be a scalar True/False, got shape {value.shape} dtype {value.dtype}; "
            "save it as standardized=True or standardized=False"
        )
    return bool(value.item())


def _image_shape(feature_shape: tuple[int, ...], arrays: dict[str, np.ndarray], path: Path) -> tuple[int, ...]:
    """Per-image shape for figures, from the array layout, an explicit key, or a square guess."""
    if len(feature_shape) == 3 and feature_shape[2] == 1:
        return feature_shape[:2]
    if len(feature_shape) > 1:
        return feature_shape
    (dim,) = feature_shape
    if "image_shape" in arrays:
        given = arrays["image_shape"]
        if given.ndim != 1 or given.dtype.kind not in "iu" or math.prod(given.tolist()) != dim or (given < 1).any():
            raise DataError(
                f"{path}: key 'image_shape' is {given.tolist()}, which does not describe {dim} features; "
                "save it as e.g. image_shape=np.array([48, 48]) or leave it out"
            )
        return tuple(int(v) for v in given)
    return guess_image_shape(dim)


def _check_split(arrays: dict[str, np.ndarray], split: str, path: Path) -> None:
    x, y = arrays[f"{split}_x"], arrays[f"{split}_y"]
    if x.ndim not in (2, 3, 4) or x.dtype.kind not in "biuf":
        raise DataError(
            f"{path}: {split}_x has shape {x.shape} and dtype {x.dtype}; expected a numeric array of shape "
            "(N, D), (N, H, W) or (N, H, W, C)"
        )
    if y.ndim == 2 and y.shape[1] == 1:
        y = arrays[f"{split}_y"] = y.reshape(-1)
    if y.ndim != 1:
        raise DataError(f"{path}: {split}_y has shape {y.shape}; expected (N,) class labels")
    if len(x) != len(y):
        raise DataError(
            f"{path}: {split}_x has {len(x)} examples but {split}_y has {len(y)} labels; they must match"
        )
    if len(x) == 0:
        raise DataError(f"{path}: the {split} split is empty; every split needs at least one example")
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        bad = int(np.size(x) - np.count_nonzero(np.isfinite(x)))
        raise DataError(f"{path}: {split}_x has {bad} non-finite values (NaN/inf); clean or drop those examples")
    integral = y.dtype.kind in "iu" or (y.dtype.kind == "f" and np.isfinite(y).all() and (y == np.round(y)).all())
    if not integral or y.min() < 0:
        shown = np.unique(y)[:5].tolist()
        raise DataError(
            f"{path}: {split}_y must hold non-negative integer class labels, got dtype {y.dtype} with values "
            f"such as {shown}; map the classes to 0..K-1"
        )


def load_arrays(path: str | os.PathLike[str]) -> DataSplits:
    """Load a user-supplied dataset from one ``.npz`` file (format in the module docstring).

    Raises:
        DataError: missing file, not an ``.npz``, missing keys (all listed), count mismatch,
            different per-example shapes across splits, non-finite values, bad labels, or
            un-standardised pixels outside [0, 1]; the message names the file and the fix.
    """
    path = Path(path).expanduser()
    arrays = _open_npz(path)
    missing = [key for key in ARRAY_KEYS if key not in arrays]
    if missing:
        raise DataError(
            f"{path} is missing the key(s) {', '.join(missing)} (found: {', '.join(sorted(arrays)) or 'none'}); "
            f"{_FORMAT_HINT}"
        )
    standardized = _flag(arrays, path)
    for split in SPLITS:
        _check_split(arrays, split, path)
    shapes = {split: arrays[f"{split}_x"].shape[1:] for split in SPLITS}
    if len(set(shapes.values())) != 1:
        listed = ", ".join(f"{split}_x {shape}" for split, shape in shapes.items())
        raise DataError(f"{path}: the splits have different per-example shapes ({listed}); they must all match")
    if not standardized:
        for split in SPLITS:
            x = arrays[f"{split}_x"]
            low, high = x.min(), x.max()
            if low < 0 or high > 1:
                raise DataError(
                    f"{path}: {split}_x has values in [{low}, {high}], but pixels must be in [0, 1] unless the file "
                    "sets standardized=True; divide uint8 images by 255, or save standardized=True if x is "
                    "already standardised"
                )

    image_shape = _image_shape(shapes["train"], arrays, path)
    out: dict[str, np.ndarray] = {}
    for split in SPLITS:
        x = arrays[f"{split}_x"]
        out[f"{split}_x"] = np.ascontiguousarray(x.reshape(len(x), -1), dtype=np.float32)
        out[f"{split}_y"] = arrays[f"{split}_y"].astype(np.int64)
    return DataSplits(**out, source=f"array file {path}", image_shape=image_shape, standardized=standardized)
