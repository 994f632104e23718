"""A real multi-node run on one machine: `python -m aae_tune.cluster local up` (Ray head + 2 worker nodes as
separate `ray start` processes, an `mlflow server`), a smoke search with --address and --tracking-uri http://...,
then `down` - which must leave no process of the cluster behind, also when a test fails."""

import os
import re
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from aae_tune.cluster import local as lc
from tests.helpers import LIKELIHOOD_FIGURES

N_TRIALS = 3
SEARCH = "cluster-smoke"


def cli(state_dir: Path, action: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "aae_tune.cluster", "local", action, "--state-dir", str(state_dir)],
                          capture_output=True, text=True, timeout=timeout)


def leftovers(state: lc.ClusterState) -> list[int]:
    recorded = [p.pid for p in state.procs] + state.pids
    return sorted({p for p in recorded if lc.alive(p)} | set(lc.marked_pids(state.marker)))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    state_dir = tmp_path_factory.mktemp("local_cluster")
    try:
        up = cli(state_dir, "up")
        state = lc.ClusterState.load(state_dir)
        assert up.returncode == 0, up.stdout + up.stderr
        yield state
    finally:  # runs on failures too: nothing of this cluster may outlive the test
        lc.down(state_dir)
        if "state" in locals() and state is not None:
            left = leftovers(state)
            assert not left, f"processes of the local cluster still running: {left}"


@pytest.fixture(scope="module")
def search_run(cluster, tmp_path_factory):
    root = tmp_path_factory.mktemp("cluster_search")
    env = {**os.environ, "RAY_AUTH_MODE": "token"}  # Ray requires it to join a token-protected cluster
    proc = subprocess.run(
        [sys.executable, "-m", "aae_tune.search", "--space", "likelihood_mnist", "--smoke", "--name", SEARCH,
         "--num-samples", str(N_TRIALS), "--max-epochs", "2", "--max-concurrent", str(N_TRIALS),
         "--cpus-per-trial", "1", "--final-samples", "500", "--top-k", "1", "--seed", "0",
         "--address", cluster.ray_address, "--tracking-uri", cluster.tracking_uri,
         "--storage-path", str(root / "ray_results")],
        cwd=root, env=env, capture_output=True, text=True, timeout=420,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    client = MlflowClient(cluster.tracking_uri)
    experiment = client.get_experiment_by_name("aae-likelihood_mnist")
    runs = client.search_runs([experiment.experiment_id], f"tags.aae_search = '{SEARCH}'")
    return client, experiment, runs


def cluster_node_ids(state: lc.ClusterState) -> set[str]:
    return set(re.findall(r"^Node: ([0-9a-f]+)", lc.ray_status(state.ray_address, state.marker) or "", re.M))


def test_status_shows_three_nodes_and_the_server(cluster):
    out = cli(cluster.state_dir, "status", timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "3 active nodes" in out.stdout and cluster.tracking_uri in out.stdout
    for resource in ("head", "worker_a", "worker_b"):
        assert re.search(rf"0\.0/1\.0 {resource}\b", out.stdout)
    assert "listens on 127.0.0.1" in out.stdout


def test_trials_ran_on_more_than_one_node(cluster, search_run):
    _, _, runs = search_run
    trials = [r for r in runs if r.data.tags["aae_role"] == "trial"]
    assert len(trials) == N_TRIALS
    nodes = {r.data.tags["ray_node_id"] for r in trials}
    assert len(nodes) > 1, nodes
    assert nodes <= cluster_node_ids(cluster)  # nodes of this cluster, not some other Ray


def test_every_trial_run_and_model_reached_the_server(cluster, search_run):
    client, experiment, runs = search_run
    parents = [r for r in runs if r.data.tags["aae_role"] == "parent"]
    trials = [r for r in runs if r.data.tags["aae_role"] == "trial"]
    assert len(parents) == 1 and {t.data.tags["mlflow.parentRunId"] for t in trials} == {parents[0].info.run_id}
    store = Path(cluster.state_dir) / "mlflow" / "artifacts"
    mlflow.set_tracking_uri(cluster.tracking_uri)
    for trial in trials:
        assert trial.info.status == "FINISHED"
        assert client.get_metric_history(trial.info.run_id, "valid_parzen_ll")
        figures = {a.path for a in client.list_artifacts(trial.info.run_id, "figures")}
        assert figures >= LIKELIHOOD_FIGURES
        # Uploaded through the server into its artifact store, not written by the client somewhere local.
        assert list(store.rglob(f"{trial.info.run_id}/**/samples.png"))
        model = mlflow.pytorch.load_model(trial.data.tags["aae_model_uri"])  # downloaded from the server
        assert model is not None
    assert client.get_registered_model("aae-likelihood_mnist").latest_versions


def test_parzen_evaluator_used_several_nodes(cluster, search_run):
    _, _, runs = search_run
    evaluated = [r for r in runs if "test_parzen_ll" in r.data.metrics]
    assert len(evaluated) == 1  # --top-k 1
    nodes = set(evaluated[0].data.tags["parzen_ray_nodes"].split(","))
    assert len(nodes) > 1, nodes
    assert nodes <= cluster_node_ids(cluster)


def test_down_stops_every_process(cluster):
    out = cli(cluster.state_dir, "down", timeout=180)
    assert out.returncode == 0, out.stdout + out.stderr
    assert leftovers(cluster) == []
    assert not Path(cluster.ray_temp_dir).exists()
    assert lc.ClusterState.load(cluster.state_dir) is None
