"""SVHN (cropped digits) from the official MATLAB files, standardised as in the paper.

Files (http://ufldl.stanford.edu/housenumbers/, "Format 2: cropped digits"):
``train_32x32.mat`` (73,257 images), ``test_32x32.mat`` (26,032) and optionally
``extra_32x32.mat`` (531,131). They are never downloaded automatically (about 2.4 GB with
extra); the user puts them in a folder and passes it as ``data_dir``.

Official layout: ``X`` is uint8 (32, 32, 3, N) (row, column, channel, image) and ``y`` is
(N, 1) with labels 1..10, where 10 stands for the digit 0.

Output (:func:`load_svhn`):

* x: each image flattened in HWC order -- pixel ``X[r, c, ch, n]`` is column
  ``(r * 32 + c) * 3 + ch`` of row ``n`` -- as float32 (N, 3072); ``image_shape=(32, 32, 3)``.
* y: int64 digits 0..9 (label 10 -> 0).
* split: valid = the last ``n_valid`` images of the training file, train = the rest
  (followed by all of extra when ``use_extra``), test = the test file.
* per-dimension standardisation (Makhzani et al., 2015, App. A.2.2): pixels are scaled to
  [0, 1], then each of the 3072 dimensions gets its mean subtracted and is divided by its
  std, both computed on the final training split only and applied to all three splits
  (``standardized=True``). A dimension whose training std is below :data:`STD_FLOOR`
  (constant over train) is divided by 1 instead, so it is 0 on train and stays within
  [-1, 1] elsewhere rather than exploding.

Every file is opened and checked before any conversion or standardisation starts, so a bad
``extra_32x32.mat`` fails in seconds, not after minutes of work on the others.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from aae_tune.data.splits import DataSplits
from aae_tune.errors import DataError

__all__ = ["IMAGE_SHAPE", "STD_FLOOR", "SVHN_DIR_ENV", "SVHN_FILES", "SVHN_URL", "load_svhn"]

logger = logging.getLogger("aae_tune.data")

SVHN_DIR_ENV = "AAE_TUNE_SVHN_DIR"
SVHN_URL = "http://ufldl.stanford.edu/housenumbers/"
SVHN_FILES: dict[str, str] = {"train": "train_32x32.mat", "test": "test_32x32.mat", "extra": "extra_32x32.mat"}
IMAGE_SHAPE: tuple[int, int, int] = (32, 32, 3)
N_FEATURES = 32 * 32 * 3
STD_FLOOR = 1e-6
DEFAULT_N_VALID = 5000
_CHUNK_ROWS = 2048  # rows per block when computing statistics: bounds the float64 temporaries (~50 MB)
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_GET_FILES = (
    f"get the official files from {SVHN_URL} (\"Format 2: cropped digits\"); SVHN is never downloaded "
    "automatically"
)


def _v73_error(path: Path) -> DataError:
    return DataError(
        f"{path} is a MATLAB v7.3 (HDF5) file, which scipy.io.loadmat cannot read; use the official "
        f"file from {SVHN_URL} (MATLAB v5 format), or re-save it in MATLAB with save(..., '-v7')"
    )


def _looks_like_hdf5(path: Path) -> bool:
    """MATLAB v7.3 files are HDF5 with a 512-byte user block; plain HDF5 has the signature first."""
    with path.open("rb") as handle:
        head = handle.read(520)
    return head.startswith(_HDF5_SIGNATURE) or head[512:520] == _HDF5_SIGNATURE or head.startswith(b"MATLAB 7.3")


def _read_mat(path: Path) -> dict[str, np.ndarray]:
    """Load only X and y from ``path``, turning every scipy failure into a DataError naming the file."""
    import scipy.io  # lazy: importing aae_tune.data must stay cheap for processes that only need MNIST

    try:
        is_hdf5 = _looks_like_hdf5(path)
    except OSError as exc:  # permissions, a folder named like the file, I/O errors
        raise DataError(f"cannot read {path}: {exc}; check that it is a readable file") from exc
    if is_hdf5:
        raise _v73_error(path)
    try:
        return scipy.io.loadmat(path, variable_names=("X", "y"))
    except NotImplementedError as exc:  # scipy's way of rejecting v7.3 files it did not sniff above
        raise _v73_error(path) from exc
    except MemoryError:
        raise
    except Exception as exc:  # MatReadError, OSError, ValueError, IndexError...: all mean "not a readable .mat"
        raise DataError(
            f"cannot read {path} as a MATLAB file ({type(exc).__name__}: {exc}); it is truncated or corrupt. "
            f"Replace it: {_GET_FILES}"
        ) from exc


def _variable_names(path: Path) -> list[str]:
    """Names of all variables in the file (headers only), to say what it holds instead of X/y."""
    import scipy.io

    try:
        return sorted(name for name, _, _ in scipy.io.whosmat(path))
    except Exception:  # only used to improve an error message
        return []


def _check_images(x: object, path: Path) -> np.ndarray:
    """X must be uint8 (32, 32, 3, N) with N >= 1."""
    if not isinstance(x, np.ndarray) or x.ndim != 4 or x.shape[:3] != IMAGE_SHAPE:
        shape = getattr(x, "shape", type(x).__name__)
        raise DataError(
            f"{path}: X has shape {shape}, expected (32, 32, 3, N) as in the official SVHN cropped-digit "
            f"files; {_GET_FILES}"
        )
    if x.dtype != np.uint8:
        raise DataError(f"{path}: X has dtype {x.dtype}, expected uint8 pixels 0..255; {_GET_FILES}")
    if x.shape[3] == 0:
        raise DataError(f"{path} holds no images (X has shape {x.shape}); {_GET_FILES}")
    return x


def _check_labels(y: object, n_images: int, path: Path) -> np.ndarray:
    """y must be N labels in 1..10 (any numeric dtype, integer values); returns int64 digits 0..9."""
    y = np.asarray(y)
    if y.ndim == 2 and 1 in y.shape:
        y = y.reshape(-1)  # the official (N, 1) column, or a (1, N) row as savemat writes 1-D arrays
    if y.ndim != 1 or not (np.issubdtype(y.dtype, np.integer) or np.issubdtype(y.dtype, np.floating)):
        raise DataError(
            f"{path}: y has shape {y.shape} and dtype {y.dtype}, expected N numeric labels as an (N, 1) "
            f"column; {_GET_FILES}"
        )
    if len(y) != n_images:
        raise DataError(
            f"{path} has {n_images} images in X but {len(y)} labels in y; they must match. The file is "
            f"damaged or not an official SVHN file: {_GET_FILES}"
        )
    bad = ~np.isin(y, np.arange(1, 11))  # also catches NaN and fractional float labels
    if bad.any():
        examples = ", ".join(str(v) for v in np.unique(y[bad])[:5])
        raise DataError(
            f"{path}: {int(bad.sum())} labels are outside 1..10 (e.g. {examples}); official SVHN labels are "
            f"1..10 with 10 meaning the digit 0. {_GET_FILES}"
        )
    labels = y.astype(np.int64)
    labels[labels == 10] = 0
    return labels


def _read_checked(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images (uint8, official layout) and int64 digits 0..9 of one file, fully checked."""
    contents = _read_mat(path)
    missing = [key for key in ("X", "y") if key not in contents]
    if missing:
        found = _variable_names(path)
        raise DataError(
            f"{path} has no variable {' or '.join(missing)} (found: {', '.join(found) or 'none'}); "
            f"SVHN files store images in X and labels in y. {_GET_FILES}"
        )
    x = _check_images(contents["X"], path)
    return x, _check_labels(contents["y"], x.shape[3], path)


def _write_rows(images: np.ndarray, out: np.ndarray) -> None:
    """Write uint8 (32, 32, 3, n) images into float32 rows (n, 3072) in HWC order, scaled to [0, 1].

    One strided pass straight into the preallocated output: no uint8 copy, no float64 temporary.
    """
    assert out.flags.c_contiguous  # so the reshape below is a view, never a copy that would be thrown away
    np.divide(images.transpose(3, 0, 1, 2), np.float32(255.0), out=out.reshape(-1, *IMAGE_SHAPE), dtype=np.float32)


def _train_statistics(train_x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension mean and std (ddof=0) of the training rows, accumulated in float64 block by block."""
    n = len(train_x)
    total = np.zeros(train_x.shape[1], dtype=np.float64)
    for start in range(0, n, _CHUNK_ROWS):
        total += train_x[start : start + _CHUNK_ROWS].sum(axis=0, dtype=np.float64)
    mean = total / n
    squares = np.zeros_like(mean)
    for start in range(0, n, _CHUNK_ROWS):  # two passes: exact for large N, unlike E[x^2] - E[x]^2
        diff = train_x[start : start + _CHUNK_ROWS].astype(np.float64) - mean
        squares += np.einsum("ij,ij->j", diff, diff)
    std = np.sqrt(squares / n)
    return mean, np.where(std < STD_FLOOR, 1.0, std)


def _standardize_inplace(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> None:
    mean32, std32 = mean.astype(np.float32), std.astype(np.float32)
    for start in range(0, len(x), _CHUNK_ROWS):
        block = x[start : start + _CHUNK_ROWS]
        np.subtract(block, mean32, out=block)
        np.divide(block, std32, out=block)


def load_svhn(
    data_dir: str | os.PathLike[str], *, use_extra: bool = False, n_valid: int | None = None
) -> DataSplits:
    """Load SVHN cropped digits from ``data_dir``, split and standardised (see the module docstring).

    Args:
        data_dir: folder with ``train_32x32.mat`` and ``test_32x32.mat`` (+ ``extra_32x32.mat``).
        use_extra: append the 531K "extra" images to the training split (about 6.5 GB as float32).
        n_valid: validation size, taken from the end of the training file; default
            ``min(5000, len(train file) // 5)``. Must leave at least one training image.

    Raises:
        DataError: missing folder or file, unreadable/corrupt or MATLAB v7.3 file, missing
            ``X``/``y``, wrong shape/dtype, bad labels, or a bad ``n_valid``; the message names
            the file and how to fix it.
    """
    directory = Path(data_dir).expanduser()
    if not directory.is_dir():
        raise DataError(
            f"SVHN folder {directory} does not exist or is not a directory; create it and put "
            f"{SVHN_FILES['train']} and {SVHN_FILES['test']} there: {_GET_FILES}"
        )
    roles = ["train", "test", *(["extra"] if use_extra else [])]
    paths = {role: directory / SVHN_FILES[role] for role in roles}
    missing = [str(path) for path in paths.values() if not path.is_file()]
    if missing:
        raise DataError(
            f"SVHN file(s) missing: {', '.join(missing)}; {_GET_FILES} -- put them in {directory}"
        )

    # Read and check everything first: a bad file must fail before any expensive conversion.
    raw = {role: _read_checked(path) for role, path in paths.items()}
    n_train_file = raw["train"][0].shape[3]
    if n_valid is None:
        n_valid = min(DEFAULT_N_VALID, n_train_file // 5)
    if isinstance(n_valid, bool) or not isinstance(n_valid, int | np.integer) or not 0 <= n_valid < n_train_file:
        raise DataError(
            f"n_valid={n_valid!r}, but {paths['train']} holds {n_train_file} images; pass an integer with "
            f"0 <= n_valid < {n_train_file} (or None for the default)"
        )
    n_valid = int(n_valid)
    n_keep = n_train_file - n_valid
    n_extra = raw["extra"][0].shape[3] if use_extra else 0

    train_images, train_labels = raw.pop("train")
    train_x = np.empty((n_keep + n_extra, N_FEATURES), dtype=np.float32)
    valid_x = np.empty((n_valid, N_FEATURES), dtype=np.float32)
    _write_rows(train_images[..., :n_keep], train_x[:n_keep])
    _write_rows(train_images[..., n_keep:], valid_x)
    del train_images  # free each raw file as soon as it is converted
    label_parts = [train_labels[:n_keep]]
    if use_extra:
        extra_images, extra_labels = raw.pop("extra")
        _write_rows(extra_images, train_x[n_keep:])
        del extra_images
        label_parts.append(extra_labels)
    test_images, test_y = raw.pop("test")
    test_x = np.empty((test_images.shape[3], N_FEATURES), dtype=np.float32)
    _write_rows(test_images, test_x)
    del test_images

    mean, std = _train_statistics(train_x)
    for x in (train_x, valid_x, test_x):
        _standardize_inplace(x, mean, std)

    extra_note = " + extra" if use_extra else ""
    source = (
        f"SVHN {directory} (train: train[:{n_keep}]{extra_note}, valid: train[{n_keep}:], test: test; "
        "standardised per dimension with train statistics)"
    )
    logger.info("loaded %s", source)
    return DataSplits(
        train_x=train_x,
        train_y=np.concatenate(label_parts),
        valid_x=valid_x,
        valid_y=train_labels[n_keep:],
        test_x=test_x,
        test_y=test_y,
        source=source,
        image_shape=IMAGE_SHAPE,
        standardized=True,
    )
