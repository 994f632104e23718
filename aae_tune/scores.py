"""The paper's metric for each experiment, with data roles fixed so nothing is ever selected on test data.

``validation_scores`` is what a trial reports every few epochs and a search may optimise: it reads validation
images only. ``test_scores`` is reported once for the best trials; it may use validation images to fit the
protocol (cluster labels, Parzen sigma) but is never fed back into a choice.

| model | validation metric | test metric |
|---|---|---|
| likelihood | valid_parzen_ll (sigma on valid[n:2n], scored on valid[:n]) | Table 1 Parzen (evaluate.py, on Ray) |
| conditioned | valid_component_accuracy: % of codes in their label's component | test_component_accuracy |
| supervised | valid_recon_loss (the trainer's) | test_recon_loss |
| semisupervised / dimred with labels | valid_error: % misclassified by argmax q(y|x) | test_error |
| clustering / dimred without labels | valid_cluster_error: the cluster-label protocol | test_cluster_error |
"""

from __future__ import annotations

import math

import numpy as np
import torch

from aae_tune.aae import AdversarialAutoencoder
from aae_tune.config import CATEGORICAL_MODELS, ExperimentConfig
from aae_tune.metrics import validation_parzen
from aae_tune.train import SplitData

# ---- metric functions on plain arrays (unit-tested on hand-made cases) -------------------------------------


def error_rate(predicted: np.ndarray, labels: np.ndarray) -> float:
    """Percentage of positions where ``predicted`` (N,) differs from ``labels`` (N,)."""
    predicted, labels = np.asarray(predicted), np.asarray(labels)
    return 100.0 * float(np.mean(predicted != labels)) if len(labels) else math.nan


def cluster_labels(q_y: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Sec. 6's protocol: cluster i takes the label of the image n that maximises q(y_i | x_n).
    q_y (N, K) cluster probabilities of labeled images, labels (N,) -> (K,) one label per cluster."""
    return np.asarray(labels)[np.asarray(q_y).argmax(0)]


def cluster_error(q_fit: np.ndarray, y_fit: np.ndarray, q_score: np.ndarray, y_score: np.ndarray) -> float:
    """Label the clusters on (q_fit, y_fit), then assign each scored image to its most probable cluster and
    return the percentage whose cluster label differs from its true label."""
    names = cluster_labels(q_fit, y_fit)
    return error_rate(names[np.asarray(q_score).argmax(1)], y_score)


# ---- model outputs ---------------------------------------------------------------------------------------


@torch.no_grad()
def model_outputs(model: AdversarialAutoencoder, x: np.ndarray, method: str, chunk: int = 5000) -> np.ndarray:
    """``model.<method>(x)`` in eval mode over chunks of x (N, D), on the model's device; numpy on the host."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    fn = getattr(model, method)
    parts = [fn(torch.as_tensor(np.asarray(x[i : i + chunk]), dtype=torch.float32, device=device)).float().cpu()
             for i in range(0, len(x), chunk)]
    model.train(was_training)
    return torch.cat(parts).numpy()


@torch.no_grad()
def recon_loss(model: AdversarialAutoencoder, x: np.ndarray, y: np.ndarray, chunk: int = 5000) -> float:
    """Mean Euclidean reconstruction cost per image (no input corruption)."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    total = 0.0
    for i in range(0, len(x), chunk):
        xs = torch.as_tensor(np.asarray(x[i : i + chunk]), dtype=torch.float32, device=device)
        ys = torch.as_tensor(np.asarray(y[i : i + chunk]), dtype=torch.long, device=device)
        total += float((model.reconstruct(xs, None, ys) - xs).pow(2).sum())
    model.train(was_training)
    return total / max(len(x), 1)


def score_kind(cfg: ExperimentConfig) -> str:
    """Which family of metrics a config's model is judged by."""
    if cfg.model in CATEGORICAL_MODELS:
        return "classification" if cfg.uses_labels else "clustering"
    return {"likelihood": "parzen", "conditioned": "components", "supervised": "reconstruction"}[cfg.model]


VALIDATION_METRICS = {
    "parzen": ("valid_parzen_ll", "valid_parzen_se", "valid_parzen_sigma"),
    "components": ("valid_component_accuracy",),
    "reconstruction": (),  # valid_recon_loss comes with every epoch's training metrics
    "classification": ("valid_error",),
    "clustering": ("valid_cluster_error",),
}


def reported_metrics(cfg: ExperimentConfig) -> set[str]:
    """Validation metrics a trial of this config reports (what a search space may optimise)."""
    return {"valid_recon_loss", *VALIDATION_METRICS[score_kind(cfg)]}


def validation_scores(model: AdversarialAutoencoder, data: SplitData, *, seed: int = 0,
                      parzen_samples: int = 2000) -> dict[str, float]:
    """The validation metric(s) of ``model`` (see the table above); reads validation images only."""
    kind = score_kind(model.cfg)
    x, y = data.valid_x, np.asarray(data.valid_y)
    if kind == "parzen":
        r = validation_parzen(model, data, n_samples=parzen_samples, seed=seed)
        return {"valid_parzen_ll": r.mean, "valid_parzen_se": r.stderr, "valid_parzen_sigma": r.sigma}
    if kind == "components":
        return {"valid_component_accuracy": 100.0 - error_rate(model_outputs(model, x, "assign"), y)}
    if kind == "classification":
        return {"valid_error": error_rate(model_outputs(model, x, "classify").argmax(1), y)}
    if kind == "clustering":
        q, half = model_outputs(model, x, "classify"), len(y) // 2
        # cluster labels fitted on the second half of validation, error measured on the first half
        return {"valid_cluster_error": cluster_error(q[half:], y[half:], q[:half], y[:half])}
    return {}


def test_scores(model: AdversarialAutoencoder, data: SplitData) -> dict[str, float]:
    """The figure the paper reports, on the test images (the likelihood model's Parzen protocol runs on Ray,
    in finalize.py / evaluate.py, so it is not here)."""
    kind = score_kind(model.cfg)
    x, y = data.test_x, np.asarray(data.test_y)  # type: ignore[attr-defined]
    if kind == "components":
        return {"test_component_accuracy": 100.0 - error_rate(model_outputs(model, x, "assign"), y)}
    if kind == "reconstruction":
        return {"test_recon_loss": recon_loss(model, x, y)}
    if kind == "classification":
        return {"test_error": error_rate(model_outputs(model, x, "classify").argmax(1), y)}
    if kind == "clustering":
        q_valid = model_outputs(model, data.valid_x, "classify")
        return {"test_cluster_error": cluster_error(q_valid, np.asarray(data.valid_y), model_outputs(
            model, x, "classify"), y)}
    return {}
