"""The search service end to end: real Ray Tune, real MLflow store, real MNIST, smoke budget."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import matplotlib.image
import mlflow
import numpy as np
import optuna
import pytest
import torch

from aae_tune.errors import ConfigError
from aae_tune.names import TAG_TRIAL
from aae_tune.search import cli as search
from aae_tune.search import run as run_search_api
from aae_tune.search.api import make_request
from aae_tune.search.asha import RUNGS_FILE
from aae_tune.search.lineage import TAG_CODE_RESUMED, TAG_CODE_VERSION, code_version
from aae_tune.search.signing import load_verified, signing_key
from tests.helpers import LIKELIHOOD_FIGURES, REPO_ROOT, search_runs

N_TRIALS = 3


def search_args(root, name, *extra):
    return ["--space", "likelihood_mnist", "--smoke", "--num-samples", str(N_TRIALS), "--max-epochs", "2",
            "--name", name, "--storage-path", str(root / "ray_results"), "--tracking-uri", tracking(root),
            "--final-samples", "500", "--top-k", "1", "--seed", "0", *extra]


def tracking(root) -> str:
    return f"sqlite:///{root}/mlflow.db"


def runs_by_role(root, name):
    return search_runs(tracking(root), name)


@pytest.fixture(scope="module")
def smoke_search(tmp_path_factory, ray_session):
    root = tmp_path_factory.mktemp("search")
    code = search.main(search_args(root, "smoke"))
    return root, code


def test_smoke_search_records_everything(smoke_search, capsys):
    root, code = smoke_search
    assert code == 0
    assert (root / "ray_results" / "smoke").is_dir()
    client, parents, trials = runs_by_role(root, "smoke")
    assert len(parents) == 1 and len(trials) == N_TRIALS
    parent = parents[0]
    assert {t.data.tags["mlflow.parentRunId"] for t in trials} == {parent.info.run_id}
    assert parent.data.params["num_samples"] == str(N_TRIALS)
    summary = {a.path for a in client.list_artifacts(parent.info.run_id, "summary")}
    assert summary == {"summary/trials.parquet", "summary/trials.csv"}
    for trial in trials:
        history = client.get_metric_history(trial.info.run_id, "valid_parzen_ll")
        steps = [m.step for m in history]
        assert steps == sorted(set(steps)) and steps[0] == 1  # one point per epoch, step = epoch
        assert "encoder" in trial.data.params and "stop_reason" in trial.data.tags
        figures = {a.path for a in client.list_artifacts(trial.info.run_id, "figures")}
        assert figures >= LIKELIHOOD_FIGURES
    best = [t for t in trials if "test_parzen_ll" in client.get_run(t.info.run_id).data.metrics]
    assert len(best) == 1  # top_k = 1 got the Table 1 protocol


def test_one_score_per_trial_everywhere(smoke_search):
    """A trial's score is the best validation value over its epochs and the epoch that reached it: the trial run's
    running ``best_valid_parzen_ll`` / ``best_epoch``, Optuna's value for the trial, the parent run's
    ``best_trial_*`` figures and the summary's words all give it; list choices are values, not indices."""
    root, _ = smoke_search
    client, parents, trials = runs_by_role(root, "smoke")
    scores = {}
    for trial in trials:
        history = client.get_metric_history(trial.info.run_id, "valid_parzen_ll")
        peak = max(history, key=lambda m: (m.value, -m.step))
        metrics = trial.data.metrics
        assert metrics["best_valid_parzen_ll"] == peak.value and metrics["best_epoch"] == peak.step
        assert trial.data.params["optim.reconstruction.drop_epochs"] in {"[]", "[10]", "[15]", "[50]"}
        scores[trial.info.run_id] = peak
    study = optuna.load_study(study_name="smoke", storage=f"sqlite:///{root}/optuna.db")
    assert sorted(t.value for t in study.trials) == sorted(m.value for m in scores.values())
    assert {t.params["optim.reconstruction.drop_epochs"] for t in study.trials} <= {"[]", "[10]", "[15]", "[50]"}
    best_run = max(scores, key=lambda r: scores[r].value)
    parent = client.get_run(parents[0].info.run_id).data.metrics
    assert parent["best_trial_valid_parzen_ll"] == scores[best_run].value
    assert parent["best_trial_epoch"] == scores[best_run].step
    assert parent["best_trial_test_parzen_ll"] == client.get_run(best_run).data.metrics["test_parzen_ll"]
    assert not any(k.startswith("best_test") for k in parent) and "best_valid_parzen_ll" not in parent
    record = json.loads((root / "ray_results" / "smoke" / "aae_search.json").read_text())
    assert (f"(MLflow run {best_run}): valid_parzen_ll = {scores[best_run].value:.2f}, best of 2 epochs, reached "
            f"at epoch {scores[best_run].step}") in record["summary"], record["summary"]
    assert "searched values: " in record["summary"] and "config: {" not in record["summary"]


def test_search_records_its_data_and_describes_itself(smoke_search):
    """Lineage (one dataset input per split on every run, data tags), the model-training experiment kind, the
    parent's description, and a described registered version behind the ``champion`` alias."""
    root, _ = smoke_search
    client, parents, trials = runs_by_role(root, "smoke")
    experiment = client.get_experiment_by_name("aae-likelihood_mnist")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    for run in [*parents, *trials]:
        inputs = {i.dataset.name: i for i in run.inputs.dataset_inputs}
        assert set(inputs) == {"mnist-train", "mnist-valid", "mnist-test"}
        contexts = {name: [t.value for t in i.tags if t.key == "mlflow.data.context"] for name, i in inputs.items()}
        assert contexts == {"mnist-train": ["training"], "mnist-valid": ["validation"], "mnist-test": ["test"]}
        assert json.loads(inputs["mnist-train"].dataset.profile)["num_rows"] == 5000  # --smoke: first 5,000
        assert run.data.tags["aae_data_full"] == "false" and "train 5000 of 50000" in run.data.tags["aae_data_source"]
    note = client.get_run(parents[0].info.run_id).data.tags["mlflow.note.content"]
    assert "best trial" in note and "not the paper's 50K/10K/10K MNIST split" in note
    champion = client.get_model_version_by_alias("aae-likelihood_mnist", "champion")
    assert str(champion.version) == "1" and champion.tags["aae_metric"] == "valid_parzen_ll"
    assert "search smoke, trial" in champion.description and "valid_parzen_ll =" in champion.description


def test_parent_run_carries_the_search_report(smoke_search, tmp_path):
    """Optuna's plots, trial survival, best score against trial-epochs (valid PNGs) and the trial table that the
    MLflow UI renders (an MLflow table artifact with one row per trial)."""
    root, _ = smoke_search
    client, parents, _ = runs_by_role(root, "smoke")
    parent = parents[0].info.run_id
    names = {a.path for a in client.list_artifacts(parent, "report")}
    pngs = {"optimization_history", "parallel_coordinate", "param_importances", "rung_survival",
            "best_vs_trial_epochs"}
    assert names == {f"report/{n}.png" for n in pngs} | {"report/trials.json"}, names
    local = Path(client.download_artifacts(parent, "report", str(tmp_path)))
    for name in pngs:
        image = matplotlib.image.imread(local / f"{name}.png")
        assert (local / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and image.shape[0] > 100
    table = json.loads((local / "trials.json").read_text())
    assert len(table["data"]) == N_TRIALS and {"best_valid", "best_epoch"} <= set(table["columns"])
    mlflow.set_tracking_uri(tracking(root))
    mlflow.set_experiment("aae-likelihood_mnist")  # load_table looks in the active experiment
    loaded = mlflow.load_table("report/trials.json", run_ids=[parent])
    assert len(loaded) == N_TRIALS


PYFUNC_WITHOUT_AAE_TUNE = """
import sys
sys.modules["aae_tune"] = None  # importing aae_tune (or anything in it) now fails
import mlflow, numpy as np
mlflow.set_tracking_uri(sys.argv[1])
model = mlflow.pyfunc.load_model(sys.argv[2])
out = model.predict(np.load(sys.argv[3]))
print("SHAPE", np.asarray(out).shape)
"""


def test_logged_model_needs_only_public_packages(smoke_search, small_mnist, tmp_path):
    """The model's requirements name only packages an index serves, and mlflow.pyfunc loads and runs it in a
    fresh process where aae_tune cannot be imported."""
    root, _ = smoke_search
    client, _, trials = runs_by_role(root, "smoke")
    uri = client.get_run(trials[0].info.run_id).data.tags["aae_model_uri"]
    mlflow.set_tracking_uri(tracking(root))
    requirements = Path(mlflow.pyfunc.get_model_dependencies(uri)).read_text().split()
    assert {r.split("==")[0] for r in requirements} <= {"torch", "mlflow"}, requirements
    np.save(tmp_path / "x.npy", small_mnist.valid_x[:3])
    proc = subprocess.run([sys.executable, "-c", PYFUNC_WITHOUT_AAE_TUNE, tracking(root), uri,
                           str(tmp_path / "x.npy")], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert "SHAPE (3, 784)" in proc.stdout, proc.stderr[-3000:]


def test_trial_model_loads_and_reconstructs(smoke_search, small_mnist):
    root, _ = smoke_search
    client, _, trials = runs_by_role(root, "smoke")
    mlflow.set_tracking_uri(tracking(root))
    uri = client.get_run(trials[0].info.run_id).data.tags["aae_model_uri"]
    model = mlflow.pytorch.load_model(uri)  # the pickle-free exported reconstruction graph
    x = torch.as_tensor(small_mnist.valid_x[:4])
    recon = model(x)
    assert recon.shape == (4, 784) and torch.all((recon >= 0) & (recon <= 1))


def test_registered_model_samples_from_the_command_line(smoke_search, tmp_path):
    root, _ = smoke_search
    out = tmp_path / "grid.png"
    proc = subprocess.run(
        [sys.executable, "-m", "aae_tune.sample", "--model-uri", "models:/aae-likelihood_mnist/1", "--n", "16",
         "--out", str(out), "--tracking-uri", tracking(root)],
        capture_output=True, text=True, timeout=180,
    )
    assert proc.returncode == 0, proc.stderr
    assert out.stat().st_size > 0


def test_bad_space_file_one_clear_error_without_ray(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nparams:\n  prior.std: {distribution: loguniform, low: 0, high: 1}\n  cod_dim: 3\n")
    proc = subprocess.run(
        [sys.executable, "-c", "import sys, ray; from aae_tune.search.cli import main; code = main(sys.argv[1:]);"
         " print('RAY', ray.is_initialized()); sys.exit(code)", "--space", str(bad), "--storage-path",
         str(tmp_path / "r"), "--tracking-uri", tracking(tmp_path)],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    assert "RAY False" in proc.stdout
    assert "2 problem(s)" in proc.stderr and "a log range must be > 0" in proc.stderr and "cod_dim" in proc.stderr
    assert not (tmp_path / "mlflow.db").exists()  # nothing half-written


def test_interrupt_during_the_last_trial_then_resume(tmp_path):
    """Ctrl-C while the search's last trial trains (one trial at a time, 2 trials): the search is reported
    interrupted, not finished with its last trial 'stopped early'; resumed by name it trains that trial to the end
    from its checkpoint: one parent run, one run per trial, every epoch logged once."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    args = search_args(tmp_path, "interrupted", "--max-concurrent", "1", "--num-samples", "2", "--max-epochs", "4")
    log = tmp_path / "interrupted.log"
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "aae_tune.search", *args], cwd=tmp_path, env=env,
                                stdout=out, stderr=subprocess.STDOUT)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        time.sleep(1)
        if (tmp_path / "mlflow.db").exists():  # opened under the store's creation lock, like the search does
            _, _, trials = runs_by_role(tmp_path, "interrupted")
            if len(trials) == 2 and all(t.data.metrics for t in trials):
                break
    assert proc.poll() is None, f"search ended before it could be interrupted:\n{log.read_text()[-4000:]}"
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=120) == 130, log.read_text()[-4000:]
    assert "was interrupted" in log.read_text()
    _, parents, trials = runs_by_role(tmp_path, "interrupted")
    assert parents[0].info.status != "FINISHED"
    search_dir = str(tmp_path / "ray_results" / "interrupted")
    done_first = [t.data.tags[TAG_TRIAL] for t in trials if t.data.tags.get("stop_reason") == "completed"]
    assert rung_trials(search_dir) == set(done_first) and done_first  # ASHA's rungs, signed with Tune's state
    assert not any("early" in t.data.tags.get("stop_reason", "") for t in trials)
    with pytest.raises(ConfigError, match="that search has not finished .* --resume --name interrupted"):
        make_request("likelihood_mnist", train_best="interrupted", tracking_uri=tracking(tmp_path))
    resumed = subprocess.run([sys.executable, "-m", "aae_tune.search", *args, "--resume"], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    client, parents, trials = runs_by_role(tmp_path, "interrupted")
    assert len(parents) == 1 and len(trials) == 2 and parents[0].info.status == "FINISHED"
    # the same code both times: its version on the parent run, no note of a change
    assert parents[0].data.tags[TAG_CODE_VERSION] == code_version()[TAG_CODE_VERSION]
    assert TAG_CODE_RESUMED not in parents[0].data.tags and "started under code" not in resumed.stdout
    for trial in trials:
        steps = [m.step for m in client.get_metric_history(trial.info.run_id, "recon_loss")]
        assert steps == [1, 2, 3, 4], steps
        assert trial.data.tags["stop_reason"] == "completed"
    # the resumed ASHA started from the saved rungs (Tune rebuilds it empty) and recorded the second trial beside them
    assert rung_trials(search_dir) == {t.data.tags[TAG_TRIAL] for t in trials}


def rung_trials(search_dir: str) -> set[str]:
    """The trials recorded in ASHA's rungs in the search's newest signed state."""
    saved = load_verified(search_dir, signing_key()).read(RUNGS_FILE)
    return {trial for bracket in json.loads(saved or b"[]") for _, records in bracket for trial in records}


def test_random_search_honours_max_concurrent(tmp_path, ray_session):
    """Through the Python API: 4 random trials that would all fit at once (0.5 CPU each on 2 CPUs) run one after
    another with max_concurrent=1: the span between a trial's first and last epoch report (MLflow's timestamps)
    never overlaps another's. The result object carries the best trial and its runs."""
    result = run_search_api(
        "likelihood_mnist", smoke=True, num_samples=4, max_epochs=2, max_concurrent=1, cpus_per_trial=0.5,
        name="limited", storage_path=str(tmp_path / "ray_results"), tracking_uri=tracking(tmp_path), top_k=1,
        final_samples=500, overrides={"searcher.type": "random", "scheduler.type": "fifo"},
    )
    client, parents, trials = runs_by_role(tmp_path, "limited")
    assert result.parent_run_id == parents[0].info.run_id and not result.interrupted
    assert result.best.run_id in {t.info.run_id for t in trials} and "code_dim" in result.best.config
    assert result.best.test_metrics and result.registered_model == "models:/aae-likelihood_mnist/1"
    spans = sorted(
        (min(times), max(times)) for t in trials
        if (times := [m.timestamp for m in client.get_metric_history(t.info.run_id, "recon_loss")])
    )
    assert len(spans) == 4 and all(len({*s}) == 2 for s in spans)  # two epochs each, reported apart
    assert all(end < next_start for (_, end), (next_start, _) in zip(spans, spans[1:], strict=False)), spans


def test_pbt_copies_the_best_members_and_records_each_schedule(tmp_path, ray_session):
    """Population Based Training on real Ray: 3 members x 3 epochs, a perturbation after every epoch but the last.
    At epochs 1 and 2 the bottom member continues from the top member's checkpoint with mutated rates; every
    trial's MLflow history still holds epochs 1, 2, 3 once each, a copied member carries the config it trains with
    now, and the parent run holds Tune's exploit log."""
    result = run_search_api(
        "likelihood_mnist", smoke=True, num_samples=3, max_epochs=3, cpus_per_trial=1, seed=0, name="pbt",
        storage_path=str(tmp_path / "ray_results"), tracking_uri=tracking(tmp_path), top_k=1, final_samples=500,
        overrides={"searcher.type": "random", "scheduler.type": "pbt", "scheduler.perturbation_interval": 1},
    )
    client, parents, trials = runs_by_role(tmp_path, "pbt")
    assert not result.interrupted and len(trials) == 3
    log = client.download_artifacts(parents[0].info.run_id, "pbt/pbt_global.jsonl", str(tmp_path))
    exploits = [json.loads(line) for line in Path(log).read_text().splitlines()]
    assert len(exploits) == 2  # one bottom member per round (ceil(3 x 0.25)), rounds after epochs 1 and 2
    for trial in trials:
        history = client.get_metric_history(trial.info.run_id, "valid_parzen_ll")
        assert [m.step for m in history] == [1, 2, 3], (trial.info.run_name, history)
        assert len(client.get_metric_history(trial.info.run_id, "lr_adversarial")) == 3
        # a member that continued from another's checkpoint keeps its own running score: over the epochs it reported
        running = [max(m.value for m in history[:i]) for i in range(1, 4)]
        assert [m.value for m in client.get_metric_history(trial.info.run_id, "best_valid_parzen_ll")] == running
    copied = [t for t in trials if "aae_config_now" in t.data.tags]
    assert copied, "no trial run records a mutated config"
    for trial in copied:
        now = json.loads(trial.data.tags["aae_config_now"])
        assert any(str(now[k]) != trial.data.params[k] for k in ("optim.reconstruction.lr", "optim.adversarial.lr",
                                                                  "code_dim", "prior.std"))


def test_train_best_retrains_the_top_configurations_longer(smoke_search):
    """Search, then train long: the 2 best trials of the smoke search (by validation score) run again for 3
    epochs in a new search of the same experiment, linked to the source, each scored with the test protocol."""
    root, _ = smoke_search
    client, _, source_trials = runs_by_role(root, "smoke")
    best_valid = {t.data.tags["aae_trial_id"]: max(m.value for m in client.get_metric_history(
        t.info.run_id, "valid_parzen_ll")) for t in source_trials}
    top2 = sorted(best_valid, key=best_valid.get, reverse=True)[:2]
    result = run_search_api(
        "likelihood_mnist", train_best="smoke", num_samples=2, max_epochs=3, smoke=True, seed=0, name="smoke-long",
        storage_path=str(root / "ray_results"), tracking_uri=tracking(root), final_samples=500,
    )
    client, parents, trials = runs_by_role(root, "smoke-long")
    tags = parents[0].data.tags
    assert tags["aae_trained_from"] == "smoke" and json.loads(tags["aae_source_trials"]) == top2
    assert "Trains the best 2 configuration(s) of search 'smoke'" in tags["mlflow.note.content"]
    by_source = {t.data.tags["aae_trial_id"]: t for t in source_trials}
    searched = [k for k in by_source[top2[0]].data.params if k in result.best.config]
    for new, old in zip(sorted(trials, key=lambda t: t.data.tags["aae_trial_id"]), top2, strict=True):
        assert {k: new.data.params[k] for k in searched} == {k: by_source[old].data.params[k] for k in searched}
        assert [m.step for m in client.get_metric_history(new.info.run_id, "valid_parzen_ll")] == [1, 2, 3]
    assert all(row.test_metrics for row in result.rows)  # --top-k defaults to every long run
    with pytest.raises(ConfigError, match=r"no search of that name .*searches there: .*smoke"):
        make_request("likelihood_mnist", train_best="smok", tracking_uri=tracking(root))
