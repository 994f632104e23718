"""Every shipped space passes a smoke search: real Ray Tune, real MLflow, real MNIST (SVHN: a small file written
in the official .mat layout). Each trial must report the space's metric, log its figures and model, and get the
paper's test figure in finalize."""

import numpy as np
import pytest
import scipy.io

from aae_tune.search import cli as search
from aae_tune.search.space import available_spaces, load_space
from tests.helpers import search_runs

# likelihood_mnist has its own, fuller end-to-end tests in tests/system/test_search.py
SPACES = [s for s in available_spaces() if s != "likelihood_mnist"]
FIGURES = {  # beyond samples.png and latent.png
    "conditioned": {"manifold.png"}, "supervised": {"style_label.png"}, "semisupervised": {"style_label.png"},
    "clustering": {"cluster_heads.png"}, "dimred": {"cluster_heads.png"},
}


@pytest.fixture(scope="module")
def svhn_dir(tmp_path_factory):
    """Official layout: X uint8 (32, 32, 3, N), y (N, 1) with labels 1..10 (10 = digit 0)."""
    root = tmp_path_factory.mktemp("svhn")
    rng = np.random.default_rng(0)
    for name, n in (("train_32x32.mat", 1500), ("test_32x32.mat", 300), ("extra_32x32.mat", 300)):
        y = np.tile(np.arange(1, 11), n // 10).reshape(-1, 1).astype(np.uint8)
        x = rng.integers(0, 256, size=(32, 32, 3, n), dtype=np.uint8)
        scipy.io.savemat(root / name, {"X": x, "y": y})
    return root


@pytest.mark.parametrize("name", SPACES)
def test_space_smoke_search(name, tmp_path, ray_session, svhn_dir):
    space = load_space(name)
    tracking = f"sqlite:///{tmp_path}/mlflow.db"
    args = ["--space", name, "--smoke", "--num-samples", "1", "--max-epochs", "1", "--name", "smoke",
            "--storage-path", str(tmp_path / "ray_results"), "--tracking-uri", tracking, "--top-k", "1"]
    if space.dataset.name == "svhn":
        args += ["--data-dir", str(svhn_dir)]
    assert search.main(args) == 0

    client, parents, trials = search_runs(tracking, space=name)
    trial, parent = trials[0], parents[0]
    assert space.metric in trial.data.metrics
    test_metric = "test_" + space.metric.removeprefix("valid_")
    assert test_metric in trial.data.metrics and f"best_trial_{test_metric}" in parent.data.metrics
    assert parent.data.metrics[f"best_trial_{space.metric}"] == trial.data.metrics[f"best_{space.metric}"]
    model = space.experiment_config().model
    figures = {a.path.removeprefix("figures/") for a in client.list_artifacts(trial.info.run_id, "figures")}
    assert {"samples.png", "latent.png"} | FIGURES.get(model, set()) <= figures
    assert "aae_model_uri" in trial.data.tags
