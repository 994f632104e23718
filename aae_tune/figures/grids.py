"""Image-grid figures of Makhzani et al., "Adversarial Autoencoders" (2015), independent of the model class.

Every function here takes numpy arrays (torch tensors are accepted and moved to the CPU) and plain callables, so
the same primitives draw MNIST, SVHN or any other flattened image data set: decoded manifolds (Fig. 2e / 4b),
nearest training neighbours of samples (Fig. 5), style x label grids (Fig. 7 / 8) and cluster heads (Fig. 9).
Images are always given flattened, (n, D) with D = prod(image_shape), in HWC order for colour.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from statistics import NormalDist

import matplotlib.pyplot as plt  # the package __init__ selected the file-only Agg backend
import numpy as np
import torch

DEFAULT_SHAPE: tuple[int, ...] = (28, 28)


def _numpy(a: np.ndarray | torch.Tensor) -> np.ndarray:
    """Decoders may hand back tensors (possibly on a GPU, possibly requiring grad): plots only need the values."""
    return a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)


def _resolve_shape(image_shape: tuple[int, ...]) -> tuple[int, ...]:
    """A checked (H, W) or (H, W, 3) image shape; (H, W, 1) is grayscale too."""
    shape = tuple(int(s) for s in image_shape)
    if len(shape) == 3 and shape[2] == 1:
        shape = shape[:2]
    if len(shape) not in (2, 3) or (len(shape) == 3 and shape[2] != 3) or min(shape) < 1:
        raise ValueError(f"image_shape must be (H, W) or (H, W, 3), got {shape}")
    return shape


def _images(images: np.ndarray | torch.Tensor, shape: tuple[int, ...], what: str = "images") -> np.ndarray:
    """(n, D) or (n, *shape) -> (n, *shape) float32, with a message that names the mismatch."""
    arr = _numpy(images).astype(np.float32, copy=False)
    size = int(np.prod(shape))
    if arr.ndim == 0 or arr.size != len(arr) * size:
        raise ValueError(f"{what} of shape {arr.shape} do not hold images of shape {shape} ({size} values each)")
    return arr.reshape(len(arr), *shape)


def to_display(images: np.ndarray | torch.Tensor, standardized: bool) -> np.ndarray:
    """(n, D) images -> (n, D) float32 in [0, 1] for drawing.

    Data already in [0, 1] (MNIST) is only clipped, so a decoder overshoot cannot wrap colours. Standardised data
    (per-dimension z-scores, e.g. SVHN) has no fixed range, so each image is min-max scaled on its own; a constant
    image becomes mid grey.
    """
    arr = _numpy(images).astype(np.float32)
    if not standardized or arr.size == 0:
        return np.clip(arr, 0.0, 1.0)
    flat = arr.reshape(len(arr), -1)
    low, high = flat.min(axis=1, keepdims=True), flat.max(axis=1, keepdims=True)
    span = high - low
    scaled = np.where(span > 0, (flat - low) / np.where(span > 0, span, 1.0), 0.5)
    return np.clip(scaled, 0.0, 1.0).reshape(arr.shape).astype(np.float32)


def _mosaic(
    tiles: Sequence[np.ndarray | None], cols: int, shape: tuple[int, ...], pad: int = 2, fill_empty: bool = True
) -> np.ndarray:
    """Tiles of ``shape`` (None = a blank tile in the background colour) laid out row-major in ``cols`` columns.

    Returns (H, W) for grayscale or (H, W, 3) for colour, in image values: 1.0 between tiles. Grayscale is inverted
    only when saved, so 1.0 (pads, and unused trailing slots when ``fill_empty``) shows black and a blank tile (0.0)
    shows white; in colour pads and blanks are white.
    """
    if not tiles:
        raise ValueError("no images to draw")
    if cols < 1:
        raise ValueError(f"cols must be >= 1, got {cols}")
    h, w = shape[:2]
    rows = int(np.ceil(len(tiles) / cols))
    step_h, step_w = h + pad, w + pad
    grid = np.ones((rows * step_h + pad, cols * step_w + pad, *shape[2:]), dtype=np.float32)
    blank = 0.0 if len(shape) == 2 else 1.0
    if not fill_empty:
        for i in range(len(tiles), rows * cols):
            r, c = divmod(i, cols)
            grid[pad + r * step_h : pad + r * step_h + h, pad + c * step_w : pad + c * step_w + w] = blank
    for i, tile in enumerate(tiles):
        r, c = divmod(i, cols)
        grid[pad + r * step_h : pad + r * step_h + h, pad + c * step_w : pad + c * step_w + w] = (
            blank if tile is None else np.clip(tile, 0, 1)
        )
    return grid


def _save_grid(grid: np.ndarray, path: str | os.PathLike) -> Path:
    """Grayscale as in the paper (white background, dark strokes); colour as RGB."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if grid.ndim == 2:
        plt.imsave(path, 1.0 - grid, cmap="gray", vmin=0, vmax=1)
    else:
        plt.imsave(path, np.clip(grid, 0.0, 1.0))  # imsave opens no pyplot figure: nothing to close
    return path


def image_grid(
    images: np.ndarray,
    cols: int | None = None,
    pad: int = 2,
    *,
    image_shape: tuple[int, ...] = DEFAULT_SHAPE,
) -> np.ndarray:
    """(n, D) images in [0, 1] -> one mosaic with ``pad`` pixels of 1.0 between tiles.

    Returns (rows*(H+pad)+pad, cols*(W+pad)+pad) for grayscale or the same with a trailing 3 for colour; ``cols``
    defaults to ceil(sqrt(n)).
    """
    shape = _resolve_shape(image_shape)
    arr = _images(images, shape)
    cols = cols or int(np.ceil(np.sqrt(len(arr))))
    return _mosaic(list(arr), cols, shape, pad)


def save_image_grid(
    images: np.ndarray | torch.Tensor,
    path: str | os.PathLike,
    *,
    image_shape: tuple[int, ...] = DEFAULT_SHAPE,
    standardized: bool = False,
    cols: int | None = None,
) -> Path:
    """Write (n, D) images as a PNG grid: grayscale inverted (white background, black digits as in the paper's
    figures), colour as RGB. ``standardized`` data is min-max scaled per image first (see ``to_display``)."""
    shape = _resolve_shape(image_shape)
    grid = image_grid(to_display(_images(images, shape), standardized), cols=cols, image_shape=shape)
    return _save_grid(grid, path)


def _percentiles(n: int) -> np.ndarray:
    """n evenly spaced probabilities strictly inside (0, 1); a single point is the median."""
    return np.array([0.5]) if n == 1 else np.linspace(0.05, 0.95, n)


def _row_major(values_x: np.ndarray, values_y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row r, column c of the grid -> (values_x[c], values_y[r]), flattened row-major."""
    gy, gx = np.meshgrid(values_y, values_x, indexing="ij")
    return gx.reshape(-1), gy.reshape(-1)


def gaussian_percentile_codes(n: int, code_dim: int, dims: tuple[int, int] = (0, 1), std: float = 1.0) -> np.ndarray:
    """(n*n, code_dim) codes for the paper's Fig. 2e manifold of a Gaussian prior.

    Evenly spaced percentiles (linspace(0.05, 0.95, n)) mapped through std * Phi^-1 cover the prior's mass rather
    than its unbounded range. Row-major: grid row r takes the r-th value in ``dims[1]``, column c the c-th value in
    ``dims[0]`` (both increasing); every other dimension is 0, the prior's mode.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    d0, d1 = dims
    if not (0 <= d0 < code_dim and 0 <= d1 < code_dim and d0 != d1):
        raise ValueError(f"dims must be two different dimensions in [0, {code_dim}), got {dims}")
    unit = NormalDist()
    values = np.array([std * unit.inv_cdf(float(p)) for p in _percentiles(n)])
    codes = np.zeros((n * n, code_dim), dtype=np.float32)
    codes[:, d0], codes[:, d1] = _row_major(values, values)
    return codes


def box_codes(n: int, low: float, high: float) -> np.ndarray:
    """(n*n, 2) evenly spaced codes over [low, high]^2 (Fig. 4b: the mixture and swiss-roll priors are bounded,
    so an even box shows all of them). Same row-major order as ``gaussian_percentile_codes``."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    values = np.linspace(low, high, n)
    return np.column_stack(_row_major(values, values)).astype(np.float32)


def decoded_grid_png(
    decode: Callable[[np.ndarray], np.ndarray],
    codes: np.ndarray,
    path: str | os.PathLike,
    *,
    cols: int,
    image_shape: tuple[int, ...] = DEFAULT_SHAPE,
    standardized: bool = False,
) -> Path:
    """Decode (m, code_dim) codes to (m, D) images and write them in ``cols`` columns (with the code helpers
    above: the learned manifold, Fig. 2e / 4b)."""
    shape = _resolve_shape(image_shape)
    images = to_display(_images(decode(np.asarray(codes, dtype=np.float32)), shape, "decoded images"), standardized)
    if len(images) != len(codes):
        raise ValueError(f"decode returned {len(images)} images for {len(codes)} codes")
    return _save_grid(_mosaic(list(images), cols, shape, fill_empty=False), path)


def nearest_neighbours(samples: np.ndarray, train_x: np.ndarray, k: int, chunk: int = 4096) -> np.ndarray:
    """(n, k) int64 indices into ``train_x`` of each sample's k nearest training images, nearest first.

    Euclidean distance as ||a||^2 - 2ab + ||b||^2 in float32 blocks of ``chunk`` samples x ``chunk`` training
    images, keeping a running top-k, so a 50,000 x 784 training set never needs an (n, 50,000) matrix.
    """
    a_all = torch.from_numpy(np.ascontiguousarray(_numpy(samples), dtype=np.float32).reshape(len(samples), -1))
    b_all = torch.from_numpy(np.ascontiguousarray(_numpy(train_x), dtype=np.float32).reshape(len(train_x), -1))
    n, big_n = len(a_all), len(b_all)
    if a_all.shape[1] != b_all.shape[1]:
        raise ValueError(f"samples have {a_all.shape[1]} values each, training images {b_all.shape[1]}")
    if not 1 <= k <= big_n:
        raise ValueError(f"k must be in [1, {big_n}], got {k}")
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    out = np.empty((n, k), dtype=np.int64)
    with torch.no_grad():
        b_sq = (b_all * b_all).sum(dim=1)  # (N,)
        for s in range(0, n, chunk):
            a = a_all[s : s + chunk]
            a_sq = (a * a).sum(dim=1, keepdim=True)  # (nb, 1)
            best_d = torch.full((len(a), k), float("inf"))
            best_i = torch.full((len(a), k), -1, dtype=torch.int64)
            for t in range(0, big_n, chunk):
                b = b_all[t : t + chunk]
                d = (a_sq - 2.0 * (a @ b.T) + b_sq[t : t + chunk]).clamp_min_(0.0)  # (nb, cb)
                idx = torch.arange(t, t + len(b), dtype=torch.int64).expand(len(a), -1)
                best_d, pos = torch.cat([best_d, d], dim=1).topk(k, dim=1, largest=False, sorted=True)
                best_i = torch.cat([best_i, idx], dim=1).gather(1, pos)
            out[s : s + len(a)] = best_i.numpy()
    return out


def nearest_neighbours_png(
    samples: np.ndarray,
    train_x: np.ndarray,
    path: str | os.PathLike,
    *,
    k: int = 5,
    image_shape: tuple[int, ...] = DEFAULT_SHAPE,
    standardized: bool = False,
) -> Path:
    """One row per (n, D) sample: the sample, a blank column, then its k nearest (N, D) training images (Fig. 5:
    samples that differ from their neighbours show the model does not just memorise). Grid: n rows x (k + 2)."""
    shape = _resolve_shape(image_shape)
    smp, train = _images(samples, shape, "samples"), _images(train_x, shape, "training images")
    idx = nearest_neighbours(smp.reshape(len(smp), -1), train.reshape(len(train), -1), k)
    near = to_display(train[idx.reshape(-1)], standardized).reshape(*idx.shape, *shape)  # (n, k, *shape)
    smp = to_display(smp, standardized)
    tiles: list[np.ndarray | None] = []
    for i in range(len(smp)):
        tiles += [smp[i], None, *near[i]]
    return _save_grid(_mosaic(tiles, k + 2, shape), path)


def style_label_grid_png(
    decode: Callable[[np.ndarray, np.ndarray], np.ndarray],
    styles: np.ndarray,
    num_classes: int,
    path: str | os.PathLike,
    *,
    image_shape: tuple[int, ...] = DEFAULT_SHAPE,
    standardized: bool = False,
) -> Path:
    """Row r = style styles[r] (rows, style_dim) held fixed, column c = label c: decode(z (m, style_dim), labels (m,)
    int64) -> (m, D) with m = rows * num_classes (Fig. 7; Fig. 8 for the semi-supervised disentangling)."""
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    shape = _resolve_shape(image_shape)
    styles = np.asarray(styles, dtype=np.float32).reshape(len(styles), -1)
    z = np.repeat(styles, num_classes, axis=0)
    labels = np.tile(np.arange(num_classes, dtype=np.int64), len(styles))
    images = to_display(_images(decode(z, labels), shape, "decoded images"), standardized)
    if len(images) != len(z):
        raise ValueError(f"decode returned {len(images)} images for {len(z)} (style, label) pairs")
    return _save_grid(_mosaic(list(images), num_classes, shape), path)


def cluster_heads_png(
    heads: np.ndarray,
    members: list[np.ndarray],
    path: str | os.PathLike,
    *,
    image_shape: tuple[int, ...] = DEFAULT_SHAPE,
    standardized: bool = False,
    max_members: int = 10,
) -> Path:
    """Row i = cluster head heads[i] (K, D), a blank column, then up to ``max_members`` of members[i] (m_i, D),
    which may be empty (Fig. 9: each row a cluster). Grid: K rows x (2 + min(max_members, longest member list))."""
    if max_members < 0:
        raise ValueError(f"max_members must be >= 0, got {max_members}")
    shape = _resolve_shape(image_shape)
    heads_img = to_display(_images(heads, shape, "heads"), standardized)
    if len(members) != len(heads_img):
        raise ValueError(f"{len(heads_img)} heads but {len(members)} member lists")
    rows = [to_display(_images(m, shape, f"members[{i}]")[:max_members], standardized) for i, m in enumerate(members)]
    width = min(max_members, max((len(r) for r in rows), default=0))
    tiles: list[np.ndarray | None] = []
    for head, row in zip(heads_img, rows, strict=True):
        tiles += [head, None, *row, *[None] * (width - len(row))]
    return _save_grid(_mosaic(tiles, width + 2, shape), path)
