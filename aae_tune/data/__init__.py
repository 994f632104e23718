"""Datasets for aae_tune: MNIST (paper split), SVHN (standardised) and user-supplied array files.

Public API: :func:`load_dataset` (by name, see :data:`DATASETS`), the loaders
:func:`load_mnist`, :func:`load_svhn`, :func:`load_arrays`, the container :class:`DataSplits`,
the :class:`SplitData` protocol and :class:`DataError` (from :mod:`aae_tune.errors`). Every
data problem (missing, corrupt, failed download) raises :class:`DataError` with a message that
names the file and how to fix it. Deliberately free of torch, Ray and MLflow (scipy is imported
only when SVHN is loaded) so that any process (trial worker, CLI, test) can import it cheaply.
"""

from __future__ import annotations

import os
from typing import Any

from aae_tune.data.arrays import load_arrays
from aae_tune.data.mnist import load_mnist
from aae_tune.data.splits import DataSplits, SplitData
from aae_tune.data.svhn import SVHN_DIR_ENV, SVHN_FILES, SVHN_URL, load_svhn
from aae_tune.errors import DataError

__all__ = [
    "DATASETS",
    "DataError",
    "DataSplits",
    "SplitData",
    "load_arrays",
    "load_dataset",
    "load_mnist",
    "load_svhn",
]

DATASETS: tuple[str, ...] = ("mnist", "svhn", "array")


def load_dataset(name: str, data_dir: str | os.PathLike[str] | None = None, **options: Any) -> DataSplits:
    """Load a dataset by name; ``options`` go to the loader (e.g. ``use_extra``/``n_valid`` for SVHN).

    * ``"mnist"``: :func:`load_mnist` (``data_dir`` optional: env var, cache, download, ...).
    * ``"svhn"``: :func:`load_svhn` on ``data_dir``, else ``$AAE_TUNE_SVHN_DIR``; never downloaded.
    * ``"array"``: :func:`load_arrays`; ``data_dir`` is the path of the ``.npz`` file (required).

    Raises:
        DataError: unknown name, no location for SVHN/array data, or any loader error.
    """
    key = name.strip().lower()
    if key == "mnist":
        return load_mnist(data_dir, **options)
    if key == "svhn":
        directory = data_dir if data_dir is not None else os.environ.get(SVHN_DIR_ENV) or None
        if directory is None:
            raise DataError(
                f"SVHN needs a folder with {SVHN_FILES['train']} and {SVHN_FILES['test']}: pass --data-dir "
                f"(data_dir=...) or set {SVHN_DIR_ENV}. SVHN is never downloaded automatically; get the files "
                f"from {SVHN_URL} (\"Format 2: cropped digits\")"
            )
        return load_svhn(directory, **options)
    if key == "array":
        if data_dir is None:
            raise DataError(
                "the array dataset needs the path of your .npz file (train_x, train_y, valid_x, valid_y, "
                "test_x, test_y): pass it as --data-dir (data_dir=...)"
            )
        return load_arrays(data_dir, **options)
    raise DataError(f"unknown dataset {name!r}; valid names are {', '.join(DATASETS)}")
