"""What running a trial under Ray Tune + MLflow costs over the bare training loop.

Runs one fixed likelihood_mnist config (App. A.1 networks, the space's defaults) for a few epochs twice, side by
side in one process tree:

- bare: ``Trainer.train_epoch`` + the per-epoch validation Parzen score, nothing else;
- tune: the same config as a one-trial search (random searcher, FIFO), with per-epoch checkpoints reported to
  Tune and metrics streamed to a local MLflow store by the driver callback.

Prints the per-epoch times and the ratio tune/bare (target <= 1.10), plus the one-off start-up cost (Ray start,
trial actor, data into the object store), reported apart because it does not grow with the budget.

    python benchmarks/search_overhead.py --epochs 4 --train-size 10000
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import ray

from aae_tune.cluster.ray_session import start_ray
from aae_tune.data import DataSplits, load_mnist
from aae_tune.search.api import make_request
from aae_tune.search.driver import build_tuner
from aae_tune.search.request import SearchRequest
from aae_tune.search.tracking import SearchTracker
from aae_tune.search.trainable import TrialSettings, trial_config, validation_metrics
from aae_tune.train import Trainer


def bare(settings: TrialSettings, data: DataSplits) -> list[float]:
    import torch

    torch.set_num_threads(settings.threads)
    trainer = Trainer(trial_config(settings, {}), data)
    times = []
    for _ in range(settings.max_epochs):
        start = time.perf_counter()
        trainer.train_epoch()
        validation_metrics(trainer, data, settings)
        times.append(time.perf_counter() - start)
    return times


def under_tune(request: SearchRequest, data: DataSplits) -> tuple[list[float], float]:
    tracker = SearchTracker(request.tracking_uri, request.experiment_name, request.name)
    start = time.perf_counter()
    start_ray(None)
    results = build_tuner(request, data, tracker).fit()
    wall = time.perf_counter() - start
    history = results[0].metrics_dataframe
    per_epoch = history["time_this_iter_s"].tolist()
    return per_epoch, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--train-size", type=int, default=10_000)
    parser.add_argument("--data-dir")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    data = load_mnist(args.data_dir).head(args.train_size)
    # One fixed config: nothing searched, no early stopping.
    root = Path(tempfile.mkdtemp(prefix="aae_overhead_"))
    request = make_request(
        "likelihood_mnist", name="overhead", seed=0, num_samples=1, max_epochs=args.epochs, max_concurrent=1,
        cpus_per_trial=float(args.threads), gpus_per_trial=0.0, storage_path=str(root / "ray_results"),
        tracking_uri=f"sqlite:///{root}/mlflow.db", top_k=1, final_samples=1000,
        overrides={"params": {}, "searcher.type": "random", "scheduler.type": "fifo"},
    )
    space = request.space
    settings = TrialSettings(space=space, seed=0, max_epochs=args.epochs, threads=args.threads)

    bare_start = time.perf_counter()
    bare_times = bare(settings, data)
    bare_wall = time.perf_counter() - bare_start
    tune_times, tune_wall = under_tune(request, data)
    ray.shutdown()

    # The first epoch of each carries one-off warm-up; compare the steady-state epochs.
    steady_bare = sum(bare_times[1:]) / max(len(bare_times) - 1, 1)
    steady_tune = sum(tune_times[1:]) / max(len(tune_times) - 1, 1)
    print(f"data: {data.source}; {args.epochs} epochs; {args.threads} threads; App. A.1 networks")
    print(f"{'epoch':>5} {'bare s':>8} {'tune+mlflow s':>14}")
    for i, (b, t) in enumerate(zip(bare_times, tune_times, strict=False), 1):
        print(f"{i:>5} {b:8.2f} {t:14.2f}")
    print(f"steady-state epoch: bare {steady_bare:.2f} s, under Tune + MLflow {steady_tune:.2f} s, "
          f"ratio {steady_tune / steady_bare:.3f} (target <= 1.10)")
    print(f"all epochs: bare {sum(bare_times):.1f} s, tune {sum(tune_times):.1f} s, "
          f"ratio {sum(tune_times) / sum(bare_times):.3f}")
    print(f"wall incl. start-up: bare {bare_wall:.1f} s, tune {tune_wall:.1f} s "
          f"(one-off start-up ~{tune_wall - sum(tune_times):.1f} s)")


if __name__ == "__main__":
    main()
