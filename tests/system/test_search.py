"""The search service end to end: real Ray Tune, real MLflow store, real MNIST, smoke budget."""

import os
import signal
import subprocess
import sys
import time

import mlflow
import pytest
import torch

from aae_tune.search import cli as search
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


def test_resume_after_interrupt_adds_no_duplicate_runs(tmp_path):
    """Ctrl-C a running search, resume it by name: one parent run, one run per trial, no repeated epochs."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    args = search_args(tmp_path, "interrupted", "--max-concurrent", "1")
    log = tmp_path / "interrupted.log"
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "aae_tune.search", *args], cwd=tmp_path, env=env,
                                stdout=out, stderr=subprocess.STDOUT)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        time.sleep(2)
        if (tmp_path / "mlflow.db").exists():  # opened under the store's creation lock, like the search does
            _, _, trials = runs_by_role(tmp_path, "interrupted")
            if any(t.data.metrics for t in trials):
                break
    assert proc.poll() is None, f"search ended before it could be interrupted:\n{log.read_text()[-4000:]}"
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=120) in (130, 0, 1, -2)
    resumed = subprocess.run([sys.executable, "-m", "aae_tune.search", *args, "--resume"], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    client, parents, trials = runs_by_role(tmp_path, "interrupted")
    assert len(parents) == 1 and len(trials) == N_TRIALS
    for trial in trials:
        steps = [m.step for m in client.get_metric_history(trial.info.run_id, "recon_loss")]
        assert len(steps) == len(set(steps)), steps
