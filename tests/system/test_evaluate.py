"""Ray-parallel Parzen evaluation, the sample/evaluate CLIs and model URIs: real Ray, real MLflow, real MNIST."""

from __future__ import annotations

import os
import re
import struct
import subprocess
import sys
import time
from itertools import accumulate
from pathlib import Path

import numpy as np
import pytest
import ray
import torch

from aae_tune import sample
from aae_tune.cluster.ray_session import init_local_ray
from aae_tune.config import SMOKE_OVERRIDES, ExperimentConfig
from aae_tune.errors import ModelURIError
from aae_tune.evaluate import cli as evaluate
from aae_tune.evaluate.parallel import generate_shard, parallel_parzen, single_process_parzen
from aae_tune.evaluate.parzen import parzen_log_likelihood
from aae_tune.evaluate.scores import SIGMA_SELECTION_POINTS, in_memory_parzen
from aae_tune.model.io import load_model_from_uri, save_model_files
from aae_tune.train import train
from tests.helpers import REPO_ROOT, SHARED_MNIST

TOL = 1e-3  # nats: parallel vs single process differ only by float32 rounding of the blocked GEMMs


@pytest.fixture(scope="module")
def ray_cluster():
    """A 2-CPU local Ray bound to loopback; shut down at module end only if this fixture started it."""
    started = not ray.is_initialized()
    if started:
        init_local_ray(num_cpus=2, include_dashboard=False, logging_level="warning")
    yield
    if started:
        ray.shutdown()


@pytest.fixture(scope="module")
def model(small_mnist):
    # tiny_config is function-scoped; the same smoke settings, built once for the module.
    # One epoch: the comparisons below need a model, not a good one.
    cfg = ExperimentConfig.from_dict({**SMOKE_OVERRIDES, "epochs": 1, "code_dim": 2})
    return train(cfg, small_mnist, device="cpu").model.eval()


@pytest.fixture(scope="module")
def model_dir(model, tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("model")
    save_model_files(model, directory)
    return directory


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    # cwd = repo root: the subprocess (and its Ray workers) import aae_tune from there; the env carries
    # AAE_TUNE_DATA_DIR (set by conftest) to the real MNIST files.
    return subprocess.run([sys.executable, "-m", *args], cwd=REPO_ROOT, env=dict(os.environ), capture_output=True,
                          text=True, timeout=timeout)


def assert_same_result(a, b, tol: float = TOL) -> None:
    assert a.sigma == b.sigma
    np.testing.assert_array_equal(a.sigmas, b.sigmas)
    assert a.n_samples == b.n_samples
    assert abs(a.mean - b.mean) < tol
    assert abs(a.stderr - b.stderr) < tol
    np.testing.assert_allclose(a.valid_by_sigma, b.valid_by_sigma, rtol=0, atol=tol)
    assert a.test_log_likelihoods.shape == b.test_log_likelihoods.shape
    np.testing.assert_allclose(a.test_log_likelihoods, b.test_log_likelihoods, rtol=0, atol=tol)


# ------------------------------------------------------------------------------------------------ library
def test_parallel_needs_ray(model, small_mnist):
    if ray.is_initialized():
        pytest.skip("Ray already running in this process")
    with pytest.raises(RuntimeError, match="ray.init"):
        parallel_parzen(model, small_mnist.valid_x[:10], small_mnist.test_x[:10], n_samples=10)


def test_shards_are_seeded_by_index(model):
    a = generate_shard(model, 0, 3, 50)
    assert a.shape == (50, 784)
    assert torch.equal(a, generate_shard(model, 0, 3, 50))  # reproducible
    assert not torch.equal(a, generate_shard(model, 0, 4, 50))  # next shard: a new stream
    assert not torch.equal(a, generate_shard(model, 1, 3, 50))  # other seed: a new stream


def test_parallel_matches_single_process_and_ignores_workers(ray_cluster, model, small_mnist):
    valid, test = small_mnist.valid_x[:200], small_mnist.test_x[:300]
    kw = {"n_samples": 3000, "seed": 0, "shard_size": 700}  # 4 x 700 + a short 200-sample shard
    ref = single_process_parzen(model, valid, test, **kw)
    two = parallel_parzen(model, valid, test, workers=2, **kw)
    one = parallel_parzen(model, valid, test, workers=1, **kw)
    assert np.isfinite(ref.mean) and ref.test_log_likelihoods.shape == (300,)
    assert_same_result(two, ref)
    assert_same_result(one, ref)
    assert_same_result(one, two)


def test_test_points_are_split_when_shards_are_few(ray_cluster, model, small_mnist):
    # One shard and 2 workers: the 300 test points go to 2 tasks that each regenerate the same shard.
    valid, test = small_mnist.valid_x[:200], small_mnist.test_x[:300]
    sigmas = np.array([0.15, 0.2, 0.3])
    ref = single_process_parzen(model, valid, test, n_samples=1000, seed=3, shard_size=10_000, sigmas=sigmas)
    par = parallel_parzen(model, valid, test, n_samples=1000, seed=3, workers=2, sigmas=sigmas)
    assert_same_result(par, ref)


TASKS = 6


@ray.remote(num_cpus=0)
class _Arrivals:
    def __init__(self) -> None:
        self.started = 0

    def arrive(self) -> None:
        self.started += 1

    def count(self) -> int:
        return self.started


@ray.remote(num_cpus=0.5)
def _interval(index: int, arrivals, wave: int) -> dict:
    """Holds its CPU slot until the rest of its wave of ``wave`` tasks has started (30 s at most), so tasks that run
    at once overlap however slowly a loaded machine starts their workers."""
    start = time.time()
    ray.get(arrivals.arrive.remote())
    wanted = min(TASKS, (index // wave + 1) * wave)
    while time.time() < start + 30 and ray.get(arrivals.count.remote()) < wanted:
        time.sleep(0.05)
    time.sleep(0.05)
    return {"index": index, "span": (start, time.time())}


@pytest.mark.parametrize("limit", [1, 2])
def test_workers_is_how_many_tasks_run_at_once(ray_cluster, limit):
    """--workers 1 on a cluster with room for 4 such tasks runs them one after another (it used to only set the task
    count, so a '1 worker' timing ran on every CPU); results come back in submission order."""
    from aae_tune.evaluate.parallel import _at_most

    seen = []
    arrivals = _Arrivals.remote()
    outs = _at_most(limit, [(i, arrivals, limit) for i in range(TASKS)], _interval.remote, on_done=seen.append)
    assert [o["index"] for o in outs] == list(range(TASKS)) and len(seen) == TASKS
    events = sorted([(o["span"][0], 1) for o in outs] + [(o["span"][1], -1) for o in outs])  # an end sorts first
    assert max(accumulate(step for _, step in events)) == limit  # the most tasks running at one moment


def test_parallel_rejects_bad_arguments(ray_cluster, model, small_mnist):
    valid, test = small_mnist.valid_x[:20], small_mnist.test_x[:20]
    with pytest.raises(ValueError, match="n_samples"):
        parallel_parzen(model, valid, test, n_samples=0)
    with pytest.raises(ValueError, match="workers"):
        parallel_parzen(model, valid, test, n_samples=10, workers=0)
    with pytest.raises(ValueError, match="test must have shape"):
        parallel_parzen(model, valid, test[:, :100], n_samples=10)


# ---------------------------------------------------------------------------------------------------- CLIs
def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", head[16:24])  # IHDR width, height


def test_sample_cli_writes_grid(model_dir, tmp_path):
    out = tmp_path / "grid.png"
    proc = run_cli("aae_tune.sample", "--model-uri", str(model_dir), "--n", "16", "--out", str(out), "--seed", "1")
    assert proc.returncode == 0, proc.stderr
    assert str(out) in proc.stdout
    assert png_size(out) == (4 * 30 + 2, 4 * 30 + 2)  # 4 x 4 tiles of 28 px + 2 px padding


def test_evaluate_cli_end_to_end(model, model_dir, small_mnist):
    proc = run_cli("aae_tune.evaluate", "--model-uri", str(model_dir), "--num-samples", "2000", "--workers", "2",
                   "--shard-size", "700", "--valid-points", "200", "--test-points", "300")
    assert proc.returncode == 0, proc.stderr
    match = re.search(r"test LL: (-?[\d.]+) ± ([\d.]+)", proc.stdout)
    assert match, proc.stdout
    assert "sigma:" in proc.stdout and "workers: 2" in proc.stdout and "seconds:" in proc.stdout
    # load_mnist's validation split starts with the same images as small_mnist's: the same protocol in-process
    ref = single_process_parzen(model, small_mnist.valid_x[:200], small_mnist.test_x[:300], n_samples=2000, seed=0,
                                shard_size=700)
    assert abs(float(match.group(1)) - ref.mean) < 0.01
    assert abs(float(match.group(2)) - ref.stderr) < 0.01


def test_evaluate_cli_bad_uri_exits_2():
    proc = run_cli("aae_tune.evaluate", "--model-uri", "/no/such/model/dir", timeout=60)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "error: /no/such/model/dir: no such directory (and not an MLflow URI such as models:/name/1)"
    ]


@pytest.mark.parametrize(
    ("module", "args", "message"),
    [
        (evaluate, ["--model-uri", "nosuchscheme://bucket/model"], "cannot download model nosuchscheme://"),
        (evaluate, ["--model-uri", str(REPO_ROOT / "tests"), "--num-samples", "5"], "not an aae_tune model"),
        (evaluate, ["--model-uri", ".", "--num-samples", "0"], "--num-samples must be >= 1, got 0"),
        (evaluate, ["--model-uri", ".", "--workers", "0"], "--workers must be >= 1, got 0"),
        (evaluate, ["--model-uri", ".", "--shard-size", "-5"], "--shard-size must be >= 1, got -5"),
        (sample, ["--model-uri", "/no/such/dir", "--out", "g.png"], "no such directory"),
        (sample, ["--model-uri", ".", "--out", "g.png", "--n", "0"], "--n must be >= 1, got 0"),
    ],
)
def test_cli_bad_input_exits_2_in_process(module, args, message, capsys):
    # In-process (each check runs before Ray or any model is touched); the subprocess case above covers the exit.
    assert module.main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err


# -------------------------------------------------------------------------------------------------- MLflow
def test_mlflow_round_trip(model, model_dir, tmp_path):
    from mlflow.tracking import MlflowClient

    tracking_uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    exp = client.create_experiment("eval-test", artifact_location=(tmp_path / "artifacts").as_uri())
    run_id = client.create_run(exp).info.run_id
    client.log_artifacts(run_id, str(model_dir), "model_files")
    client.create_registered_model("aae-eval-test")
    client.create_model_version("aae-eval-test", f"runs:/{run_id}/model_files", run_id=run_id)

    expected = model.state_dict()
    for uri in (f"runs:/{run_id}/model_files", "models:/aae-eval-test/1"):
        loaded = load_model_from_uri(uri, tracking_uri=tracking_uri, device="cpu")
        got = loaded.state_dict()
        assert got.keys() == expected.keys()
        assert all(torch.equal(got[k], expected[k]) for k in expected), uri
        assert loaded.cfg == model.cfg and not loaded.training

    with pytest.raises(ModelURIError, match="cannot download model"):
        load_model_from_uri(f"runs:/{run_id}/not_there", tracking_uri=tracking_uri)


def test_parzen_ceiling_benchmark_scores_samples_reconstructions_and_data(model, model_dir, mnist):
    """benchmarks/parzen_ceiling.py: the protocol on the model's samples and on real images as computed here; the
    same model three times gives three equal rows (seeded), and the per-epoch estimate's column is filled."""
    n = 300
    proc = subprocess.run([sys.executable, str(REPO_ROOT / "benchmarks" / "parzen_ceiling.py"), "--model-uri",
                           *[str(model_dir)] * 3, "--n", str(n), "--estimate-samples", "200", "--estimate-seeds", "2",
                           "--data-dir", str(SHARED_MNIST)], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [line for line in proc.stdout.splitlines() if line.startswith(f"| {model_dir} |")]
    assert len(rows) == 3 and len(set(rows)) == 1, proc.stdout
    _, protocol_valid, samples, recon, data, estimate = rows[0].rstrip(" |").split(" | ")
    valid, test = mnist.valid_x[:SIGMA_SELECTION_POINTS], mnist.test_x
    ours = in_memory_parzen(model, valid, test, n, 0)
    assert float(samples) == pytest.approx(ours.mean, abs=0.01)
    assert float(protocol_valid) == pytest.approx(ours.valid_by_sigma.max(), abs=0.01)
    assert float(data) == pytest.approx(parzen_log_likelihood(mnist.train_x[:n], valid, test).mean, abs=0.01)
    assert np.isfinite(float(recon)) and " ± " in estimate
    assert "Spearman of the 200-sample estimate" in proc.stdout
