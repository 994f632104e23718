"""A Ray worker node disappears mid-search (SIGKILL of the whole node) on the local multi-node cluster: its trial
is rescheduled on a remaining node from its checkpoint, and its MLflow run carries on."""

import os
import signal
import subprocess
import sys
import time

import pytest
from mlflow.tracking import MlflowClient

from aae_tune.cluster import local as lc
from tests.helpers import search_runs

N_TRIALS, EPOCHS, SEARCH = 3, 12, "node-loss"


@pytest.fixture
def cluster(tmp_path):
    state_dir = tmp_path / "cluster"
    state_dir.mkdir()
    state = None
    try:
        state = lc.up(state_dir)
        yield state
    finally:  # also on failure: nothing of this cluster may outlive the test
        lc.down(state_dir)
        if state is not None:
            left = {p.pid for p in state.procs if lc.alive(p.pid)} | set(lc.marked_pids(state.marker))
            assert not left, f"processes of the local cluster still running: {sorted(left)}"


def trial_runs(client: MlflowClient) -> list:
    return search_runs(client.tracking_uri, SEARCH)[2]


def test_lost_worker_node_trials_move_to_the_remaining_nodes(cluster, tmp_path):
    client = MlflowClient(cluster.tracking_uri)
    search = subprocess.Popen(
        [sys.executable, "-m", "aae_tune.search", "--space", "likelihood_mnist", "--smoke", "--name", SEARCH,
         "--num-samples", str(N_TRIALS), "--max-epochs", str(EPOCHS), "--max-concurrent", str(N_TRIALS),
         "--cpus-per-trial", "1", "--final-samples", "300", "--top-k", "1", "--seed", "0",
         "--address", cluster.ray_address, "--tracking-uri", cluster.tracking_uri,
         "--storage-path", str(tmp_path / "ray_results"), "--set", "scheduler.type=fifo"],
        cwd=tmp_path, env={**os.environ, "RAY_AUTH_MODE": "token"}, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )
    try:
        deadline = time.time() + 300
        while time.time() < deadline:  # every trial placed (one per 1-CPU node) and past its first epoch
            assert search.poll() is None, search.stdout.read()[-4000:]
            runs = trial_runs(client)
            if len(runs) == N_TRIALS and all("ray_node_id" in r.data.tags for r in runs):
                break
            time.sleep(1)
        worker = next(p for p in cluster.procs if p.role == "worker_a")
        os.killpg(worker.pid, signal.SIGKILL)  # the node's `ray start`, raylet, object store and trial worker
        out, _ = search.communicate(timeout=900)
    finally:
        if search.poll() is None:
            os.killpg(search.pid, signal.SIGKILL)
    assert search.returncode == 0, out[-4000:]
    runs = trial_runs(client)
    assert len(runs) == N_TRIALS
    moved = [r for r in runs if len(r.data.tags.get("ray_nodes", "").split(",")) > 1]
    assert len(moved) == 1, [r.data.tags.get("ray_nodes") for r in runs]
    for run in runs:
        assert client.get_run(run.info.run_id).info.status == "FINISHED"
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "epoch")]
        assert steps == list(range(1, EPOCHS + 1)), steps  # resumed from its checkpoint: each epoch once
