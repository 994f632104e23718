"""The MLflow server dies mid-search: training goes on, the problem is reported once, nothing is lost."""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.helpers import REPO_ROOT, search_runs

ENV = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(root: Path, port: int) -> subprocess.Popen:
    """A real `mlflow server` on loopback with a SQLite store that survives restarts."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{root}/server.db", "--artifacts-destination", str(root / "artifacts")],
        cwd=root, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    deadline = time.time() + 90
    while time.time() < deadline:
        with contextlib.suppress(OSError), urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
            if r.status == 200:
                return proc
        time.sleep(0.5)
    stop(proc)
    raise AssertionError("mlflow server did not come up")


def stop(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


def epochs(uri: str) -> list[int]:
    client, _, runs = search_runs(uri)
    return [m.step for r in runs for m in client.get_metric_history(r.info.run_id, "epoch")]


def test_search_survives_mlflow_outage_and_uploads_later(tmp_path):
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    server = start_server(tmp_path, port)
    cmd = [sys.executable, "-m", "aae_tune.search", "--space", "likelihood_mnist", "--smoke", "--name", "outage",
           "--num-samples", "1", "--max-epochs", "8", "--storage-path", str(tmp_path / "ray_results"),
           "--tracking-uri", uri, "--final-samples", "300", "--seed", "0"]
    search = subprocess.Popen(cmd, cwd=tmp_path, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, start_new_session=True)
    try:
        deadline = time.time() + 300
        while time.time() < deadline and not epochs(uri):
            assert search.poll() is None, search.stdout.read()[-3000:]
            time.sleep(1)
        stop(server)  # the server goes away after epoch 1
        out, _ = search.communicate(timeout=600)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(search.pid, signal.SIGKILL)
        stop(server)
    assert search.returncode == 3, out[-3000:]  # trials done, recording unfinished: a distinct exit code
    assert out.count("WARNING: MLflow unreachable") == 1  # reported once, not once per event
    assert "--resume records the rest" in out
    spool = tmp_path / "ray_results" / "outage" / "mlflow_spool.jsonl"
    assert spool.is_file() and spool.read_text().count('"kind": "result"') >= 1

    server = start_server(tmp_path, port)  # back, with the same store
    try:
        sync = subprocess.run([sys.executable, "-m", "aae_tune.search.callback", "--spool", str(spool),
                               "--tracking-uri", uri], cwd=tmp_path, env=ENV, capture_output=True, text=True,
                              timeout=300)
        assert sync.returncode == 0, sync.stderr[-3000:]
        assert not spool.exists()
        assert sorted(epochs(uri)) == list(range(1, 9))  # every epoch, once
        resumed = subprocess.run([*cmd, "--resume"], cwd=tmp_path, env=ENV, capture_output=True, text=True,
                                 timeout=600)
        assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
        assert "registered model: models:/aae-likelihood_mnist/1" in resumed.stdout
        assert sorted(epochs(uri)) == list(range(1, 9))
    finally:
        stop(server)
