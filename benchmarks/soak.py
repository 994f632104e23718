"""Soak: a search of many tiny trials, measuring what grows with the number of trials.

    python benchmarks/soak.py --trials 200 [--address 127.0.0.1:PORT] [--train-size 500]
    python benchmarks/soak.py --trials 30 --cpus-per-trial 2 --max-concurrent 1 [--no-reuse-actors]

Each trial is the smoke network for one epoch on a small slice of real MNIST, so the run measures the service,
not the model: driver memory (RSS) after each finished trial and its growth per trial (least-squares slope),
the scheduling overhead (wall time of the search minus the trial time it ran, per trial, at the given
concurrency), and whether the MLflow store holds every trial (one nested run each, with its metrics).
With ``--max-concurrent 1`` it also prints the idle gap between trials: the time from one trial's report to the
next trial's report, less the next trial's own time (Tune's ``time_total_s``), from MLflow's millisecond
timestamps. ``--no-reuse-actors`` turns off Tune's actor reuse (the service's default) for a side-by-side run.
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
import time
from pathlib import Path

import numpy as np
from ray import tune

from aae_tune.cluster.ray_session import start_ray
from aae_tune.data import load_mnist
from aae_tune.mlflow_store import mlflow_client
from aae_tune.names import TAG_TRIAL
from aae_tune.search.api import make_request
from aae_tune.search.driver import build_tuner
from aae_tune.search.tracking import SearchTracker


def rss_mb() -> float:
    """Resident memory of this (driver) process, from /proc."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class MemoryProbe(tune.Callback):
    def __init__(self) -> None:
        self.samples: list[tuple[int, float]] = []

    def on_trial_complete(self, iteration: int, trials: list, trial, **info) -> None:
        self.samples.append((len(self.samples) + 1, rss_mb()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--train-size", type=int, default=500)
    parser.add_argument("--max-concurrent", type=int, default=2)
    parser.add_argument("--cpus-per-trial", type=float, default=1.0)
    parser.add_argument("--no-reuse-actors", action="store_true", help="a fresh actor per trial (the old way)")
    parser.add_argument("--address", help="a running Ray cluster, e.g. the local one of `python -m aae_tune.cluster`")
    parser.add_argument("--data-dir")
    args = parser.parse_args()

    data = load_mnist(args.data_dir).head(args.train_size, 400, 400)
    root = Path(tempfile.mkdtemp(prefix="aae_soak_"))
    request = make_request(
        "likelihood_mnist", name="soak", seed=0, num_samples=args.trials, max_epochs=1,
        max_concurrent=args.max_concurrent, cpus_per_trial=args.cpus_per_trial, gpus_per_trial=0.0,
        storage_path=str(root / "ray_results"), tracking_uri=f"sqlite:///{root}/mlflow.db", address=args.address,
        smoke=True, top_k=1, final_samples=200,
        overrides={"searcher.type": "random", "scheduler.type": "fifo", "evaluation.valid_samples": 200},
    )
    tracker = SearchTracker(request.tracking_uri, request.experiment_name, request.name)
    start_ray(args.address)
    probe = MemoryProbe()
    tuner = build_tuner(request, data, tracker)
    tuner._local_tuner._run_config.callbacks.append(probe)  # measurement only: not a product code path
    tuner._local_tuner._tune_config.reuse_actors = not args.no_reuse_actors
    rss_start = rss_mb()
    start = time.perf_counter()
    results = tuner.fit()
    wall = time.perf_counter() - start

    trial_seconds = sum(r.metrics.get("time_total_s", 0.0) for r in results)
    counts, rss = np.array([c for c, _ in probe.samples]), np.array([m for _, m in probe.samples])
    slope = np.polyfit(counts, rss, 1)[0] if len(counts) > 2 else float("nan")
    client = mlflow_client(request.tracking_uri)
    exp = client.get_experiment_by_name(request.experiment_name)
    runs = client.search_runs([exp.experiment_id], "tags.aae_role = 'trial'", max_results=10_000)
    with_metrics = sum(1 for r in runs if "valid_parzen_ll" in r.data.metrics)
    print(f"trials: {len(results)} ({results.num_terminated} terminated, {results.num_errors} errors)")
    print(f"wall {wall:.1f} s; trial time {trial_seconds:.1f} s over concurrency {args.max_concurrent}")
    overhead = (wall - trial_seconds / args.max_concurrent) / max(len(results), 1)
    print(f"scheduling overhead: {overhead:.2f} s per trial")
    print(f"driver RSS: start {rss_start:.0f} MB, after trial 1 {rss[0]:.0f} MB, after trial {counts[-1]} "
          f"{rss[-1]:.0f} MB; growth {slope * 1024:.1f} KB per trial (least squares)")
    print(f"MLflow: {len(runs)} trial runs, {with_metrics} with metrics (expected {args.trials})")
    if args.max_concurrent == 1:
        print(f"idle gap between sequential trials: {sequential_gap(client, runs, results):.2f} s (median)")


def sequential_gap(client, runs, results) -> float:
    """Median over consecutive trials of (next report - previous report - next trial's own time): 1-epoch trials,
    one at a time, so each trial's one report marks its end."""
    own = {r.metrics["trial_id"]: r.metrics.get("time_total_s", 0.0) for r in results}
    ends = sorted((client.get_metric_history(r.info.run_id, "recon_loss")[0].timestamp / 1e3,
                   own[r.data.tags[TAG_TRIAL]]) for r in runs)
    return float(np.median([end - prev - inside for (prev, _), (end, inside) in itertools.pairwise(ends)]))


if __name__ == "__main__":
    main()
