"""Each model's figures of the paper as PNG files (logged as MLflow artifacts of every trial).

Which figures a model gets is declared in ``aae_tune.experiments.MODEL_SPECS`` (``figures``); this module knows
how to draw each one:

| figure | what | paper |
|---|---|---|
| samples | decoded prior samples | Fig. 3 |
| latent | held-out codes coloured by label; mixture means / cluster heads as crosses | Fig. 2, 4a/c, 11 |
| manifold | decoded codes on a grid: Gaussian percentiles (gaussian prior) or the prior's 2-D box | Fig. 2e, 4b/d |
| neighbours | samples next to their nearest training images | Fig. 5 |
| style_label | style fixed per row, label varied per column | Fig. 7, 8 |
| cluster_heads | each cluster's decoded head and its most confident members | Fig. 9 |
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from aae_tune.data.splits import SplitData, guess_image_shape
from aae_tune.experiments import Figure
from aae_tune.figures.grids import (
    box_codes,
    cluster_heads_png,
    decoded_grid_png,
    gaussian_percentile_codes,
    nearest_neighbours_png,
    save_image_grid,
    style_label_grid_png,
)
from aae_tune.figures.scatter import scatter_png
from aae_tune.model.aae import AdversarialAutoencoder
from aae_tune.model.inference import draw_samples, evaluating, model_device, model_outputs

GRID = 20  # manifold grids are GRID x GRID images


def model_look(model: AdversarialAutoencoder) -> dict:
    """How a model's images are drawn when no dataset says so: a linear decoder output means standardised data."""
    return {"image_shape": guess_image_shape(model.data_dim), "standardized": model.cfg.net.output == "linear"}


def samples_png(model: AdversarialAutoencoder, path: str | os.PathLike, n: int = 100, seed: int = 0) -> Path:
    """n model samples, reproducible for a seed, as an image grid (Fig. 3-style sample sheet)."""
    return save_image_grid(draw_samples(model, n, seed), path, **model_look(model))


def latent_scatter_png(model: AdversarialAutoencoder, x: np.ndarray, y: np.ndarray, path: str | os.PathLike,
                       n: int = 5000) -> Path:
    """Codes of the first n held-out (N, D) images coloured by label, with the model's reference points (mixture
    means, cluster heads W_C) as crosses."""
    codes = model_outputs(model, x[:n], "encode")  # (n, code_dim)
    return scatter_png(codes, np.asarray(y[:n]), path, title="codes", centres=_centres(model))


def trial_figures(model: AdversarialAutoencoder, data: SplitData, folder: str | Path, seed: int = 0) -> list[Path]:
    """Write every figure the model's declaration lists into ``folder``; returns the paths."""
    folder = Path(folder)
    look = {"image_shape": tuple(getattr(data, "image_shape", (28, 28))),
            "standardized": bool(getattr(data, "standardized", False))}
    samples = draw_samples(model, 100, seed).numpy()  # (100, D): the sample sheet and the neighbours figure
    paths = []
    for figure in model.cfg.spec.figures:
        path = DRAW[figure](model, data, samples, folder / f"{figure}.png", look, seed)
        if path is not None:
            paths.append(path)
    return paths


# ---- one function per figure: (model, data, samples, path, look, seed) -> path, or None when not drawable ------
def _samples(model, data, samples, path, look, seed) -> Path:
    return save_image_grid(samples, path, **look)


def _latent(model, data, samples, path, look, seed) -> Path:
    return latent_scatter_png(model, data.valid_x, data.valid_y, path)


def _manifold(model, data, samples, path, look, seed) -> Path | None:
    cfg = model.cfg
    gaussian = cfg.prior.kind == "gaussian"
    if cfg.code_dim < 2 or (not gaussian and cfg.code_dim != 2):
        return None  # the grid walks two code axes: Gaussian percentiles, or a box around a 2-D prior
    if gaussian:
        codes = gaussian_percentile_codes(GRID, cfg.code_dim, std=cfg.prior.std)
    else:  # mixture / swiss roll: a box that holds the prior's samples
        reach = float(np.abs(model.prior.sample(5000, torch.Generator().manual_seed(seed)).z.numpy()).max())
        codes = box_codes(GRID, -reach, reach)
    return decoded_grid_png(_decoder(model), codes, path, cols=GRID, **look)


def _neighbours(model, data, samples, path, look, seed) -> Path:
    return nearest_neighbours_png(samples[:10], np.asarray(data.train_x), path, k=6, **look)


def _style_label(model, data, samples, path, look, seed) -> Path:
    styles = model.prior.sample(10, torch.Generator().manual_seed(seed)).z.numpy()
    return style_label_grid_png(_styled(model), styles, model.cfg.num_classes, path, **look)


def _cluster_heads(model, data, samples, path, look, seed) -> Path:
    heads, members = cluster_heads(model, np.asarray(data.valid_x))
    return cluster_heads_png(heads, members, path, **look)


DRAW: dict[Figure, Callable[..., Path | None]] = {
    "samples": _samples, "latent": _latent, "manifold": _manifold, "neighbours": _neighbours,
    "style_label": _style_label, "cluster_heads": _cluster_heads,
}


def cluster_heads(model: AdversarialAutoencoder, x: np.ndarray, per_cluster: int = 10
                  ) -> tuple[np.ndarray, list[np.ndarray]]:
    """Each cluster's head image (the decoded one-hot y with style z = 0) (K, D) and its ``per_cluster`` images
    of ``x`` with the highest q(y = k | x) among those assigned to it."""
    k, device = model.cfg.num_classes, model_device(model)
    with evaluating(model):
        heads = model.decode_styled(torch.zeros(k, model.cfg.code_dim, device=device),
                                    torch.arange(k, device=device)).cpu().numpy()
    q = model_outputs(model, x, "classify")  # (N, K)
    assigned = q.argmax(1)
    members = []
    for c in range(k):
        mine = np.flatnonzero(assigned == c)
        members.append(x[mine[np.argsort(-q[mine, c])[:per_cluster]]])
    return heads, members


def _centres(model: AdversarialAutoencoder) -> np.ndarray | None:
    """Reference points drawn over the latent scatter: a mixture prior's means, or the cluster heads W_C."""
    if hasattr(model.prior, "means"):
        return model.prior.means().numpy()
    heads = getattr(model, "heads", None)  # DimRedAAE: (K, code_dim)
    return None if heads is None else heads.detach().cpu().numpy()


def _decoder(model: AdversarialAutoencoder) -> Callable[[np.ndarray], np.ndarray]:
    device = model_device(model)

    def decode(codes: np.ndarray) -> np.ndarray:
        with evaluating(model):
            return model.decode(torch.as_tensor(codes, dtype=torch.float32, device=device)).cpu().numpy()

    return decode


def _styled(model: AdversarialAutoencoder) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    device = model_device(model)

    def decode(z: np.ndarray, labels: np.ndarray) -> np.ndarray:
        zs = torch.as_tensor(z, dtype=torch.float32, device=device)
        with evaluating(model):
            return model.decode_styled(zs, torch.as_tensor(labels, dtype=torch.long, device=device)).cpu().numpy()

    return decode
