"""The paper's metrics on hand-made cases, label subsets, and prior component assignment."""

import math

import numpy as np
import pytest
import torch

from aae_tune.config import ExperimentConfig
from aae_tune.data.labels import balanced_subset, visible_labels
from aae_tune.evaluate.scores import cluster_error, cluster_labels, clusters_used, error_rate
from aae_tune.experiments import reported_metrics
from aae_tune.model.priors import MixturePrior, SwissRollPrior


def test_error_rate():
    assert error_rate(np.array([1, 2, 3, 4]), np.array([1, 2, 0, 0])) == 50.0
    assert error_rate(np.array([7]), np.array([7])) == 0.0
    assert math.isnan(error_rate(np.array([]), np.array([])))


def test_cluster_labels_take_the_label_of_the_most_confident_image():
    # 3 clusters, 4 labeled images: cluster 0 is most sure of image 2 (label 5), cluster 1 of image 0 (label 3),
    # cluster 2 of image 3 (label 5): two clusters may share a label, as in the paper's 16/30-cluster runs.
    q = np.array([[0.1, 0.8, 0.1],
                  [0.3, 0.3, 0.4],
                  [0.9, 0.05, 0.05],
                  [0.2, 0.1, 0.7]])
    labels = np.array([3, 1, 5, 5])
    assert cluster_labels(q, labels).tolist() == [5, 3, 5]


def test_cluster_error_on_a_toy_assignment():
    q_fit = np.array([[0.9, 0.1], [0.2, 0.8]])  # cluster 0 -> label 4, cluster 1 -> label 7
    y_fit = np.array([4, 7])
    q_score = np.array([[0.6, 0.4], [0.1, 0.9], [0.7, 0.3], [0.45, 0.55]])  # clusters 0, 1, 0, 1
    y_score = np.array([4, 7, 7, 4])  # predicted 4, 7, 4, 7: two of four wrong
    assert cluster_error(q_fit, y_fit, q_score, y_score) == 50.0
    assert cluster_error(q_fit, y_fit, q_score[:2], y_score[:2]) == 0.0
    assert clusters_used(q_score) == 2.0 and clusters_used(q_score[[0, 2]]) == 1.0  # a collapsed head


def test_balanced_subset_is_balanced_seeded_and_disjoint_per_class():
    y = np.repeat(np.arange(10), 50)
    np.random.default_rng(0).shuffle(y)
    picked = balanced_subset(y, 100, 10, seed=3)
    assert len(picked) == len(set(picked)) == 100
    assert np.bincount(y[picked], minlength=10).tolist() == [10] * 10
    assert np.array_equal(picked, balanced_subset(y, 100, 10, seed=3))
    assert not np.array_equal(picked, balanced_subset(y, 100, 10, seed=4))
    assert np.bincount(y[balanced_subset(y, 13, 10, seed=0)], minlength=10).tolist() == [2, 2, 2] + [1] * 7
    with pytest.raises(ValueError, match="class 0 has 50"):
        balanced_subset(y, 120, 2, seed=0)


def test_visible_labels_hide_all_but_the_subset():
    y = np.repeat(np.arange(10), 20)
    shown = visible_labels(y, 30, 10, seed=0)
    assert (shown >= 0).sum() == 30 and np.all(shown[shown >= 0] == y[shown >= 0])
    assert np.array_equal(visible_labels(y, None, 10, seed=0), y)


def test_mixture_assign_finds_the_component_of_its_own_samples():
    prior = MixturePrior(10, radius=2.0, radial_std=0.5, tangential_std=0.05)
    k = torch.arange(10).repeat(200)
    s = prior.sample(len(k), torch.Generator().manual_seed(0), component=k)
    assert (prior.assign(s.z) == k).float().mean() > 0.97  # petals barely overlap near the origin
    assert prior.assign(prior.means()).tolist() == list(range(10))


def test_swiss_roll_assign_finds_the_segment_of_noise_free_points():
    prior = SwissRollPrior(10, scale=3.0, turns=2.0, noise=0.0)
    u = (torch.arange(10) + 0.5) / 10  # the middle of each segment
    assert prior.assign(prior.point(u)).tolist() == list(range(10))
    s = prior.sample(2000, torch.Generator().manual_seed(1))
    assert (prior.assign(s.z) == s.component).float().mean() > 0.97


@pytest.mark.parametrize(("model", "extra", "kind", "metric"), [
    ("likelihood", {}, "parzen", "valid_parzen_ll"),
    ("conditioned", {"code_dim": 2, "prior": {"kind": "mixture"}}, "components", "valid_component_accuracy"),
    ("supervised", {}, "reconstruction", "valid_recon_loss"),
    ("semisupervised", {"num_labeled": 100}, "classification", "valid_error"),
    ("semisupervised", {"num_labeled": 0}, "clustering", "valid_cluster_error"),
    ("clustering", {}, "clustering", "valid_cluster_error"),
    ("dimred", {"code_dim": 2, "num_labeled": 100}, "classification", "valid_error"),
    ("dimred", {"code_dim": 2, "num_labeled": 0}, "clustering", "valid_cluster_error"),
])
def test_each_model_reports_its_metric(model, extra, kind, metric):
    cfg = ExperimentConfig.from_dict({"model": model, **extra})
    assert cfg.score_kind == kind and metric in reported_metrics(cfg.score_kind)
