"""PNG figures of a trained model: a grid of samples and a 2-D scatter of held-out codes coloured by label."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on cluster nodes or CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from aae_tune.aae import AdversarialAutoencoder  # noqa: E402


def image_grid(images: np.ndarray, side: int = 28, cols: int | None = None, pad: int = 2) -> np.ndarray:
    """(n, side*side) images in [0, 1] -> one (H, W) mosaic with ``pad`` pixels of white between tiles."""
    n = len(images)
    cols = cols or int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    step = side + pad
    grid = np.ones((rows * step + pad, cols * step + pad), dtype=np.float32)
    for i, img in enumerate(np.clip(images, 0, 1).reshape(n, side, side)):
        r, c = divmod(i, cols)
        grid[pad + r * step : pad + r * step + side, pad + c * step : pad + c * step + side] = img
    return grid


def save_image_grid(images: np.ndarray | torch.Tensor, path: str | os.PathLike, side: int = 28) -> Path:
    """Write a grid of images as a grayscale PNG (white background, black digits as in the paper's figures)."""
    arr = images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    plt.imsave(path, 1.0 - image_grid(arr, side), cmap="gray", vmin=0, vmax=1)
    return path


def samples_png(model: AdversarialAutoencoder, path: str | os.PathLike, n: int = 100, seed: int = 0) -> Path:
    from aae_tune.metrics import draw_samples

    return save_image_grid(draw_samples(model, n, seed), path)


def latent_scatter_png(
    model: AdversarialAutoencoder, x: np.ndarray, y: np.ndarray, path: str | os.PathLike, n: int = 5000
) -> Path:
    """Codes of held-out images coloured by label: the first two code dimensions, or the first two principal
    components when the code has more than two (Fig. 2 / 4a of the paper)."""
    device = next(model.parameters()).device
    xs = torch.as_tensor(np.asarray(x[:n]), dtype=torch.float32, device=device)
    codes = model.encode(xs, torch.Generator(device=device).manual_seed(0)).cpu().numpy()  # (n, code_dim)
    title = "codes (dims 1-2)"
    if codes.shape[1] > 2:
        from sklearn.decomposition import PCA

        codes, title = PCA(n_components=2, random_state=0).fit_transform(codes), "codes (PCA 1-2)"
    elif codes.shape[1] == 1:
        codes, title = np.column_stack([codes[:, 0], np.zeros(len(codes))]), "codes (1-D)"
    fig, ax = plt.subplots(figsize=(5, 5), dpi=100)
    sc = ax.scatter(codes[:, 0], codes[:, 1], c=np.asarray(y[:n]), cmap="tab10", s=3, vmin=-0.5, vmax=9.5)
    fig.colorbar(sc, ax=ax, ticks=range(10), label="label")
    ax.set_title(title)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return path
