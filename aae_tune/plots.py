"""PNG figures of a trained model: a grid of samples and a 2-D scatter of held-out codes coloured by label.

The model-free image grids of the paper (manifolds, nearest neighbours, style x label, cluster heads) live in
``aae_tune.plot_grids`` and are re-exported here, so ``from aae_tune.plots import save_image_grid`` keeps working.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")  # files only: no display on cluster nodes or CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib import colormaps  # noqa: E402
from matplotlib.colors import Colormap, ListedColormap  # noqa: E402

from aae_tune.plot_grids import (  # noqa: E402
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

if TYPE_CHECKING:
    from aae_tune.aae import AdversarialAutoencoder

__all__ = [
    "box_codes",
    "cluster_heads_png",
    "decoded_grid_png",
    "gaussian_percentile_codes",
    "image_grid",
    "latent_scatter_png",
    "nearest_neighbours",
    "nearest_neighbours_png",
    "samples_png",
    "save_image_grid",
    "scatter_png",
    "style_label_grid_png",
    "to_display",
]


def samples_png(model: AdversarialAutoencoder, path: str | os.PathLike, n: int = 100, seed: int = 0) -> Path:
    """n model samples, reproducible for a seed, as a grayscale grid (Fig. 3-style sample sheet)."""
    from aae_tune.metrics import draw_samples

    return save_image_grid(draw_samples(model, n, seed), path)


def _class_colours(num_classes: int) -> Colormap:
    """One distinct qualitative colour per class while that is possible (tab10 / tab20), a continuous map beyond:
    class c is always colour c, so figures of one data set agree."""
    for name, size in (("tab10", 10), ("tab20", 20)):
        if num_classes <= size:
            return ListedColormap(colormaps[name].colors[:num_classes], name=name)
    return colormaps["viridis"]


def scatter_png(
    codes: np.ndarray,
    labels: np.ndarray,
    path: str | os.PathLike,
    *,
    title: str = "codes",
    num_classes: int | None = None,
    centres: np.ndarray | None = None,
) -> Path:
    """Scatter of (n, d) codes coloured by (n,) integer labels (Fig. 2 / 4a / 6 of the paper).

    d == 2 is drawn as is, d > 2 as its first two principal components (random_state 0), d == 1 against zeros.
    ``centres`` (K, d), in the same space as ``codes`` (cluster heads, mixture means), go through the same
    projection and are drawn as black crosses. ``num_classes`` defaults to max(label) + 1.
    """
    codes = np.asarray(codes)  # float32 stays float32: the same pixels as before this function existed
    codes = (codes if np.issubdtype(codes.dtype, np.floating) else codes.astype(np.float64)).reshape(len(codes), -1)
    labels = np.asarray(labels).reshape(-1)
    n, d = codes.shape
    if len(labels) != n:
        raise ValueError(f"{n} codes but {len(labels)} labels")
    if d < 1:
        raise ValueError("codes have no dimensions")
    cen = None if centres is None else np.asarray(centres, dtype=codes.dtype).reshape(-1, d)
    if d > 2:
        from sklearn.decomposition import PCA

        pca = PCA(n_components=2, random_state=0)
        xy, suffix = pca.fit_transform(codes), "PCA 1-2"
        cen = None if cen is None else pca.transform(cen)
    elif d == 2:
        xy, suffix = codes, "dims 1-2"
    else:
        xy, suffix = np.column_stack([codes[:, 0], np.zeros(n)]), "1-D"
        cen = None if cen is None else np.column_stack([cen[:, 0], np.zeros(len(cen))])
    k = int(num_classes) if num_classes is not None else (int(labels.max()) + 1 if n else 1)
    fig, ax = plt.subplots(figsize=(5, 5), dpi=100)
    try:
        sc = ax.scatter(xy[:, 0], xy[:, 1], c=labels, cmap=_class_colours(k), s=3, vmin=-0.5, vmax=k - 0.5)
        fig.colorbar(sc, ax=ax, ticks=range(k) if k <= 20 else None, label="label")
        if cen is not None and len(cen):
            ax.scatter(cen[:, 0], cen[:, 1], marker="x", c="black", s=60, linewidths=2, zorder=3)
        ax.set_title(f"{title} ({suffix})")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, bbox_inches="tight")
    finally:
        plt.close(fig)
    return path


def latent_scatter_png(
    model: AdversarialAutoencoder,
    x: np.ndarray,
    y: np.ndarray,
    path: str | os.PathLike,
    n: int = 5000,
    centres: np.ndarray | None = None,
) -> Path:
    """Codes of the first n held-out (N, D) images coloured by label: the first two code dimensions, or the first two
    principal components when the code has more than two (Fig. 2 / 4a of the paper). ``centres`` (K, code_dim)
    are drawn as crosses."""
    device = next(model.parameters()).device
    xs = torch.as_tensor(np.asarray(x[:n]), dtype=torch.float32, device=device)
    codes = model.encode(xs, torch.Generator(device=device).manual_seed(0)).cpu().numpy()  # (n, code_dim)
    return scatter_png(codes, np.asarray(y[:n]), path, title="codes", centres=centres)
