"""Tests for aae_tune.data.svhn on small .mat files written in the official SVHN layout.

The official files are 2.4 GB and never downloaded, so each test writes a few dozen random
images with scipy.io.savemat exactly as the official files store them: X uint8
(32, 32, 3, N), y (N, 1) labels 1..10 with 10 meaning the digit 0.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.io

from aae_tune.data import DataError, DataSplits, load_svhn

N_TRAIN, N_TEST, N_EXTRA = 60, 20, 30


def _images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(32, 32, 3, n), dtype=np.uint8)
    y = np.resize(np.arange(1, 11, dtype=np.uint8), n)[rng.permutation(n)].reshape(n, 1)  # every label incl. 10
    return x, y


def _write(path: Path, **variables: object) -> Path:
    scipy.io.savemat(path, variables)
    return path


@pytest.fixture
def svhn_dir(tmp_path: Path) -> Path:
    for name, n, seed in (("train", N_TRAIN, 1), ("test", N_TEST, 2), ("extra", N_EXTRA, 3)):
        x, y = _images(n, seed)
        _write(tmp_path / f"{name}_32x32.mat", X=x, y=y)
    return tmp_path


def _raw(directory: Path, name: str) -> tuple[np.ndarray, np.ndarray]:
    contents = scipy.io.loadmat(directory / f"{name}_32x32.mat")
    return contents["X"], contents["y"].reshape(-1)


def _rows_by_formula(x: np.ndarray) -> np.ndarray:
    """HWC flattening written out index by index, independent of the loader's transpose: [0, 1] float64."""
    rows = np.empty((x.shape[3], 3072), dtype=np.float64)
    for r in range(32):
        for c in range(32):
            for ch in range(3):
                rows[:, (r * 32 + c) * 3 + ch] = x[r, c, ch, :]
    return rows / 255.0


# ---------------------------------------------------------------------------------------------- layout
def test_shapes_labels_and_split(svhn_dir: Path) -> None:
    splits = load_svhn(svhn_dir)
    assert isinstance(splits, DataSplits)
    n_valid = N_TRAIN // 5  # default min(5000, N // 5)
    for part, n in (("train", N_TRAIN - n_valid), ("valid", n_valid), ("test", N_TEST)):
        x, y = getattr(splits, f"{part}_x"), getattr(splits, f"{part}_y")
        assert x.shape == (n, 3072) and x.dtype == np.float32 and x.flags.c_contiguous
        assert y.shape == (n,) and y.dtype == np.int64
    assert splits.image_shape == (32, 32, 3) and splits.standardized and not splits.is_full
    assert "SVHN" in splits.source

    _, train_labels = _raw(svhn_dir, "train")
    _, test_labels = _raw(svhn_dir, "test")
    assert 10 in train_labels and 10 in test_labels
    assert np.array_equal(splits.train_y, train_labels[: N_TRAIN - n_valid] % 10)  # 10 -> digit 0
    assert np.array_equal(splits.valid_y, train_labels[N_TRAIN - n_valid :] % 10)
    assert np.array_equal(splits.test_y, test_labels % 10)
    assert set(splits.train_y.tolist()) == set(range(10))

    head = splits.head(5, 2, 3)
    assert head.image_shape == (32, 32, 3) and head.standardized
    assert (len(head.train_y), len(head.valid_y), len(head.test_y)) == (5, 2, 3)


def test_hwc_flattening_and_standardisation(svhn_dir: Path) -> None:
    n_valid = 7
    splits = load_svhn(svhn_dir, n_valid=n_valid)
    train_images, _ = _raw(svhn_dir, "train")
    test_images, _ = _raw(svhn_dir, "test")
    rows = _rows_by_formula(train_images)
    train_rows, valid_rows = rows[:-n_valid], rows[-n_valid:]
    mean, std = train_rows.mean(axis=0), train_rows.std(axis=0)

    # Train statistics, applied to all three splits.
    np.testing.assert_allclose(splits.train_x, (train_rows - mean) / std, atol=1e-5)
    np.testing.assert_allclose(splits.valid_x, (valid_rows - mean) / std, atol=1e-5)
    np.testing.assert_allclose(splits.test_x, (_rows_by_formula(test_images) - mean) / std, atol=1e-5)
    np.testing.assert_allclose(splits.train_x.mean(axis=0, dtype=np.float64), 0.0, atol=1e-5)
    np.testing.assert_allclose(splits.train_x.std(axis=0, dtype=np.float64), 1.0, atol=1e-5)
    assert abs(float(splits.test_x.mean())) > 1e-4  # test is NOT re-standardised with its own statistics

    # One pixel spelled out: X[r, c, ch, n] lands at column (r*32 + c)*3 + ch of row n.
    r, c, ch, n = 5, 17, 2, 11
    col = (r * 32 + c) * 3 + ch
    assert splits.train_x[n, col] * std[col] + mean[col] == pytest.approx(train_images[r, c, ch, n] / 255, abs=1e-5)


def test_constant_pixel_does_not_divide_by_zero(tmp_path: Path) -> None:
    x, y = _images(N_TRAIN, 1)
    x[0, 0, 0, :] = 77  # constant over the whole training file
    _write(tmp_path / "train_32x32.mat", X=x, y=y)
    test_x, test_y = _images(N_TEST, 2)
    _write(tmp_path / "test_32x32.mat", X=test_x, y=test_y)
    splits = load_svhn(tmp_path)
    assert np.isfinite(splits.train_x).all() and np.isfinite(splits.test_x).all()
    assert np.all(splits.train_x[:, 0] == 0)
    assert np.abs(splits.test_x[:, 0]).max() <= 1.0  # divided by 1, not by a tiny floor
    np.testing.assert_allclose(splits.train_x[:, 1:].std(axis=0, dtype=np.float64), 1.0, atol=1e-5)


def test_use_extra_and_float_labels(svhn_dir: Path) -> None:
    # Labels stored as float (as some converted copies do) are accepted when they are whole numbers 1..10.
    extra_x, extra_y = _raw(svhn_dir, "extra")
    _write(svhn_dir / "extra_32x32.mat", X=extra_x, y=extra_y.astype(np.float64).reshape(-1, 1))
    base = load_svhn(svhn_dir, n_valid=10)
    splits = load_svhn(svhn_dir, use_extra=True, n_valid=10)
    assert (len(splits.train_y), len(splits.valid_y), len(splits.test_y)) == (N_TRAIN - 10 + N_EXTRA, 10, N_TEST)
    assert np.array_equal(splits.train_y, np.concatenate([base.train_y, extra_y % 10]))
    assert np.array_equal(splits.valid_y, base.valid_y)
    # Statistics now include extra: check against a reference over train[:-10] + extra.
    train_images, _ = _raw(svhn_dir, "train")
    rows = np.concatenate([_rows_by_formula(train_images)[:-10], _rows_by_formula(extra_x)])
    mean, std = rows.mean(axis=0), rows.std(axis=0)
    np.testing.assert_allclose(splits.train_x, (rows - mean) / std, atol=1e-5)
    np.testing.assert_allclose(splits.valid_x, (_rows_by_formula(train_images)[-10:] - mean) / std, atol=1e-5)


@pytest.mark.parametrize("n_valid", [0, 1, N_TRAIN - 1])
def test_n_valid_edges(svhn_dir: Path, n_valid: int) -> None:
    splits = load_svhn(svhn_dir, n_valid=n_valid)
    assert (len(splits.train_x), len(splits.valid_x)) == (N_TRAIN - n_valid, n_valid)
    assert splits.valid_x.shape == (n_valid, 3072)


def test_extra_not_needed_without_use_extra(svhn_dir: Path) -> None:
    (svhn_dir / "extra_32x32.mat").unlink()
    assert len(load_svhn(svhn_dir).train_y) == N_TRAIN - N_TRAIN // 5


# ---------------------------------------------------------------------------------------------- errors
def _bad_train(svhn_dir: Path, **variables: object) -> None:
    _write(svhn_dir / "train_32x32.mat", **variables)


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _fake_v73(path: Path) -> None:
    """What MATLAB's save -v7.3 writes: a 128-byte MAT header, then HDF5 at offset 512."""
    header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 ."
    path.write_bytes(header.ljust(124, b" ") + b"\x00\x02IM" + bytes(384) + b"\x89HDF\r\n\x1a\n" + bytes(64))


X_OK, Y_OK = _images(N_TRAIN, 1)

# (id, how to break the folder, file the message must name, regex the message must match)
BROKEN = [
    ("train-missing", lambda d: (d / "train_32x32.mat").unlink(), "train_32x32.mat",
     r"missing.*ufldl\.stanford\.edu/housenumbers.*Format 2: cropped digits.*never downloaded automatically"),
    ("test-missing", lambda d: (d / "test_32x32.mat").unlink(), "test_32x32.mat", r"missing.*ufldl"),
    ("garbage", lambda d: (d / "test_32x32.mat").write_bytes(b"<html>404 Not Found</html>" * 20),
     "test_32x32.mat", r"cannot read .* as a MATLAB file.*corrupt"),
    ("empty-file", lambda d: (d / "test_32x32.mat").write_bytes(b""), "test_32x32.mat", r"cannot read"),
    ("truncated", lambda d: _truncate(d / "train_32x32.mat"), "train_32x32.mat", r"truncated or corrupt"),
    ("matlab-v7.3", lambda d: _fake_v73(d / "train_32x32.mat"), "train_32x32.mat", r"v7\.3 \(HDF5\).*scipy"),
    ("no-X", lambda d: _bad_train(d, y=Y_OK), "train_32x32.mat", r"no variable X \(found: y\)"),
    ("no-y", lambda d: _bad_train(d, X=X_OK), "train_32x32.mat", r"no variable y"),
    ("no-X-no-y", lambda d: _bad_train(d, Z=Y_OK), "train_32x32.mat", r"no variable X or y \(found: Z\)"),
    ("X-3d", lambda d: _bad_train(d, X=X_OK[..., 0, :], y=Y_OK), "train_32x32.mat", r"X has shape \(32, 32, 60\)"),
    ("X-nhwc", lambda d: _bad_train(d, X=X_OK.transpose(3, 0, 1, 2), y=Y_OK), "train_32x32.mat",
     r"X has shape \(60, 32, 32, 3\), expected \(32, 32, 3, N\)"),
    ("X-gray", lambda d: _bad_train(d, X=X_OK[:, :, :1], y=Y_OK), "train_32x32.mat", r"expected \(32, 32, 3, N\)"),
    ("X-float", lambda d: _bad_train(d, X=X_OK.astype(np.float64), y=Y_OK), "train_32x32.mat",
     r"dtype float64, expected uint8"),
    ("X-no-images", lambda d: _bad_train(d, X=X_OK[..., :0], y=Y_OK[:0]), "train_32x32.mat", r"holds no images"),
    ("y-matrix", lambda d: _bad_train(d, X=X_OK, y=np.ones((N_TRAIN, 2), np.uint8)), "train_32x32.mat",
     r"y has shape \(60, 2\)"),
    ("y-text", lambda d: _bad_train(d, X=X_OK, y="digits"), "train_32x32.mat", r"y has shape .* dtype <U"),
    ("count-mismatch", lambda d: _bad_train(d, X=X_OK, y=Y_OK[:-1]), "train_32x32.mat",
     r"60 images in X but 59 labels"),
    ("label-0", lambda d: _bad_train(d, X=X_OK, y=np.where(Y_OK == 10, 0, Y_OK)), "train_32x32.mat",
     r"outside 1\.\.10 \(e\.g\. 0\)"),
    ("label-11", lambda d: _bad_train(d, X=X_OK, y=Y_OK + 1), "train_32x32.mat", r"outside 1\.\.10 \(e\.g\. 11\)"),
    ("label-fraction", lambda d: _bad_train(d, X=X_OK, y=Y_OK / 2), "train_32x32.mat", r"outside 1\.\.10 .*0\.5"),
    ("extra-corrupt", lambda d: _truncate(d / "extra_32x32.mat"), "extra_32x32.mat", r"truncated or corrupt"),
    ("extra-missing", lambda d: (d / "extra_32x32.mat").unlink(), "extra_32x32.mat", r"missing"),
]


@pytest.mark.parametrize(("break_it", "file_name", "pattern"), [b[1:] for b in BROKEN], ids=[b[0] for b in BROKEN])
def test_broken_files(svhn_dir: Path, break_it, file_name: str, pattern: str) -> None:
    break_it(svhn_dir)
    with pytest.raises(DataError, match=pattern) as info:
        load_svhn(svhn_dir, use_extra=True)
    assert str(svhn_dir / file_name) in str(info.value)
    assert "ufldl.stanford.edu/housenumbers" in str(info.value)  # every message says where good files come from


def test_missing_files_listed_together(svhn_dir: Path) -> None:
    for name in ("train", "test"):
        (svhn_dir / f"{name}_32x32.mat").unlink()
    with pytest.raises(DataError) as info:
        load_svhn(svhn_dir)
    assert "train_32x32.mat" in str(info.value) and "test_32x32.mat" in str(info.value)


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nope does not exist or is not a directory.*never downloaded"):
        load_svhn(tmp_path / "nope")


@pytest.mark.parametrize("n_valid", [-1, N_TRAIN, N_TRAIN + 5, 2.5, True])
def test_bad_n_valid(svhn_dir: Path, n_valid: object) -> None:
    with pytest.raises(DataError, match=r"n_valid=.*train_32x32\.mat holds 60 images.*0 <= n_valid < 60"):
        load_svhn(svhn_dir, n_valid=n_valid)  # type: ignore[arg-type]
