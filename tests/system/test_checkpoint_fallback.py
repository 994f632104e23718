"""A truncated latest checkpoint, really injected: the trial's worker is SIGKILLed, the newer checkpoints in the
storage folder are cut off half-way, and Tune restores the trial from one of them. The trial falls back to its
intact earlier checkpoint and finishes in the same MLflow run, each epoch logged once (docs/4-reliability.md)."""

import os
import re
import signal
import subprocess
import time
from pathlib import Path

from aae_tune.names import CHECKPOINT_FILE
from tests.helpers import epochs_logged, kill_group, search_runs, start, wait_for
from tests.system.test_faults import search_cmd, tracking

NAME, EPOCHS = "truncated", 5


def checkpoint_dirs(tmp_path: Path) -> list[Path]:
    """The trial's checkpoint folders in the storage path, oldest first (one trial: one trial folder)."""
    return sorted((tmp_path / "ray_results" / NAME).glob("*/checkpoint_[0-9]*"))


def worker_pid(proc: subprocess.Popen, tmp_path: Path) -> int:
    """The trial's worker process, as the MLflow callback records it with the first logged epoch."""
    def recorded() -> int | None:
        client, _, trials = search_runs(tracking(tmp_path), NAME)
        run_id = trials[0].info.run_id if trials else None
        return run_id and epochs_logged(client, run_id) and int(client.get_run(run_id).data.tags["ray_pid"])

    return int(wait_for(recorded, proc, what="the first epoch"))


def wait_for_epochs(proc: subprocess.Popen, tmp_path: Path, count: int, timeout: float = 300) -> None:
    """Until the driver has logged ``count`` epochs, polled finely (a smoke epoch takes about a second): the driver
    has then registered the trial's checkpoint of epoch ``count`` (and applied its retention to the older ones)."""
    deadline = time.time() + timeout
    while True:
        assert proc.poll() is None, f"search exited ({proc.returncode}) before {count} epochs"
        assert time.time() < deadline, f"timed out waiting for {count} epochs"
        client, _, trials = search_runs(tracking(tmp_path), NAME)
        if trials and len(epochs_logged(client, trials[0].info.run_id)) >= count:
            return
        time.sleep(0.1)


def index(checkpoint_dir: Path) -> int:
    return int(checkpoint_dir.name.rsplit("_", 1)[1])


def truncate(checkpoint_dir: Path) -> None:
    path = checkpoint_dir / CHECKPOINT_FILE
    if path.is_file():  # a folder whose copy the kill interrupted has none: unreadable as it is
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def test_truncated_latest_checkpoint_falls_back_to_the_earlier_one(tmp_path):
    cmd = search_cmd(tmp_path, NAME, "--num-samples", "1", "--max-epochs", str(EPOCHS), "--max-failures", "2",
                     "--set", "scheduler.type=fifo")
    proc = start(cmd, tmp_path)
    try:
        pid = worker_pid(proc, tmp_path)
        # Epoch 3 logged: its checkpoint (checkpoint_000002) is Tune's latest. Tune's retention (2 kept, by score)
        # may have removed an older one by then; a folder past it is one the worker wrote but Tune never took.
        wait_for_epochs(proc, tmp_path, 3)
        os.kill(pid, signal.SIGKILL)  # first: a dead worker writes nothing more
        bad = [folder for folder in checkpoint_dirs(tmp_path) if index(folder) >= 2]
        for folder in bad:
            truncate(folder)
        out, _ = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            kill_group(proc)
    assert proc.returncode == 0, out[-3000:]
    fallback = [line for line in out.splitlines() if "resuming from the earlier checkpoint" in line]
    assert len(fallback) == 1, out[-3000:]  # one warning, naming the bad checkpoint(s) and the one used
    assert f"{bad[0]} (" in fallback[0], fallback
    used = re.search(r"earlier checkpoint (\S+) \(epoch (\d+)\)", fallback[0])
    assert used and index(Path(used.group(1))) < 2 and int(used.group(2)) == index(Path(used.group(1))) + 1
    client, parents, trials = search_runs(tracking(tmp_path), NAME)
    assert len(parents) == 1 and len(trials) == 1  # the same run continued
    tags = client.get_run(trials[0].info.run_id).data.tags
    assert tags["recovered_failures"] == "1" and int(tags["ray_pid"]) != pid
    assert tags["stop_reason"] == "completed" and tags["epochs_trained"] == str(EPOCHS)  # reached the last epoch
    assert epochs_logged(client, trials[0].info.run_id) == list(range(1, EPOCHS + 1))  # re-trained epochs once
