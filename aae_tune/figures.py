"""Which of the paper's figures each model gets, as PNG files (logged as MLflow artifacts of every trial).

| model | figures |
|---|---|
| every model | samples.png (decoded prior samples), latent.png (held-out codes coloured by label; Fig. 2, 4a/c, 11) |
| likelihood | manifold.png (Gaussian percentiles along two code axes, Fig. 2e), neighbours.png (samples and |
|            | their nearest training images, Fig. 5) |
| conditioned | manifold.png over the prior's 2-D box (Fig. 4b/d), mixture means marked in latent.png |
| supervised, semisupervised | style_label.png: style fixed per row, label varied per column (Fig. 7, 8) |
| clustering, dimred | cluster_heads.png: each cluster's decoded head and its most confident members (Fig. 9) |
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from aae_tune.aae import AdversarialAutoencoder
from aae_tune.metrics import draw_samples
from aae_tune.plots import (
    box_codes,
    cluster_heads_png,
    decoded_grid_png,
    gaussian_percentile_codes,
    latent_scatter_png,
    nearest_neighbours_png,
    save_image_grid,
    style_label_grid_png,
)
from aae_tune.scores import model_outputs
from aae_tune.train import SplitData

GRID = 20  # manifold grids are GRID x GRID images


def trial_figures(model: AdversarialAutoencoder, data: SplitData, folder: str | Path, seed: int = 0) -> list[Path]:
    """Write every figure of ``model`` into ``folder``; returns the paths."""
    folder = Path(folder)
    look = {"image_shape": tuple(getattr(data, "image_shape", (28, 28))),
            "standardized": bool(getattr(data, "standardized", False))}
    model = model.eval()
    samples = draw_samples(model, 100, seed).numpy()
    paths = [save_image_grid(samples, folder / "samples.png", **look),
             latent_scatter_png(model, data.valid_x, data.valid_y, folder / "latent.png", centres=_centres(model))]
    kind = model.cfg.model
    if kind == "likelihood" and model.cfg.code_dim >= 2:
        codes = gaussian_percentile_codes(GRID, model.cfg.code_dim, std=model.cfg.prior.std)
        paths.append(decoded_grid_png(_decoder(model), codes, folder / "manifold.png", cols=GRID, **look))
        paths.append(nearest_neighbours_png(samples[:10], np.asarray(data.train_x), folder / "neighbours.png", k=6,
                                            **look))
    if kind == "conditioned":
        reach = float(np.abs(model.prior.sample(5000, torch.Generator().manual_seed(seed)).z.numpy()).max())
        codes = box_codes(GRID, -reach, reach)
        paths.append(decoded_grid_png(_decoder(model), codes, folder / "manifold.png", cols=GRID, **look))
    if kind in ("supervised", "semisupervised"):
        styles = model.prior.sample(10, torch.Generator().manual_seed(seed)).z.numpy()
        paths.append(style_label_grid_png(_styled(model), styles, model.cfg.num_classes, folder / "style_label.png",
                                          **look))
    if kind in ("clustering", "dimred"):
        heads, members = cluster_heads(model, np.asarray(data.valid_x))
        paths.append(cluster_heads_png(heads, members, folder / "cluster_heads.png", **look))
    return paths


def cluster_heads(model: AdversarialAutoencoder, x: np.ndarray, per_cluster: int = 10
                  ) -> tuple[np.ndarray, list[np.ndarray]]:
    """Each cluster's head image (the decoded one-hot y with style z = 0) (K, D) and its ``per_cluster`` images
    of ``x`` with the highest q(y = k | x) among those assigned to it."""
    k = model.cfg.num_classes
    device = next(model.parameters()).device
    with torch.no_grad():
        zero = torch.zeros(k, model.cfg.code_dim, device=device)
        heads = model.decode_styled(zero, torch.arange(k, device=device)).cpu().numpy()
    q = model_outputs(model, x, "classify")  # (N, K)
    assigned = q.argmax(1)
    members = []
    for c in range(k):
        mine = np.flatnonzero(assigned == c)
        members.append(x[mine[np.argsort(-q[mine, c])[:per_cluster]]])
    return heads, members


def _centres(model: AdversarialAutoencoder) -> np.ndarray | None:
    """Reference points drawn over the latent scatter: mixture means, or the cluster heads W_C."""
    if model.cfg.model == "conditioned" and hasattr(model.prior, "means"):
        return model.prior.means().numpy()
    if model.cfg.model == "dimred":
        return model.heads.detach().cpu().numpy()
    return None


def _decoder(model: AdversarialAutoencoder):
    device = next(model.parameters()).device

    @torch.no_grad()
    def decode(codes: np.ndarray) -> np.ndarray:
        return model.decode(torch.as_tensor(codes, dtype=torch.float32, device=device)).cpu().numpy()

    return decode


def _styled(model: AdversarialAutoencoder):
    device = next(model.parameters()).device

    @torch.no_grad()
    def decode(z: np.ndarray, labels: np.ndarray) -> np.ndarray:
        zs = torch.as_tensor(z, dtype=torch.float32, device=device)
        return model.decode_styled(zs, torch.as_tensor(labels, dtype=torch.long, device=device)).cpu().numpy()

    return decode


