"""Faults really injected: SIGKILL of a trial worker and of the driver, a diverging trial, a full disk."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from aae_tune.errors import CheckpointError
from tests.helpers import (
    REPO_ROOT,
    epochs_logged,
    kill_after_epochs,
    kill_group,
    mounted_tmpfs,
    resume_cleanly,
    search_runs,
    start,
    wait_for,
)


def tracking(root: Path) -> str:
    return f"sqlite:///{root}/mlflow.db"


def search_cmd(root: Path, name: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "aae_tune.search", "--space", "likelihood_mnist", "--smoke", "--name", name,
            "--storage-path", str(root / "ray_results"), "--tracking-uri", tracking(root), "--final-samples", "300",
            "--top-k", "1", "--seed", "0", *extra]


def trial_runs(root: Path, name: str) -> tuple[MlflowClient, list, list]:
    return search_runs(tracking(root), name)


def test_trial_worker_sigkill_resumes_from_checkpoint_in_the_same_run(tmp_path):
    proc = start(search_cmd(tmp_path, "killworker", "--num-samples", "1", "--max-epochs", "8"), tmp_path)
    try:
        def first_epoch_logged():
            client, _, trials = trial_runs(tmp_path, "killworker")
            return trials and epochs_logged(client, trials[0].info.run_id) and trials[0]

        run = wait_for(first_epoch_logged, proc, what="the first epoch")
        time.sleep(0.3)  # now inside epoch 2 (a smoke epoch takes about a second)
        pid = int(MlflowClient(tracking(tmp_path)).get_run(run.info.run_id).data.tags["ray_pid"])
        os.kill(pid, signal.SIGKILL)
        out, _ = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            kill_group(proc)
    assert proc.returncode == 0, out[-3000:]
    client, parents, trials = trial_runs(tmp_path, "killworker")
    assert len(parents) == 1 and len(trials) == 1  # same run continued, no second run
    tags = client.get_run(trials[0].info.run_id).data.tags
    assert tags["recovered_failures"] == "1" and int(tags["ray_pid"]) != pid
    assert epochs_logged(client, trials[0].info.run_id) == list(range(1, 9))  # no gap, no repeat


def test_driver_sigkill_then_resume_finishes_with_one_run_per_trial(tmp_path):
    cmd = search_cmd(tmp_path, "killdriver", "--num-samples", "2", "--max-epochs", "3", "--max-concurrent", "1")
    kill_after_epochs(start(cmd, tmp_path), tracking(tmp_path), "killdriver", epochs=2)
    resumed = resume_cleanly(cmd, tmp_path, tracking(tmp_path), "killdriver", trials=2, max_epochs=3)
    assert "registered model: models:/aae-likelihood_mnist/" in resumed.stdout


def test_diverging_trial_is_stopped_with_a_reason_and_the_search_goes_on(tmp_path):
    lr_grid = "params.optim.reconstruction.lr={distribution: grid, values: [0.01, 1e6]}"  # one sane, one not
    proc = subprocess.run(
        search_cmd(tmp_path, "diverge", "--num-samples", "1", "--max-epochs", "2", "--set", lr_grid,
                   "--set", "searcher.type=random", "--set", "smoke.optim.optimizer=sgd"),  # SGD blows up at 1e6
        cwd=tmp_path, capture_output=True, text=True, timeout=900, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    client, _, trials = trial_runs(tmp_path, "diverge")
    reasons = {t.info.run_id: client.get_run(t.info.run_id).data.tags.get("stop_reason", "") for t in trials}
    diverged = [r for r, reason in reasons.items() if reason.startswith("diverged:")]
    assert diverged and len(diverged) < len(trials), reasons
    assert all(client.get_run(r).info.status == "FAILED" for r in diverged)
    assert "non-finite" in reasons[diverged[0]]
    assert "diverged: trial" in proc.stdout  # the summary names it
    errors = list((tmp_path / "ray_results" / "diverge").glob("*/error.txt"))
    assert errors and "TrainingDiverged" in errors[0].read_text()  # Tune's error state


@pytest.fixture
def tiny_disk(tmp_path):
    """A real 16 MiB filesystem: writes past it fail with ENOSPC."""
    with mounted_tmpfs(tmp_path / "disk", "16m") as mount:
        yield mount


def test_full_disk_is_a_clear_error_and_keeps_the_previous_checkpoint(tiny_disk, small_mnist, tiny_config):
    from aae_tune.names import CHECKPOINT_FILE
    from aae_tune.train import Trainer, train

    trainer = train(tiny_config.replace(epochs=1), small_mnist, checkpoint_dir=tiny_disk)
    before = (tiny_disk / CHECKPOINT_FILE).read_bytes()
    free = os.statvfs(tiny_disk).f_bavail * os.statvfs(tiny_disk).f_frsize
    (tiny_disk / "filler").write_bytes(b"\0" * (free - len(before) // 2))  # leave half a checkpoint free
    trainer.train_epoch()
    with pytest.raises(CheckpointError, match="cannot write checkpoint .*No space left.*previous checkpoint"):
        trainer.save(tiny_disk)
    assert (tiny_disk / CHECKPOINT_FILE).read_bytes() == before
    assert sorted(p.name for p in tiny_disk.iterdir()) == sorted([CHECKPOINT_FILE, "filler"])  # no temp file left
    fresh = Trainer(tiny_config, small_mnist)
    fresh.load(tiny_disk)
    assert fresh.epoch == 1
