"""Does TPE + ASHA find good configurations with less compute than random search? Best validation score against
cumulative trial-epochs, for random + FIFO, Optuna TPE + ASHA and PBT, over several seeds.

Every search is a real one (``aae_tune.search.run``: Ray Tune, Optuna, MLflow) of the likelihood space on a fixed
training subset (the first ``--train-size`` images; validation and the score as in any search), named
``eff-<method>-s<seed>`` in the given MLflow store. The benchmark is resumable: a finished search is read, not
re-run; an interrupted one continues (``resume=True``); so after a Ctrl-C or the end of a session the same
command picks up where it stopped.

Per search, the trial-epochs in the order they were reported (MLflow's millisecond timestamps) give the curve
best-score-so-far against trial-epochs spent. Per seed, the target is the best score random + FIFO reaches with its
whole budget; the table gives the fraction of that budget each method needed to reach it (goal for TPE + ASHA:
<= 25 %). ``--asha`` compares several TPE + ASHA settings against the same baselines (``--methods tpe+asha`` skips
PBT), so tuning them re-runs only the cheap searches. ``--methods random+asha`` runs each ``--asha`` setting's rungs
over random proposals (its TPE fields unused): the seed's random + FIFO configurations, each trained as under FIFO
until ASHA stops it — what ``benchmarks/asha_replay.py`` computes from the FIFO curves without training. The
curves go to ``--out`` as a PNG and onto an MLflow run ``search-efficiency`` in the same store. Validation figures
only.

``--noise-seeds K...`` measures how much of the target is the draw of the initial weights: random + FIFO's best
configuration of each seed is trained again (``--train-best``, same budget) with each weight seed K; the table gives
the target against the mean ± std of those runs.

    python benchmarks/search_efficiency.py --tracking-uri sqlite:////path/eff/mlflow.db --storage-path /path/eff/ray \\
        --seeds 0 1 2 --num-samples 16 --max-epochs 12 --train-size 10000 --data-dir /work/shared/data/mnist
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from scipy.stats import spearmanr  # noqa: E402

from aae_tune.data import load_mnist  # noqa: E402
from aae_tune.mlflow_store import mlflow_client  # noqa: E402
from aae_tune.names import ROLE_PARENT, ROLE_TRIAL, TAG_ROLE, TAG_SEARCH, experiment_name  # noqa: E402
from aae_tune.search import run as run_search  # noqa: E402
from aae_tune.search.space import load_space  # noqa: E402

SPACE = "likelihood_mnist"
GOAL_FRACTION = 0.25


DEFAULT_ASHA = "g3-rf3-st4"


def asha_overrides(spec: str) -> dict:
    """``g<grace>-rf<reduction factor>-st<TPE startup trials>``, optionally ``-e<score every K epochs>`` (ASHA
    reads a rung's score at its epoch; with the space's every-2-epochs scoring an odd rung sees the last even one),
    ``-n<trials>``, ``-mv`` (multivariate TPE) and ``-cl`` (constant liar)."""
    fields = {"g": "scheduler.grace_period", "rf": "scheduler.reduction_factor", "st": "searcher.n_startup_trials",
              "e": "evaluation.every_epochs", "n": "num_samples"}
    switches = {"mv": "searcher.multivariate", "cl": "searcher.constant_liar"}
    # a spec names its whole setting: TPE is independent unless -mv / -cl say otherwise, whatever the space's default
    out = {"searcher.type": "optuna_tpe", "scheduler.type": "asha", "searcher.multivariate": False,
           "searcher.constant_liar": False}
    for part in spec.split("-"):
        if part in switches:
            out[switches[part]] = True
            continue
        key = part.rstrip("0123456789")
        if key not in fields or key == part:
            raise SystemExit(f"--asha {spec}: cannot read {part!r}; write e.g. g3-rf3-st4, g2-rf4-st8-e1, "
                             "g2-rf3-st4-n32-mv-cl")
        out[fields[key]] = int(part[len(key):])
    return out


def methods(args: argparse.Namespace) -> dict[str, tuple[str, dict]]:
    """method -> (search-name stem, --set overrides); ASHA's rungs and PBT's interval scaled to the short budget."""
    table = {
        "random+fifo": ("random-fifo", {"searcher.type": "random", "scheduler.type": "fifo"}),
        "pbt": ("pbt", {"searcher.type": "random", "scheduler.type": "pbt",
                        "scheduler.perturbation_interval": args.perturbation_interval}),
    }
    for spec in args.asha:  # the first benchmark run's setting kept its plain name
        overrides = asha_overrides(spec)
        table[f"tpe+asha {spec}"] = ("tpe-asha" if spec == DEFAULT_ASHA else f"tpe-asha-{spec}", overrides)
        # random proposals under the same rungs: the seed's random + FIFO configurations, stopped where ASHA says
        table[f"random+asha {spec}"] = (f"random-asha-{spec}", {**overrides, "searcher.type": "random"})
    return {m: v for m, v in table.items() if m == "random+fifo" or m.split()[0] in args.methods}


def search_state(client, experiment_id: str | None, name: str) -> str | None:
    """The parent run's status of search ``name`` (None: never started)."""
    if experiment_id is None:
        return None
    runs = client.search_runs([experiment_id], f"tags.{TAG_SEARCH} = '{name}' and tags.{TAG_ROLE} = '{ROLE_PARENT}'")
    return runs[0].info.status if runs else None


def trial_scores(client, experiment_id: str, name: str, metric: str) -> dict[str, dict[int, float]]:
    """Per trial (run id) of search ``name``: epoch -> validation score (finite scores only)."""
    trials = client.search_runs([experiment_id], f"tags.{TAG_SEARCH} = '{name}' and tags.{TAG_ROLE} = '{ROLE_TRIAL}'",
                                max_results=10_000)
    return {t.info.run_id: {m.step: m.value for m in client.get_metric_history(t.info.run_id, metric)
                            if math.isfinite(m.value)} for t in trials}


def curve(client, scores: dict[str, dict[int, float]]) -> list[tuple[int, float]]:
    """(cumulative trial-epochs, best score so far) after every epoch the trials of ``trial_scores`` trained."""
    reports = []  # (timestamp, trial, epoch, score)
    for run_id, by_epoch in scores.items():
        for m in client.get_metric_history(run_id, "recon_loss"):  # one point per epoch trained
            reports.append((m.timestamp, run_id, m.step, by_epoch.get(m.step, math.nan)))
    points, best = [], -math.inf
    for spent, (_, _, _, score) in enumerate(sorted(reports), start=1):
        if math.isfinite(score):
            best = max(best, score)
        points.append((spent, best))
    return points


def report_early_ranking(histories: list[dict[int, float]], last: int) -> None:
    """How well a score at epoch k ranks random + FIFO's configurations by their score at the last epoch (Spearman,
    pooled over seeds): all of them, and the best quarter by the last score (where the winner is chosen)."""
    full = [h for h in histories if last in h]
    best = sorted(full, key=lambda h: h[last])[-max(4, len(full) // 4):]
    print(f"\nrandom + FIFO, {len(full)} configurations scored at epoch {last}: Spearman of the score at epoch k with "
          f"the score at epoch {last}")
    print("| k | all | best quarter |\n|---:|---:|---:|")
    for k in sorted({k for h in full for k in h if k < last}):
        cells = []
        for group in (full, best):
            pairs = [(h[k], h[last]) for h in group if k in h]
            cells.append(f"{spearmanr(*zip(*pairs, strict=True))[0]:.2f} (n={len(pairs)})" if len(pairs) > 2
                         else "-")
        print(f"| {k} | {cells[0]} | {cells[1]} |")


def epochs_to_reach(points: list[tuple[int, float]], target: float) -> float:
    return next((spent for spent, best in points if best >= target), math.inf)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tracking-uri", required=True)
    p.add_argument("--storage-path", required=True)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--num-samples", type=int, default=16)
    p.add_argument("--max-epochs", type=int, default=12)
    p.add_argument("--train-size", type=int, default=10_000)
    p.add_argument("--asha", nargs="+", default=[DEFAULT_ASHA],
                   help="TPE + ASHA settings to compare, each "
                        "g<grace>-rf<factor>-st<startup>[-e<every>][-n<trials>][-mv][-cl]")
    p.add_argument("--methods", nargs="*", default=["tpe+asha", "pbt"], choices=["tpe+asha", "random+asha", "pbt"],
                   help="besides random + FIFO, the baseline, which always runs (--methods alone: the baseline only)")
    p.add_argument("--noise-seeds", type=int, nargs="*", default=[],
                   help="also train random + FIFO's best configuration of each seed again with these seeds "
                        "(--train-best): how much of the target is the initial weights' draw")
    p.add_argument("--perturbation-interval", type=int, default=3)
    p.add_argument("--cpus-per-trial", type=float, default=1.0)
    p.add_argument("--max-concurrent", type=int, default=2)
    p.add_argument("--smoke", action="store_true", help="tiny nets (CI-sized), to check the benchmark itself")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--out", default="search_efficiency.png")
    args = p.parse_args(argv)
    data = load_mnist(args.data_dir).head(args.train_size)
    metric = load_space(SPACE).metric
    client = mlflow_client(args.tracking_uri)
    curves: dict[str, dict[int, list[tuple[int, float]]]] = {}
    random_histories: list[dict[int, float]] = []
    for seed in args.seeds:
        for method, (stem, overrides) in methods(args).items():
            overrides = dict(overrides)
            num_samples = overrides.pop("num_samples", args.num_samples)
            name = f"eff-{stem}-s{seed}"
            experiment_id = finished_search(client, args, data, name=name, seed=seed, num_samples=num_samples,
                                            overrides=overrides)
            if experiment_id is None:
                return 130
            scores = trial_scores(client, experiment_id, name, metric)
            curves.setdefault(method, {})[seed] = curve(client, scores)
            if method == "random+fifo":
                random_histories += scores.values()
    report(curves, args, client)
    report_early_ranking(random_histories, args.max_epochs)
    if args.noise_seeds:
        retrained: dict[int, list[float]] = {}
        for seed in args.seeds:
            for other in args.noise_seeds:  # random + FIFO's best configuration, trained again from other weights
                name = f"eff-noise-s{seed}-w{other}"
                experiment_id = finished_search(client, args, data, name=name, seed=other, num_samples=1,
                                                train_best=f"eff-random-fifo-s{seed}")
                if experiment_id is None:
                    return 130
                scores = trial_scores(client, experiment_id, name, metric)
                retrained.setdefault(seed, []).append(curve(client, scores)[-1][1])
        report_noise(curves["random+fifo"], retrained, args.noise_seeds)
    return 0


def finished_search(client, args: argparse.Namespace, data, *, name: str, seed: int, **options) -> str | None:
    """Run search ``name`` unless it has finished (an interrupted one is resumed); its experiment id, or None if
    it was interrupted again."""
    experiment = client.get_experiment_by_name(experiment_name(SPACE))
    state = search_state(client, experiment.experiment_id if experiment else None, name)
    if state != "FINISHED":
        print(f"== {name}: {'resuming' if state else 'starting'}", flush=True)
        result = run_search(SPACE, data=data, name=name, seed=seed, max_epochs=args.max_epochs,
                            max_concurrent=args.max_concurrent, cpus_per_trial=args.cpus_per_trial, smoke=args.smoke,
                            tracking_uri=args.tracking_uri, storage_path=args.storage_path, top_k=1,
                            resume=state is not None, **options)
        if result.interrupted:
            print(f"{name} interrupted: run the same command again to continue")
            return None
        experiment = client.get_experiment_by_name(experiment_name(SPACE))
    return experiment.experiment_id


def report_noise(baseline: dict[int, list[tuple[int, float]]], retrained: dict[int, list[float]],
                 weight_seeds: list[int]) -> None:
    """How much of random + FIFO's best score (the target) is its configuration, and how much the draw of the
    initial weights: the same configuration trained again with other seeds."""
    print(f"\n| seed | random + FIFO's best (the target) | its configuration, weight seeds "
          f"{', '.join(map(str, weight_seeds))} | mean ± std | target - mean |")
    print("|---:|---:|---|---:|---:|")
    for seed, scores in retrained.items():
        target = baseline[seed][-1][1]
        mean = statistics.mean(scores)
        std = statistics.stdev(scores) if len(scores) > 1 else 0.0
        shown = ", ".join(f"{s:.2f}" for s in scores)
        print(f"| {seed} | {target:.2f} | {shown} | {mean:.2f} ± {std:.2f} | {target - mean:+.2f} |")


def report(curves: dict[str, dict[int, list[tuple[int, float]]]], args: argparse.Namespace, client) -> None:
    baseline = "random+fifo"
    print(f"\n| method | best {SPACE} validation score (mean ± std over seeds) | trial-epochs spent | "
          f"trial-epochs to reach random+FIFO's best, as a fraction of its budget |")
    print("|---|---:|---:|---:|")
    reached: dict[str, list[float]] = {}
    for method, by_seed in curves.items():
        bests = [pts[-1][1] for pts in by_seed.values()]
        spent = [pts[-1][0] for pts in by_seed.values()]
        fractions = [epochs_to_reach(pts, curves[baseline][seed][-1][1]) / curves[baseline][seed][-1][0]
                     for seed, pts in by_seed.items()]
        shown = ", ".join("never" if math.isinf(f) else f"{f:.0%}" for f in fractions)
        std = statistics.stdev(bests) if len(bests) > 1 else 0.0
        print(f"| {method} | {statistics.mean(bests):.2f} ± {std:.2f} | {statistics.mean(spent):.0f} | {shown} |")
        reached[method] = fractions
    print(f"\ngoal: TPE + ASHA needs <= {GOAL_FRACTION:.0%} of random + FIFO's trial-epochs on every seed")
    for method in (m for m in reached if m.startswith("tpe+asha")):
        print(f"  {method}: {'met' if all(f <= GOAL_FRACTION for f in reached[method]) else 'NOT met'}")
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for (method, by_seed), color in zip(curves.items(), plt.get_cmap("tab10").colors, strict=False):
        for k, pts in enumerate(by_seed.values()):
            ax.step(*zip(*pts, strict=True), where="post", color=color, alpha=0.8, label=method if k == 0 else None)
    ax.set(xlabel="cumulative trial-epochs", ylabel="best validation Parzen LL so far (nats)",
           title=f"{SPACE}: {args.num_samples} trials x {args.max_epochs} epochs, {args.train_size} images")
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.out, dpi=120)
    experiment = client.get_experiment_by_name(experiment_name(SPACE))
    run = client.create_run(experiment.experiment_id, run_name="search-efficiency",
                            tags={"aae_benchmark": "search_efficiency"})
    client.log_artifact(run.info.run_id, args.out)
    client.set_terminated(run.info.run_id)
    print(f"\ncurves: {args.out} (also on MLflow run {run.info.run_id})")


if __name__ == "__main__":
    sys.exit(main())
