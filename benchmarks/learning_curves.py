"""When do a space's learning curves rank trials as they end? The evidence behind each space's ASHA grace period.

Reads the per-epoch validation metric of every trial of one space in an MLflow store (all its searches: seeds of
one recipe, other recipes, grid points), keeps the trials that reached ``--final-epoch``, and prints for each
epoch e the Kendall rank correlation between the trials' scores at e and at the final epoch, and how many trial
pairs e orders the wrong way. ASHA stops trials by their rank at its rungs, so its first rung (the grace period)
belongs where the ranking has settled. Validation figures only.

    python benchmarks/learning_curves.py --tracking-uri sqlite:////work/bench_runs_i11/mlflow.db \\
        --space semisupervised_mnist_100 --final-epoch 50
"""

from __future__ import annotations

import argparse
import itertools

from aae_tune.mlflow_store import mlflow_client
from aae_tune.names import ROLE_TRIAL, TAG_ROLE, TAG_SEARCH, experiment_name
from aae_tune.search.space import load_space


def curves(tracking_uri: str, space_name: str, metric: str, final_epoch: int) -> dict[str, dict[int, float]]:
    """search/trial -> {epoch: metric} for every trial of the space that reached ``final_epoch``."""
    client = mlflow_client(tracking_uri)
    experiment = client.get_experiment_by_name(experiment_name(space_name))
    if experiment is None:
        return {}
    runs = client.search_runs([experiment.experiment_id], f"tags.{TAG_ROLE} = '{ROLE_TRIAL}'", max_results=10_000)
    out = {}
    for run in runs:
        history = {m.step: m.value for m in client.get_metric_history(run.info.run_id, metric)}
        if final_epoch in history:
            out[f"{run.data.tags.get(TAG_SEARCH)}/{run.info.run_name}"] = history
    return out


def rank_agreement(by_trial: dict[str, dict[int, float]], epoch: int, final: int, sign: float) -> tuple[float, int]:
    """(Kendall tau, pairs ordered the wrong way) between the scores at ``epoch`` and at ``final``."""
    pairs = list(itertools.combinations(by_trial.values(), 2))
    concordance = [sign * (a[epoch] - b[epoch]) * (a[final] - b[final]) for a, b in pairs]
    wrong = sum(c < 0 for c in concordance)
    right = sum(c > 0 for c in concordance)
    return (right - wrong) / max(1, len(pairs)), wrong


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tracking-uri", required=True)
    p.add_argument("--space", required=True)
    p.add_argument("--final-epoch", type=int, required=True)
    p.add_argument("--metric", help="default: the space's metric")
    args = p.parse_args()
    space = load_space(args.space)
    metric = args.metric or space.metric
    by_trial = curves(args.tracking_uri, args.space, metric, args.final_epoch)
    print(f"{args.space}: {len(by_trial)} trial(s) reached epoch {args.final_epoch} ({metric})")
    for name, history in sorted(by_trial.items()):
        print(f"  {name}: final {history[args.final_epoch]:.2f}")
    if len(by_trial) < 2:
        return
    print("| epoch | Kendall tau vs final | pairs ordered wrong |\n|---|---|---|")
    common = sorted(set.intersection(*(set(h) for h in by_trial.values())))
    for epoch in (e for e in common if e < args.final_epoch):
        tau, wrong = rank_agreement(by_trial, epoch, args.final_epoch, 1.0)
        print(f"| {epoch} | {tau:+.2f} | {wrong} |")


if __name__ == "__main__":
    main()
