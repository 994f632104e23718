"""Faults really injected: SIGKILL of a trial worker and of the driver, a diverging trial, a full disk."""

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from aae_tune.errors import CheckpointError
from tests.helpers import REPO_ROOT, search_runs


def tracking(root: Path) -> str:
    return f"sqlite:///{root}/mlflow.db"


def search_cmd(root: Path, name: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "aae_tune.search", "--space", "likelihood_mnist", "--smoke", "--name", name,
            "--storage-path", str(root / "ray_results"), "--tracking-uri", tracking(root), "--final-samples", "300",
            "--top-k", "1", "--seed", "0", *extra]


def trial_runs(root: Path, name: str) -> tuple[MlflowClient, list, list]:
    return search_runs(tracking(root), name)


def wait_for(predicate, proc: subprocess.Popen, timeout: float = 300, what: str = "condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            output = proc.stdout.read() if proc.stdout else ""
            raise AssertionError(f"search exited ({proc.returncode}) before {what}:\n{output[-3000:]}")
        try:
            value = predicate()
        except Exception:  # noqa: BLE001 - the store may be mid-creation
            value = None
        if value:
            return value
        time.sleep(1)
    raise AssertionError(f"timed out waiting for {what}")


def start(cmd: list[str], cwd: Path) -> subprocess.Popen:
    # Own process group: the driver and the local Ray it starts can be killed together, leaving nothing behind.
    return subprocess.Popen(cmd, cwd=cwd, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def kill_group(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)


def epochs_logged(client: MlflowClient, run_id: str) -> list[int]:
    return [m.step for m in client.get_metric_history(run_id, "epoch")]


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
    proc = start(cmd, tmp_path)
    try:
        def two_epochs_logged():
            client, _, trials = trial_runs(tmp_path, "killdriver")
            return any(len(epochs_logged(client, t.info.run_id)) >= 2 for t in trials)

        wait_for(two_epochs_logged, proc, what="two epochs")
    finally:
        kill_group(proc)  # the driver and its local Ray, at once
    resumed = subprocess.run([*cmd, "--resume"], cwd=tmp_path, capture_output=True, text=True, timeout=900,
                             env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    client, parents, trials = trial_runs(tmp_path, "killdriver")
    assert len(parents) == 1 and len(trials) == 2
    for trial in trials:
        steps = epochs_logged(client, trial.info.run_id)
        assert steps == sorted(set(steps)) and steps[-1] <= 3, steps
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
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


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
