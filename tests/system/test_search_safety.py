"""A search is never lost, corrupted or hijacked, on real drivers, real signals and a real small filesystem: a
planted pickle never runs, a second driver is refused, a finished search stays finished, SIGTERM stops cleanly and
a full disk stops the search with its last complete state restorable."""

import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from aae_tune.names import LEASE_FILE, SEARCH_RECORD, STATE_DIR
from tests import helpers as h


def tracking(root: Path) -> str:
    return f"sqlite:///{root}/mlflow.db"


def search_cmd(root: Path, name: str, *extra: str, storage: Path | None = None) -> list[str]:
    return [sys.executable, "-m", "aae_tune.search", "--space", "likelihood_mnist", "--smoke", "--name", name,
            "--storage-path", str(storage or root / "ray_results"), "--tracking-uri", tracking(root),
            "--final-samples", "300", "--top-k", "1", "--seed", "0", *extra]


def run(cmd: list[str], cwd: Path, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONPATH": str(h.REPO_ROOT)})


def record(folder: Path) -> dict:
    return json.loads((folder / SEARCH_RECORD).read_text())


class Planted:
    """Leaves a marker file if it is ever unpickled."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def one_error_line(done: subprocess.CompletedProcess, code: int, text: str) -> None:
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert done.returncode == code and len(errors) == 1 and text in done.stderr, done.stdout[-2000:] + done.stderr
    assert "Traceback" not in done.stderr


def test_a_planted_pickle_never_runs_and_the_search_resumes_from_its_signed_state(tmp_path):
    cmd = search_cmd(tmp_path, "planted", "--num-samples", "2", "--max-epochs", "3", "--max-concurrent", "1")
    h.kill_after_epochs(h.start(cmd, tmp_path), tracking(tmp_path), "planted", epochs=2)
    folder = tmp_path / "ray_results" / "planted"
    marker = tmp_path / "planted-pickle-ran"
    evil = pickle.dumps(Planted(marker))
    (folder / "tuner.pkl").write_bytes(evil)
    (folder / "experiment_state-2099-01-01_00-00-00.json").write_bytes(evil)
    trial_dir = next(p for p in folder.iterdir() if p.is_dir() and p.name != STATE_DIR)
    (trial_dir / "error.pkl").write_bytes(evil)

    shutil.move(folder / STATE_DIR, tmp_path / "state-aside")  # no signature at all: refused, nothing loaded
    one_error_line(run([*cmd, "--resume"], tmp_path), 2, "carries no signed state")
    (folder / SEARCH_RECORD).unlink()  # deleting the record must not switch the checks off either
    shutil.move(tmp_path / "state-aside", folder / STATE_DIR)

    resumed = h.resume_cleanly(cmd, tmp_path, tracking(tmp_path), "planted", trials=2, max_epochs=3)
    assert not marker.exists()
    assert "tuner.pkl: changed since it was signed; put back the signed copy" in resumed.stdout
    assert "not signed by this search; removed" in resumed.stdout
    assert record(folder)["state"] == "finished"


def test_a_second_driver_is_refused_and_a_finished_search_stays_finished(tmp_path):
    cmd = search_cmd(tmp_path, "twice", "--num-samples", "2", "--max-epochs", "3", "--max-concurrent", "1")
    first = h.start(cmd, tmp_path)
    folder = tmp_path / "ray_results" / "twice"
    try:
        h.wait_for(lambda: (folder / LEASE_FILE).is_file(), first, what="the first driver's lease")
        second = run(cmd, tmp_path)
        one_error_line(second, 2, "is being run by another driver")
        resumed_twice = run([*cmd, "--resume"], tmp_path)  # a job wrapper that always passes --resume
        one_error_line(resumed_twice, 2, "is being run by another driver")
        out, _ = first.communicate(timeout=900)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0, out[-3000:]
    client, parents, trials = h.search_runs(tracking(tmp_path), "twice")
    assert len(parents) == 1 and len(trials) == 2
    assert len(list(folder.glob("experiment_state-*.json"))) == 1

    before = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    again = run([*cmd, "--resume"], tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "finished at" in again.stdout and "nothing was changed" in again.stdout
    assert "best trial" in again.stdout  # the stored summary
    assert {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()} == before
    assert client.get_run(parents[0].info.run_id).info.status == "FINISHED"


def test_sigterm_stops_cleanly_and_resume_finishes(tmp_path):
    cmd = search_cmd(tmp_path, "term", "--num-samples", "1", "--max-epochs", "6")
    proc = h.start(cmd, tmp_path)

    def first_epoch():
        client, _, trials = h.search_runs(tracking(tmp_path), "term")
        return trials and h.epochs_logged(client, trials[0].info.run_id)

    h.wait_for(first_epoch, proc, what="the first epoch")
    os.kill(proc.pid, signal.SIGTERM)  # the driver only, as a job scheduler does
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 130, out[-3000:]
    assert "was interrupted by SIGTERM" in out and "--resume" in out and "Traceback" not in out
    assert record(tmp_path / "ray_results" / "term")["state"] == "interrupted"
    h.resume_cleanly(cmd, tmp_path, tracking(tmp_path), "term", trials=1, max_epochs=6)


@pytest.fixture
def small_disk(tmp_path):
    """A real 64 MiB filesystem for the storage path."""
    with h.mounted_tmpfs(tmp_path / "disk", "64m") as mount:
        yield mount


def test_a_full_disk_stops_the_search_and_resume_does_not_start_over(tmp_path, small_disk):
    cmd = search_cmd(tmp_path, "full", "--num-samples", "1", "--max-epochs", "6", storage=small_disk)
    proc = h.start(cmd, tmp_path)

    def epochs():
        client, _, trials = h.search_runs(tracking(tmp_path), "full")
        return trials and len(h.epochs_logged(client, trials[0].info.run_id)) >= 2

    h.wait_for(epochs, proc, what="two epochs")
    filler = small_disk / "filler"
    with open(filler, "wb") as f:  # fill the disk to the last byte
        try:
            while True:
                f.write(b"\0" * (1 << 20))
                f.flush()
        except OSError:
            pass
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 130, out[-3000:]
    assert "No space left on device" in out and "--resume" in out
    filler.unlink()
    time.sleep(1)
    resumed = h.resume_cleanly(cmd, tmp_path, tracking(tmp_path), "full", trials=1, max_epochs=6)
    assert "Failed to restore" not in resumed.stdout + resumed.stderr
    client, _, trials = h.search_runs(tracking(tmp_path), "full")
    assert h.epochs_logged(client, trials[0].info.run_id) == list(range(1, 7))  # continued, not started over
