"""The pre-flight's checks of seeds, trial resources and where a search writes (search.resources and
.destination_checks)."""

import json
import os

import optuna
import pytest
import ray

from aae_tune.mlflow_store import mlflow_client
from aae_tune.search.destination_checks import check_search_folder, check_store_files, sqlite_file_problem
from aae_tune.search.resources import check_pending_timeout, check_seed, check_trial_resources, local_gpu_count


def problems_of(check, *args) -> list[str]:
    found: list[str] = []
    check(*args, found)
    return found


@pytest.mark.parametrize("seed, ok", [(0, True), (2**32 - 1, True), (-1, False), (2**32, False)])
def test_seeds_within_numpy_and_torch_range(seed, ok):
    assert (problems_of(check_seed, seed) == []) == ok


@pytest.fixture
def before_ray_starts(monkeypatch):
    """The pre-flight runs before this process has a Ray; a whole-suite run has one already (the system tests')."""
    monkeypatch.setattr(ray, "is_initialized", lambda: False)


@pytest.mark.usefixtures("before_ray_starts")
def test_no_visible_gpu_means_none_for_a_local_ray(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # what Ray reads too: a node started here would have no GPU
    monkeypatch.delenv("RAY_OVERRIDE_RESOURCES", raising=False)
    assert local_gpu_count() == 0
    found = problems_of(check_trial_resources, 1.0, 1.0, None)
    assert len(found) == 1 and "--gpus-per-trial 1: the local Ray would have no GPU (CUDA_VISIBLE_DEVICES='')" \
        in found[0]
    assert problems_of(check_trial_resources, 1.0, 0.0, None) == []  # CPU only: fine
    assert problems_of(check_trial_resources, 1.0, None, None) == []  # default: a GPU only if there is one


@pytest.mark.usefixtures("before_ray_starts")
def test_rays_resource_override_counts(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    monkeypatch.setenv("RAY_OVERRIDE_RESOURCES", json.dumps({"GPU": 2, "CPU": 4}))
    assert local_gpu_count() == 2
    assert problems_of(check_trial_resources, 4.0, 2.0, None) == []
    assert "would have 4 CPU(s)" in problems_of(check_trial_resources, 5.0, 0.0, None)[0]


def test_a_cluster_may_add_what_it_lacks(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert problems_of(check_trial_resources, 64.0, 8.0, "ray://head:10001") == []  # warned and timed at start


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """A real MLflow store and a real Optuna study store, each as its own tool creates it."""
    tmp = tmp_path_factory.mktemp("stores")
    mlflow_client(f"sqlite:///{tmp}/mlflow.db")
    optuna.create_study(storage=f"sqlite:///{tmp}/optuna.db", study_name="s")
    return tmp


def test_each_tool_keeps_to_its_own_database(stores):
    assert sqlite_file_problem(stores / "mlflow.db", "MLflow") is None
    assert sqlite_file_problem(stores / "optuna.db", "Optuna") is None
    assert "holds an MLflow store, not an Optuna one" in sqlite_file_problem(stores / "mlflow.db", "Optuna")
    assert "holds an Optuna store, not an MLflow one" in sqlite_file_problem(stores / "optuna.db", "MLflow")


def test_what_is_not_a_database(tmp_path):
    (tmp_path / "text.db").write_text("not a database")
    (tmp_path / "empty.db").touch()
    assert "is not a SQLite database" in sqlite_file_problem(tmp_path / "text.db", "Optuna")
    assert "is a folder" in sqlite_file_problem(tmp_path, "MLflow")
    assert sqlite_file_problem(tmp_path / "empty.db", "MLflow") is None  # SQLite makes an empty file a database
    assert sqlite_file_problem(tmp_path / "new.db", "MLflow") is None


def test_search_folder_that_is_a_file_or_a_broken_link(tmp_path):
    (tmp_path / "a-file").write_text("x")
    os.symlink(tmp_path / "nowhere", tmp_path / "a-link")
    assert "is a file, not a search folder" in problems_of(check_search_folder, str(tmp_path), "a-file")[0]
    assert problems_of(check_search_folder, str(tmp_path), "a-link")
    (tmp_path / "a-folder").mkdir()
    assert problems_of(check_search_folder, str(tmp_path), "a-folder") == []
    assert problems_of(check_search_folder, str(tmp_path), "new") == []


def test_stores_apart_from_each_other_and_the_search_folder(tmp_path):
    db = f"sqlite:///{tmp_path}/store.db"
    assert "the same file as the MLflow store" in problems_of(check_store_files, str(tmp_path), "s", db, db)[0]
    inside = f"sqlite:///{tmp_path}/s/sub/optuna.db"
    found = problems_of(check_store_files, str(tmp_path), "s", db, inside)
    assert len(found) == 1 and "the Optuna store would lie in the search folder" in found[0]
    assert problems_of(check_store_files, str(tmp_path), "s", db, f"sqlite:///{tmp_path}/optuna.db") == []
    assert problems_of(check_store_files, "s3://bucket/x", "s", "http://127.0.0.1:5000", None) == []


@pytest.mark.parametrize("seconds, ok", [(None, True), (30.0, True), (0.0, False), (-5.0, False),
                                         (float("nan"), False), (float("inf"), False)])
def test_pending_timeout_is_a_positive_number_of_seconds(seconds, ok):
    assert (problems_of(check_pending_timeout, seconds) == []) == ok


def test_dry_run_shows_the_budget_it_will_run_and_samples_only_for_a_parzen_score(tmp_path):
    import yaml

    from aae_tune.search.api import make_request
    from aae_tune.search.request import describe_request

    where = {"storage_path": str(tmp_path / "ray"), "tracking_uri": f"sqlite:///{tmp_path}/mlflow.db"}
    text = describe_request(make_request("semisupervised_mnist_100", num_samples=32, max_epochs=50, **where))
    assert "# 32 trials x 50 epochs" in text and "samples" not in text.split("test protocol")[1].splitlines()[0]
    assert yaml.safe_load(text)["budget"] == {"num_samples": 32, "max_epochs": 50, "max_concurrent": 2}
    likelihood = describe_request(make_request("likelihood_mnist", final_samples=500, **where))
    assert "get the test protocol with 500 samples" in likelihood


@pytest.mark.parametrize("resume", [True, False])
def test_a_search_held_by_a_live_driver_is_busy_before_it_has_any_state(tmp_path, resume):
    """A driver that holds the lease but has not saved Tune's state yet: a second command (a job wrapper that
    always passes --resume, or none) hears that the search is busy, not that there is no search to resume."""
    from aae_tune.search.lease import SearchLease
    from aae_tune.search.request import check_resume

    folder = tmp_path / "held"
    folder.mkdir()
    with SearchLease(str(folder), "held"):
        problems: list[str] = []
        check_resume(str(folder), resume, problems)
    assert len(problems) == 1 and "search held is being run by another driver pid" in problems[0], problems
    problems = []
    check_resume(str(folder), True, problems)  # the lease given back: an empty folder is no search to resume
    assert problems and "no search to resume" in problems[0]
