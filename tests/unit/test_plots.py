"""The figure primitives: pixel sizes of every grid, code grids, nearest neighbours and the scatter."""

from __future__ import annotations

from pathlib import Path
from statistics import NormalDist

import matplotlib.image as mpimg
import numpy as np
import pytest
import torch

from aae_tune.config import ExperimentConfig
from aae_tune.figures.grids import (
    box_codes,
    cluster_heads_png,
    decoded_grid_png,
    gaussian_percentile_codes,
    image_grid,
    nearest_neighbours,
    nearest_neighbours_png,
    save_image_grid,
    style_label_grid_png,
    to_display,
)
from aae_tune.figures.scatter import scatter_png
from aae_tune.figures.sets import latent_scatter_png, samples_png
from aae_tune.model.priors import GaussianPrior

GRAY, COLOUR = (6, 5), (6, 5, 3)  # not square, so a swapped H / W shows up in the pixel sizes
PAD = 2


def grid_size(rows: int, cols: int, shape: tuple[int, ...]) -> tuple[int, int]:
    return rows * (shape[0] + PAD) + PAD, cols * (shape[1] + PAD) + PAD


def read_png(path: Path) -> np.ndarray:
    assert path.is_file()
    return mpimg.imread(path)  # (H, W, 4) RGBA floats in [0, 1]


def rand_images(n: int, shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, int(np.prod(shape)))).astype(np.float32)


class StubModel(torch.nn.Module):
    """Just what latent_scatter_png / samples_png use: cfg, prior, parameters, encode, sample (28 x 28)."""

    def __init__(self, code_dim: int, in_dim: int = 30):
        super().__init__()
        torch.manual_seed(0)
        self.lin = torch.nn.Linear(in_dim, code_dim)
        self.cfg, self.data_dim, self.prior = ExperimentConfig(code_dim=code_dim), 784, GaussianPrior(code_dim)

    def encode(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.lin(x).detach()

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return torch.rand(n, 784, generator=generator)


# ---- image_grid / save_image_grid / to_display -------------------------------------------------------------


def test_image_grid_shapes_and_defaults():
    x = rand_images(7, (14, 14))
    assert image_grid(x, image_shape=(14, 14)).shape == grid_size(3, 3, (14, 14))
    assert image_grid(x, 4, 3, image_shape=(14, 14)).shape == (2 * 17 + 3, 4 * 17 + 3)
    assert image_grid(rand_images(5, (28, 28))).shape == grid_size(2, 3, (28, 28))  # ceil(sqrt 5) = 3 cols
    with pytest.raises(ValueError, match="do not hold images of shape"):
        image_grid(x, image_shape=(7, 29))


def test_image_grid_colour_keeps_rgb():
    x = np.zeros((2, int(np.prod(COLOUR))), dtype=np.float32)
    x.reshape(2, *COLOUR)[0, ..., 0] = 1.0  # first image pure red
    grid = image_grid(x, cols=2, image_shape=COLOUR)
    assert grid.shape == (*grid_size(1, 2, COLOUR), 3)
    np.testing.assert_array_equal(grid[PAD, PAD], [1, 0, 0])


@pytest.mark.parametrize("shape", [GRAY, COLOUR])
def test_save_image_grid_pixel_size(tmp_path: Path, shape):
    path = save_image_grid(rand_images(7, shape), tmp_path / "a" / "b.png", image_shape=shape, cols=3)
    assert path == tmp_path / "a" / "b.png"
    assert read_png(path).shape[:2] == grid_size(3, 3, shape)
    from_tensor = read_png(save_image_grid(torch.rand(4, 100), tmp_path / "t.png", image_shape=(10, 10)))
    assert from_tensor.shape[:2] == grid_size(2, 2, (10, 10))


def test_grayscale_is_inverted_colour_is_not(tmp_path: Path):
    ones = np.ones((1, 30), dtype=np.float32)
    gray = read_png(save_image_grid(ones, tmp_path / "g.png", image_shape=GRAY))
    colour = read_png(save_image_grid(np.ones((1, 90)), tmp_path / "c.png", image_shape=COLOUR))
    np.testing.assert_allclose(gray[PAD + 1, PAD + 1, :3], 0.0)  # full ink draws black on white paper
    np.testing.assert_allclose(colour[PAD + 1, PAD + 1, :3], 1.0)  # white RGB stays white


def test_to_display_ranges():
    rng = np.random.default_rng(1)
    z = (rng.normal(size=(5, 90)) * 3 + 2).astype(np.float32)
    z[4] = 7.0  # a constant image must not divide by zero
    shown = to_display(z, standardized=True)
    assert shown.shape == z.shape and shown.dtype == np.float32
    assert shown.min() >= 0.0 and shown.max() <= 1.0
    np.testing.assert_allclose(shown[:4].min(axis=1), 0.0)
    np.testing.assert_allclose(shown[:4].max(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(shown[4], 0.5)
    np.testing.assert_allclose(to_display(np.array([[-0.5, 0.3, 1.5]]), standardized=False), [[0.0, 0.3, 1.0]])


# ---- code grids ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [5, 6])
def test_gaussian_percentile_codes(n: int):
    std = 2.5
    codes = gaussian_percentile_codes(n, 4, dims=(2, 0), std=std)
    assert codes.shape == (n * n, 4)
    np.testing.assert_array_equal(codes[:, [1, 3]], 0.0)
    grid_x, grid_y = codes[:, 2].reshape(n, n), codes[:, 0].reshape(n, n)  # row-major: column = dims[0]
    np.testing.assert_array_equal(grid_x, np.tile(grid_x[0], (n, 1)))
    np.testing.assert_array_equal(grid_y, np.tile(grid_y[:, 0:1], (1, n)))
    values = grid_x[0]
    np.testing.assert_array_equal(values, grid_y[:, 0])
    assert np.all(np.diff(values) > 0)
    np.testing.assert_allclose(values, -values[::-1], atol=1e-6)
    np.testing.assert_allclose(values[0], std * NormalDist().inv_cdf(0.05), rtol=1e-6)
    if n % 2:
        assert values[n // 2] == pytest.approx(0.0, abs=1e-7)
    with pytest.raises(ValueError):
        gaussian_percentile_codes(n, 4, dims=(1, 1))


def test_box_codes():
    codes = box_codes(3, -2.0, 4.0)
    assert codes.shape == (9, 2)
    np.testing.assert_allclose(codes[:3], [[-2, -2], [1, -2], [4, -2]])
    np.testing.assert_allclose(codes[-1], [4, 4])


@pytest.mark.parametrize("shape", [GRAY, COLOUR])
def test_decoded_grid_png(tmp_path: Path, shape):
    w = np.random.default_rng(2).normal(size=(2, int(np.prod(shape))))

    def decode(z: np.ndarray) -> np.ndarray:
        return 1 / (1 + np.exp(-z @ w))

    path = decoded_grid_png(decode, box_codes(4, -1, 1)[:14], tmp_path / "m.png", cols=4, image_shape=shape)
    assert read_png(path).shape[:2] == grid_size(4, 4, shape)
    std = decoded_grid_png(
        lambda z: torch.as_tensor(z @ w * 5),
        gaussian_percentile_codes(3, 2),
        tmp_path / "s.png",
        cols=3,
        image_shape=shape,
        standardized=True,
    )  # tensors from a decoder are fine
    assert read_png(std).shape[:2] == grid_size(3, 3, shape)
    with pytest.raises(ValueError, match="do not hold images"):
        decoded_grid_png(lambda z: np.zeros((len(z), 7)), box_codes(2, 0, 1), tmp_path / "x.png", cols=2)


# ---- nearest neighbours -------------------------------------------------------------------------------------


def test_nearest_neighbours_exact_match_first():
    train = np.random.default_rng(3).random((50, 784)).astype(np.float32)
    samples = train[[17, 3, 42]].copy()
    idx = nearest_neighbours(samples, train, k=3, chunk=8)
    assert idx.shape == (3, 3) and idx.dtype == np.int64
    np.testing.assert_array_equal(idx[:, 0], [17, 3, 42])


def test_nearest_neighbours_matches_brute_force():
    rng = np.random.default_rng(4)
    train, samples = rng.normal(size=(103, 12)), rng.normal(size=(11, 12))
    brute = np.argsort(((samples[:, None, :] - train[None]) ** 2).sum(-1), axis=1)[:, :6]
    for chunk in (1, 5, 7, 4096):  # blocks smaller than both sets, and one block for everything
        np.testing.assert_array_equal(nearest_neighbours(samples, train, k=6, chunk=chunk), brute)
    np.testing.assert_array_equal(nearest_neighbours(samples, train, k=103, chunk=10)[:, :6], brute)
    with pytest.raises(ValueError):
        nearest_neighbours(samples, train, k=104)


@pytest.mark.parametrize("shape", [GRAY, COLOUR])
def test_nearest_neighbours_png(tmp_path: Path, shape):
    train = rand_images(40, shape, seed=5)
    img = read_png(nearest_neighbours_png(train[:3] * 0.9, train, tmp_path / "nn.png", k=4, image_shape=shape))
    assert img.shape[:2] == grid_size(3, 6, shape)
    blank = img[PAD : PAD + shape[0], PAD + (shape[1] + PAD) : 2 * (shape[1] + PAD), :3]  # row 0, column 1
    np.testing.assert_allclose(blank, 1.0)  # the separating column is white paper
    std = nearest_neighbours_png(
        train[:2] * 4 - 2, train * 4 - 2, tmp_path / "s.png", k=2, image_shape=shape, standardized=True
    )
    assert read_png(std).shape[:2] == grid_size(2, 4, shape)


# ---- style x label and cluster heads --------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [GRAY, COLOUR])
def test_style_label_grid_png(tmp_path: Path, shape):
    seen = {}

    def decode(z: np.ndarray, labels: np.ndarray) -> np.ndarray:
        seen["z"], seen["labels"] = z, labels
        return np.full((len(z), int(np.prod(shape))), 0.5) + 0.01 * labels[:, None]

    styles = np.random.default_rng(6).normal(size=(3, 2))
    img = read_png(style_label_grid_png(decode, styles, 4, tmp_path / "sl.png", image_shape=shape))
    assert img.shape[:2] == grid_size(3, 4, shape)
    assert seen["labels"].dtype == np.int64
    np.testing.assert_array_equal(seen["labels"], np.tile(np.arange(4), 3))
    np.testing.assert_allclose(seen["z"], np.repeat(styles, 4, axis=0), rtol=1e-6)


@pytest.mark.parametrize("shape", [GRAY, COLOUR])
def test_cluster_heads_png(tmp_path: Path, shape):
    d = int(np.prod(shape))
    heads = rand_images(3, shape, seed=7)
    members = [rand_images(12, shape, seed=8), np.empty((0, d)), rand_images(2, shape, seed=9)]
    img = read_png(cluster_heads_png(heads, members, tmp_path / "c.png", image_shape=shape))
    assert img.shape[:2] == grid_size(3, 12, shape)  # head, blank, 10 members
    img = read_png(
        cluster_heads_png(heads, members[1:] + [members[1]], tmp_path / "c2.png", image_shape=shape, standardized=True)
    )
    assert img.shape[:2] == grid_size(3, 4, shape)  # longest list has 2
    with pytest.raises(ValueError, match="member lists"):
        cluster_heads_png(heads, members[:2], tmp_path / "bad.png", image_shape=shape)


# ---- scatter ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("dim", "classes"), [(1, 3), (2, 10), (5, 16), (3, 30)])
def test_scatter_png(tmp_path: Path, dim: int, classes: int):
    rng = np.random.default_rng(10)
    codes, labels = rng.normal(size=(300, dim)), rng.integers(0, classes, 300)
    path = scatter_png(
        codes, labels, tmp_path / "sub" / f"s{dim}.png", num_classes=classes, centres=rng.normal(size=(4, dim))
    )
    img = read_png(path)
    assert img.ndim == 3 and min(img.shape[:2]) > 100
    with pytest.raises(ValueError, match="labels"):
        scatter_png(codes, labels[:-1], tmp_path / "bad.png")


def test_latent_scatter_and_samples_png(tmp_path: Path):
    x = np.random.default_rng(11).random((200, 30)).astype(np.float32)
    y = np.arange(200) % 10
    for code_dim in (1, 2, 5):
        path = latent_scatter_png(StubModel(code_dim), x, y, tmp_path / f"l{code_dim}.png", n=150)
        assert read_png(path).ndim == 3
    assert read_png(samples_png(StubModel(2), tmp_path / "samples.png", n=10, seed=1)).shape[:2] == grid_size(
        3, 4, (28, 28)
    )
