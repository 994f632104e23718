"""A 2-D scatter of codes coloured by label (Fig. 2 / 4a / 6 / 11 of the paper), PCA beyond two dimensions."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib.pyplot as plt  # the package __init__ selected the file-only Agg backend
import numpy as np
from matplotlib import colormaps
from matplotlib.colors import Colormap, ListedColormap


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

