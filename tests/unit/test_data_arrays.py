"""Tests for user-supplied .npz datasets (aae_tune.data.arrays) and the load_dataset dispatcher."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.io

from aae_tune.data import DATASETS, DataError, DataSplits, load_arrays, load_dataset

SIZES = {"train": 40, "valid": 10, "test": 12}


def _splits(shape: tuple[int, ...] = (6, 5), seed: int = 0, **extra: object) -> dict[str, object]:
    rng = np.random.default_rng(seed)
    arrays: dict[str, object] = {}
    for split, n in SIZES.items():
        arrays[f"{split}_x"] = rng.random((n, *shape))
        arrays[f"{split}_y"] = rng.integers(0, 7, size=n)
    arrays.update(extra)
    return arrays


def _save(tmp_path: Path, arrays: dict[str, object], name: str = "data.npz") -> Path:
    path = tmp_path / name
    np.savez(path, **arrays)
    return path


# ------------------------------------------------------------------------------------------- load_arrays
@pytest.mark.parametrize(
    ("shape", "image_shape"),
    [
        ((6, 5), (6, 5)),  # (N, H, W)
        ((4, 4, 3), (4, 4, 3)),  # (N, H, W, C)
        ((4, 4, 1), (4, 4)),  # single channel == grayscale
        ((48 * 48,), (48, 48)),  # flat and square: TFD's 48x48
        ((3 * 8 * 8,), (8, 8, 3)),  # flat colour
        ((10,), (1, 10)),  # flat, no image shape to guess
    ],
)
def test_shapes_and_types(tmp_path: Path, shape: tuple[int, ...], image_shape: tuple[int, ...]) -> None:
    arrays = _splits(shape)
    splits = load_arrays(_save(tmp_path, arrays))
    assert isinstance(splits, DataSplits)
    assert splits.image_shape == image_shape and not splits.standardized
    dim = int(np.prod(shape))
    for split, n in SIZES.items():
        x, y = getattr(splits, f"{split}_x"), getattr(splits, f"{split}_y")
        assert x.shape == (n, dim) and x.dtype == np.float32 and x.flags.c_contiguous
        assert y.shape == (n,) and y.dtype == np.int64
        np.testing.assert_array_equal(x, np.asarray(arrays[f"{split}_x"], np.float32).reshape(n, dim))
        np.testing.assert_array_equal(y, arrays[f"{split}_y"])
    assert str(tmp_path / "data.npz") in splits.source
    head = splits.head(3)
    assert head.image_shape == image_shape and len(head.train_y) == 3


def test_standardized_flag_image_shape_key_and_label_forms(tmp_path: Path) -> None:
    arrays = _splits((12,), standardized=True, image_shape=np.array([3, 4]))
    arrays["train_x"] = np.asarray(arrays["train_x"]) * 10 - 5  # standardised data may leave [0, 1]
    arrays["valid_y"] = np.asarray(arrays["valid_y"]).astype(np.float64)  # whole-number floats are fine
    arrays["test_y"] = np.asarray(arrays["test_y"]).reshape(-1, 1)  # and an (N, 1) column
    splits = load_arrays(_save(tmp_path, arrays))
    assert splits.standardized and splits.image_shape == (3, 4)
    assert splits.valid_y.dtype == np.int64 and splits.test_y.shape == (SIZES["test"],)
    assert not load_arrays(_save(tmp_path, {**arrays, "standardized": False, "train_x": arrays["valid_x"],
                                            "train_y": arrays["valid_y"]})).standardized


def _write_pickled(path: Path) -> None:
    arrays = _splits()
    arrays["train_y"] = np.array([{"label": 1}] * SIZES["train"], dtype=object)
    np.savez(path, **arrays)


def _set(**changes: object):
    def write(path: Path) -> None:
        np.savez(path, **{**_splits(), **changes})

    return write


def _drop(*keys: str):
    def write(path: Path) -> None:
        np.savez(path, **{k: v for k, v in _splits().items() if k not in keys})

    return write


def _truncated(path: Path) -> None:
    np.savez(path, **_splits())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


X_NAN = np.asarray(_splits()["valid_x"]).copy()
X_NAN[3, 2, 1] = np.nan

BROKEN = [
    ("not-npz", lambda p: p.write_text("train_x,train_y\n1,2\n"), r"not an \.npz \(zip\) archive"),
    ("npy", lambda p: p.write_bytes(b"\x93NUMPY" + bytes(100)), r"single \.npy array"),
    ("truncated", _truncated, r"truncated or corrupt"),
    ("pickled", _write_pickled, r"object \(pickled\) arrays"),
    ("missing-keys", _drop("valid_y", "test_x"), r"missing the key\(s\) valid_y, test_x"),
    ("count", _set(train_y=np.zeros(SIZES["train"] - 1, np.int64)), r"train_x has 40 examples but train_y has 39"),
    ("dims", _set(test_x=np.zeros((SIZES["test"], 5, 6))),
     r"different per-example shapes \(train_x \(6, 5\), valid_x \(6, 5\), test_x \(5, 6\)\)"),
    ("x-1d", _set(valid_x=np.zeros(SIZES["valid"])), r"valid_x has shape \(10,\)"),
    ("x-text", _set(valid_x=np.array(["a"] * SIZES["valid"])), r"valid_x has shape .* dtype <U1"),
    ("nan", _set(valid_x=X_NAN), r"valid_x has 1 non-finite values"),
    ("inf-y", _set(test_y=np.full(SIZES["test"], np.inf)), r"test_y must hold non-negative integer"),
    ("negative-y", _set(train_y=np.full(SIZES["train"], -1)), r"train_y must hold non-negative integer.*-1"),
    ("fraction-y", _set(train_y=np.full(SIZES["train"], 0.5)), r"train_y must hold non-negative integer.*0\.5"),
    ("y-matrix", _set(train_y=np.zeros((SIZES["train"], 2))), r"train_y has shape \(40, 2\)"),
    ("empty", _set(test_x=np.zeros((0, 6, 5)), test_y=np.zeros(0, np.int64)), r"test split is empty"),
    ("uint8-pixels", _set(train_x=np.full((SIZES["train"], 6, 5), 255, np.uint8)),
     r"train_x has values in \[255, 255\].*\[0, 1\].*standardized=True"),
    ("bad-flag", _set(standardized=np.array([1, 0])), r"'standardized' must be a scalar"),
    ("bad-image-shape", _set(train_x=np.zeros((40, 30)), valid_x=np.zeros((10, 30)), test_x=np.zeros((12, 30)),
                             image_shape=np.array([4, 4])), r"'image_shape' is \[4, 4\].*30 features"),
]


@pytest.mark.parametrize(("write", "pattern"), [b[1:] for b in BROKEN], ids=[b[0] for b in BROKEN])
def test_broken_array_files(tmp_path: Path, write, pattern: str) -> None:
    path = tmp_path / "data.npz"
    write(path)
    with pytest.raises(DataError, match=pattern) as info:
        load_arrays(path)
    assert str(path) in str(info.value)


def test_missing_array_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nope\.npz does not exist.*np\.savez"):
        load_arrays(tmp_path / "nope.npz")


# ------------------------------------------------------------------------------------------ load_dataset
def test_dataset_names() -> None:
    assert DATASETS == ("mnist", "svhn", "array")


def test_dispatch_mnist_from_env(mnist_dir: Path) -> None:
    # conftest sets AAE_TUNE_DATA_DIR to the shared MNIST files; no data_dir given here.
    splits = load_dataset("mnist")
    assert splits.is_full and splits.image_shape == (28, 28) and not splits.standardized
    assert splits.source == f"directory {mnist_dir}"


def test_dispatch_svhn(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AAE_TUNE_SVHN_DIR", raising=False)
    with pytest.raises(DataError, match=r"--data-dir.*AAE_TUNE_SVHN_DIR.*never downloaded automatically.*ufldl"):
        load_dataset("svhn")
    rng = np.random.default_rng(0)
    for name, n in (("train", 25), ("test", 5)):
        x = rng.integers(0, 256, size=(32, 32, 3, n), dtype=np.uint8)
        scipy.io.savemat(tmp_path / f"{name}_32x32.mat", {"X": x, "y": rng.integers(1, 11, (n, 1), dtype=np.uint8)})
    monkeypatch.setenv("AAE_TUNE_SVHN_DIR", str(tmp_path))
    from_env = load_dataset("svhn", n_valid=4)  # options reach load_svhn
    assert from_env.image_shape == (32, 32, 3) and from_env.standardized
    assert (len(from_env.train_y), len(from_env.valid_y), len(from_env.test_y)) == (21, 4, 5)
    monkeypatch.setenv("AAE_TUNE_SVHN_DIR", str(tmp_path / "elsewhere"))
    assert len(load_dataset("SVHN", tmp_path).valid_y) == 5  # the argument beats the env var; default 25 // 5


def test_dispatch_array(tmp_path: Path) -> None:
    path = _save(tmp_path, _splits())
    assert load_dataset("array", path).image_shape == (6, 5)
    with pytest.raises(DataError, match=r"array dataset needs the path.*--data-dir"):
        load_dataset("array")


def test_dispatch_unknown_name() -> None:
    with pytest.raises(DataError, match=r"unknown dataset 'cifar10'; valid names are mnist, svhn, array"):
        load_dataset("cifar10")


def test_guess_image_shape() -> None:
    from aae_tune.data.splits import guess_image_shape

    assert guess_image_shape(784) == (28, 28)
    assert guess_image_shape(3072) == (32, 32, 3)
    assert guess_image_shape(10) == (1, 10)
