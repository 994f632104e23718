"""The paper's metric for each experiment, with data roles fixed so nothing is ever selected on test data.

``validation_scores`` is what a trial reports every few epochs and a search may optimise: it reads validation
images only. ``test_scores`` is the figure the paper reports, computed once for the best trials; it may use
validation images to fit the protocol (cluster labels, Parzen sigma) but is never fed back into a choice. Which
family a model is judged by is declared in ``aae_tune.experiments`` (``ExperimentConfig.score_kind``):

| score kind | validation metric | test metric |
|---|---|---|
| parzen (likelihood) | valid_parzen_ll: sigma on valid[n:2n], scored on valid[:n] | Table 1: sigma on valid[:1000] |
| components (conditioned) | valid_component_accuracy: % of codes in their label's component | test_component_accuracy |
| reconstruction (supervised) | valid_recon_loss (the trainer's) | test_recon_loss |
| classification (labeled categorical) | valid_error: % misclassified by argmax q(y|x) | test_error |
| clustering (unlabeled categorical) | valid_cluster_error (+ valid_clusters_used) | test_cluster_error |
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from aae_tune.data.splits import SplitData
from aae_tune.evaluate.parzen import ParzenResult, parzen_log_likelihood
from aae_tune.experiments import TABLE1_SAMPLES
from aae_tune.model.aae import AdversarialAutoencoder
from aae_tune.model.inference import draw_samples, model_outputs, recon_loss

TEST_PREFIX = "test_"  # every figure test_scores returns is named test_*: reported, never optimised
SIGMA_SELECTION_POINTS = 1000  # Table 1: sigma is chosen on 1000 validation images
# (model, valid (N_v, D), test (N_t, D), n_samples, seed) -> the Table 1 protocol's result
ParzenProtocol = Callable[[AdversarialAutoencoder, np.ndarray, np.ndarray, int, int], ParzenResult]

# ---- metric functions on plain arrays (unit-tested on hand-made cases) -------------------------------------


def error_rate(predicted: np.ndarray, labels: np.ndarray) -> float:
    """Percentage of positions where ``predicted`` (N,) differs from ``labels`` (N,)."""
    predicted, labels = np.asarray(predicted), np.asarray(labels)
    return 100.0 * float(np.mean(predicted != labels)) if len(labels) else math.nan


def cluster_labels(q_y: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Sec. 6's protocol: cluster i takes the label of the image n that maximises q(y_i | x_n).
    q_y (N, K) cluster probabilities of labeled images, labels (N,) -> (K,) one label per cluster."""
    return np.asarray(labels)[np.asarray(q_y).argmax(0)]


def clusters_used(q_y: np.ndarray) -> float:
    """How many of the K categories are the most probable one for at least one image; q_y (N, K). A collapsed
    categorical head (the adversary on y has not spread q(y)) uses few of them."""
    return float(len(np.unique(q_y.argmax(1))))


def cluster_error(q_fit: np.ndarray, y_fit: np.ndarray, q_score: np.ndarray, y_score: np.ndarray) -> float:
    """Label the clusters on (q_fit, y_fit), then assign each scored image to its most probable cluster and
    return the percentage whose cluster label differs from its true label."""
    names = cluster_labels(q_fit, y_fit)
    return error_rate(names[np.asarray(q_score).argmax(1)], y_score)


# ---- the likelihood model: Parzen-window protocols -----------------------------------------------------------


def in_memory_parzen(model: AdversarialAutoencoder, valid: np.ndarray, test: np.ndarray, n_samples: int,
                     seed: int) -> ParzenResult:
    """The Parzen protocol in this process on ``n_samples`` samples held in memory: sigma chosen on ``valid``,
    ``test`` scored at it. (``aae_tune.evaluate.parallel`` runs the same protocol as Ray tasks.)"""
    return parzen_log_likelihood(draw_samples(model, n_samples, seed), valid, test)


def validation_parzen(
    model: AdversarialAutoencoder, data: SplitData, n_samples: int = TABLE1_SAMPLES, seed: int = 0,
    n_points: int = SIGMA_SELECTION_POINTS
) -> ParzenResult:
    """Validation-only estimate: sigma chosen on valid[n:2n], scored on valid[0:n]. Safe to optimise."""
    if len(data.valid_x) < 2 * n_points:
        n_points = len(data.valid_x) // 2  # small (embedded) splits: use halves of what there is
    valid = data.valid_x
    return in_memory_parzen(model, valid[n_points : 2 * n_points], valid[:n_points], n_samples, seed)


# ---- every experiment's figures ------------------------------------------------------------------------------


def validation_scores(model: AdversarialAutoencoder, data: SplitData, *, seed: int = 0,
                      parzen_samples: int = TABLE1_SAMPLES) -> dict[str, float]:
    """The validation metric(s) of ``model`` (see the table above); reads validation images only."""
    kind = model.cfg.score_kind
    x, y = data.valid_x, np.asarray(data.valid_y)
    if kind == "parzen":
        r = validation_parzen(model, data, n_samples=parzen_samples, seed=seed)
        return {"valid_parzen_ll": r.mean, "valid_parzen_se": r.stderr, "valid_parzen_sigma": r.sigma}
    if kind == "reconstruction":
        return {}  # valid_recon_loss comes with every epoch's training metrics
    if kind == "clustering":
        q, half = model_outputs(model, x, "classify"), len(y) // 2
        # cluster labels fitted on the second half of validation, error measured on the first half
        return {"valid_cluster_error": cluster_error(q[half:], y[half:], q[:half], y[:half]),
                "valid_clusters_used": clusters_used(q)}
    return {f"valid_{name}": value for name, value in _held_out_scores(model, x, y).items()}


def test_scores(model: AdversarialAutoencoder, data: SplitData, *, parzen_samples: int = TABLE1_SAMPLES, seed: int = 0,
                parzen: ParzenProtocol = in_memory_parzen) -> dict[str, float]:
    """The figure the paper reports, on the test images. For the likelihood model that is Table 1's Parzen
    protocol, run by ``parzen`` (in this process by default; the search passes the Ray-parallel one)."""
    kind = model.cfg.score_kind
    x, y = data.test_x, np.asarray(data.test_y)
    if kind == "parzen":
        r = parzen(model, data.valid_x[:SIGMA_SELECTION_POINTS], x, parzen_samples, seed)
        return {"test_parzen_ll": r.mean, "test_parzen_se": r.stderr, "test_parzen_sigma": r.sigma,
                "test_parzen_valid_ll": float(r.valid_by_sigma.max()), "test_parzen_samples": float(r.n_samples)}
    if kind == "reconstruction":
        return {"test_recon_loss": recon_loss(model, x, y)}
    if kind == "clustering":
        q_valid = model_outputs(model, data.valid_x, "classify")  # cluster labels fitted on validation
        return {"test_cluster_error": cluster_error(q_valid, np.asarray(data.valid_y),
                                                    model_outputs(model, x, "classify"), y)}
    return {f"test_{name}": value for name, value in _held_out_scores(model, x, y).items()}


def describe_test_scores(scores: dict[str, float]) -> list[str]:
    """Lines for a person: Table 1's Parzen figure in the paper's form, any other test figure as it is."""
    if "test_parzen_ll" in scores:
        return [f"Table 1 Parzen log-likelihood (test, {scores['test_parzen_samples']:.0f} samples): "
                f"{scores['test_parzen_ll']:.2f} ± {scores['test_parzen_se']:.2f} nats  (sigma "
                f"{scores['test_parzen_sigma']:.4f} chosen on validation)"]
    return [f"{key}: {value:.4g}" for key, value in sorted(scores.items()) if key.startswith(TEST_PREFIX)]


def _held_out_scores(model: AdversarialAutoencoder, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """The label-checked figures on held-out images x (N, D), y (N,), without their split prefix."""
    if model.cfg.score_kind == "components":
        return {"component_accuracy": 100.0 - error_rate(model_outputs(model, x, "assign"), y)}
    return {"error": error_rate(model_outputs(model, x, "classify").argmax(1), y)}
