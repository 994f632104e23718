"""The search-efficiency benchmark end to end at smoke size: real searches, the table, the plot on MLflow, random +
FIFO's best configuration trained again from other weights (--noise-seeds), and a second run that reads the finished
searches instead of running them again."""

import os
import subprocess
import sys

from aae_tune.store import mlflow_client
from tests.helpers import REPO_ROOT, SHARED_MNIST


def run_benchmark(tmp_path, *extra: str) -> subprocess.CompletedProcess:
    args = [sys.executable, str(REPO_ROOT / "benchmarks" / "search_efficiency.py"), "--smoke",
            "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db", "--storage-path", str(tmp_path / "ray"),
            "--seeds", "0", "--num-samples", "3", "--max-epochs", "2", "--train-size", "300",
            "--data-dir", str(SHARED_MNIST), "--out", str(tmp_path / "curves.png"), *extra]
    return subprocess.run(args, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
                          capture_output=True, text=True, timeout=600)


def report_rows(stdout: str, header: str = "| method |") -> list[str]:
    """One of the benchmark's tables (Tune's status tables, also ``| ``-lines, come before it)."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    return lines[start:end]


def test_search_efficiency_compares_settings_and_resumes_from_mlflow(tmp_path):
    settings = ["--methods", "tpe+asha", "--asha", "g1-rf2-st2", "g1-rf2-st1-e1", "--noise-seeds", "7"]
    first = run_benchmark(tmp_path, *settings)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    for name in ("eff-random-fifo-s0", "eff-tpe-asha-g1-rf2-st2-s0", "eff-tpe-asha-g1-rf2-st1-e1-s0",
                 "eff-noise-s0-w7"):
        assert f"== {name}: starting" in first.stdout
    rows = report_rows(first.stdout)
    assert [row.split(" | ")[0] for row in rows[2:]] == ["| random+fifo", "| tpe+asha g1-rf2-st2",
                                                          "| tpe+asha g1-rf2-st1-e1"]
    assert all(row.count(" | ") == 3 for row in rows[2:])  # method, best, spent, fraction
    assert "tpe+asha g1-rf2-st2: " in first.stdout and (tmp_path / "curves.png").stat().st_size > 0
    noise = report_rows(first.stdout, "| seed |")
    assert len(noise) == 3
    _, seed, target, retrained, mean, gap, _ = noise[2].split("|")
    assert int(seed) == 0 and float(target) == float(rows[2].split(" | ")[1].split(" ± ")[0])
    assert float(mean.split(" ± ")[0]) == float(retrained)  # one weight seed: its score is the mean
    assert abs(float(gap) - (float(target) - float(retrained))) <= 0.011
    client = mlflow_client(f"sqlite:///{tmp_path}/mlflow.db")
    plots = client.search_runs([e.experiment_id for e in client.search_experiments()],
                               "tags.aae_benchmark = 'search_efficiency'")
    assert [a.path for a in client.list_artifacts(plots[0].info.run_id)] == ["curves.png"]

    again = run_benchmark(tmp_path, *settings)  # every search finished: read from MLflow, none run again
    assert again.returncode == 0, again.stderr[-3000:]
    assert "starting" not in again.stdout and "resuming" not in again.stdout
    assert report_rows(again.stdout) == rows and report_rows(again.stdout, "| seed |") == noise
