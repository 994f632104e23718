"""The Optuna study of a TPE search: persisted in SQLite beside the MLflow store, readable with optuna.load_study,
listed by optuna-dashboard in a real browser, and the seed of a warm-started search of the same space."""

import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from aae_tune.cluster import browser
from aae_tune.errors import ConfigError
from aae_tune.search import cli as search
from aae_tune.search.api import make_request
from tests.helpers import closed_port, search_runs, wait_for_port

FIRST_TRIALS = 3


def args(root, name, *extra):
    return ["--space", "likelihood_mnist", "--smoke", "--max-epochs", "1", "--name", name, "--storage-path",
            str(root / "ray_results"), "--tracking-uri", f"sqlite:///{root}/mlflow.db", "--final-samples", "200",
            "--top-k", "1", "--seed", "0", *extra]


@pytest.fixture(scope="module")
def first(tmp_path_factory, ray_session):
    root = tmp_path_factory.mktemp("study")
    assert search.main(args(root, "first", "--num-samples", str(FIRST_TRIALS))) == 0
    return root


def test_study_persists_beside_the_mlflow_store(first):
    study = optuna.load_study(study_name="first", storage=f"sqlite:///{first}/optuna.db")
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(done) == FIRST_TRIALS and study.direction == optuna.study.StudyDirection.MAXIMIZE
    assert study.user_attrs["aae_space_signature"]["space"] == "likelihood_mnist"


def test_warm_start_seeds_a_new_search_with_the_earlier_trials(first):
    assert search.main(args(first, "second", "--num-samples", "1", "--warm-start", "first")) == 0
    storage = f"sqlite:///{first}/optuna.db"
    earlier = optuna.load_study(study_name="first", storage=storage).trials
    seeded = optuna.load_study(study_name="second", storage=storage).trials
    assert len(seeded) == FIRST_TRIALS + 1
    assert [(t.params, t.value) for t in seeded[:FIRST_TRIALS]] == [(t.params, t.value) for t in earlier]
    client, parents, trials = search_runs(f"sqlite:///{first}/mlflow.db", "second")
    assert len(trials) == 1 and parents[0].data.params["warm_start_trials"] == str(FIRST_TRIALS)


@pytest.mark.parametrize(("name", "overrides", "expected"), [
    ("first", {"params.code_dim.values": [4, 5]}, "searched a different params"),
    ("first", {"metric": "valid_recon_loss", "mode": "min"}, "searched a different metric, mode"),
    ("nope", {}, "no such study"),
    ("first", {"searcher.type": "random"}, "needs searcher.type optuna_tpe"),
])
def test_warm_start_is_refused_for_another_space_or_study(first, name, overrides, expected):
    with pytest.raises(ConfigError, match=expected):
        make_request("likelihood_mnist", smoke=True, warm_start=name, overrides=overrides,
                     storage_path=str(first / "ray_results"), tracking_uri=f"sqlite:///{first}/mlflow.db")


@pytest.mark.skipif(browser.chromium_path() is None, reason="chromium not installed (.ci/run installs it)")
def test_optuna_dashboard_lists_the_study(first):
    port = closed_port()
    dashboard = Path(sys.executable).with_name("optuna-dashboard")  # the [test] extra installs it
    proc = subprocess.Popen([str(dashboard), f"sqlite:///{first}/optuna.db", "--host", "127.0.0.1", "--port",
                             str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, "optuna-dashboard")
        text = browser.rendered_text(f"http://127.0.0.1:{port}/dashboard", ["first"])
        assert "first" in text, text[:2000]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
