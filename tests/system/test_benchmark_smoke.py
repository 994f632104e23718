"""The search-efficiency benchmark end to end at smoke size: real searches, the table, the plot on MLflow, random +
FIFO's best configuration trained again from other weights (--noise-seeds), and a second run that reads the finished
searches instead of running them again."""

import os
import subprocess
import sys

from aae_tune.mlflow_store import mlflow_client
from tests.helpers import REPO_ROOT, SHARED_MNIST, search_runs


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


def score_histories(tracking_uri: str, search: str) -> dict[tuple, list[tuple[int, float]]]:
    """Per trial of ``search``, keyed by its sampled configuration: (epoch, reconstruction loss) for every epoch it
    trained (the score itself is reported every few epochs)."""
    client, _, trials = search_runs(tracking_uri, search)
    return {tuple(sorted(t.data.params.items())): [(m.step, m.value) for m in sorted(
        client.get_metric_history(t.info.run_id, "recon_loss"), key=lambda m: m.step)] for t in trials}


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

    # random proposals under ASHA: random + FIFO's configurations, each trained as under FIFO until ASHA stops it
    # (the premise of benchmarks/asha_replay.py)
    asha = run_benchmark(tmp_path, "--methods", "random+asha", "--asha", "g1-rf2-st2")
    assert asha.returncode == 0, asha.stdout[-3000:] + asha.stderr[-3000:]
    assert "eff-random-fifo-s0: starting" not in asha.stdout
    assert "eff-random-asha-g1-rf2-st2-s0: starting" in asha.stdout
    assert [row.split(" | ")[0] for row in report_rows(asha.stdout)[2:]] == ["| random+fifo",
                                                                            "| random+asha g1-rf2-st2"]
    fifo, stopped = (score_histories(f"sqlite:///{tmp_path}/mlflow.db", f"eff-{stem}-s0")
                     for stem in ("random-fifo", "random-asha-g1-rf2-st2"))
    assert stopped.keys() == fifo.keys() and len(fifo) == 3
    assert all(history == fifo[config][: len(history)] and history for config, history in stopped.items())
    assert sum(map(len, stopped.values())) <= sum(map(len, fifo.values()))

    # benchmarks/asha_replay.py reads the same store: random + FIFO's 3 recorded curves under Ray's ASHA
    replay = subprocess.run(
        [sys.executable, str(REPO_ROOT / "benchmarks" / "asha_replay.py"), "--tracking-uri",
         f"sqlite:///{tmp_path}/mlflow.db", "--seeds", "0", "--num-samples", "1", "--max-epochs", "2",
         "--settings", "g1-rf2", "g2-rf2", "--draws", "20"],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)}, capture_output=True, text=True, timeout=300)
    assert replay.returncode == 0, replay.stdout[-3000:] + replay.stderr[-3000:]
    own = report_rows(replay.stdout, "| scheduler |")
    # grace 2 = max_t: nothing is stopped, so ASHA reaches random + FIFO's best, within random + FIFO's budget
    assert [row.split(" | ")[0] for row in own[2:]] == ["| (random + FIFO's best)", "| FIFO, replayed",
                                                         "| ASHA g1-rf2", "| ASHA g2-rf2"]
    assert float(own[2].split(" | ")[1].strip(" |")) == float(rows[2].split(" | ")[1].split(" ± ")[0])
    reached = own[5].split(" | ")[1].strip(" |")
    assert reached.endswith("%") and 0 < int(reached[:-1]) <= 100 and reached == own[3].split(" | ")[1].strip(" |")
    fresh = report_rows(replay.stdout, "| proposals, scheduler |")
    assert [row.split(" | ")[0] for row in fresh[2:]] == ["| random, FIFO (another draw)", "| random, ASHA g1-rf2",
                                                           "| random, ASHA g2-rf2"]
    assert fresh[2].split(" | ")[1:] == fresh[4].split(" | ")[1:]  # ASHA without a rung is FIFO
