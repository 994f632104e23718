"""What could ASHA alone save? Ray Tune's own ASHA scheduler replayed over the curves that random + FIFO recorded.

ASHA changes nothing in a trial but where it stops: a configuration's scores up to that epoch are the ones it would
have reported under FIFO. So the full 12-epoch curves of ``benchmarks/search_efficiency.py``'s random + FIFO searches
(read from its MLflow store; run that benchmark first) let any grace period and reduction factor be replayed exactly,
for random proposals, without training anything. The replay feeds each epoch's report to a real
``ray.tune.schedulers.ASHAScheduler`` (the search's own settings: ``time_attr="epoch"``, ``max_t``, the space's metric
and mode) with two trials training at once, one epoch each per step, a new configuration starting when one stops, and
the score carried between scored epochs as the trainable reports it. ASHA ranks a rung by the trial's running score
(its best report so far: ``aae_tune.search.scoring.tune_metric``), as the search's does.

Two tables:

* **the searches' own proposals**: per seed, random + FIFO's 16 configurations in the order they started, under ASHA;
  the target is that seed's best (what random + FIFO reached with its whole budget). "FIFO, replayed" is the check
  against the recorded search: it differs from the search's own fraction only where the recorded trials finished
  their epochs in another order than the replay's lock-step (two trials, one epoch each per step). A real search
  ``benchmarks/search_efficiency.py --methods random+asha`` trains the same configurations and stops them where
  its ASHA decides, which depends on that order too;
* **fresh draws**: the pooled configurations of all seeds are shuffled ``--draws`` times; the first ``--num-samples``
  are a random + FIFO search (its best is the target, its trial-epochs the budget), the next ``--trials`` configurations
  go to ASHA. The table gives how often ASHA reaches the target within ``--goal`` of the budget, and for reference how
  often random + FIFO on another draw of the same size does (training only ``goal x num_samples`` configurations).

A TPE + ASHA search can do better than these rows only by proposing better configurations than random search does.

    python benchmarks/asha_replay.py --tracking-uri sqlite:////path/eff/mlflow.db --seeds 0 1 2 \\
        --settings g1-rf2 g1-rf3 g1-rf4 g2-rf3 g3-rf3 g4-rf3
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from ray.tune.schedulers import ASHAScheduler, TrialScheduler  # noqa: E402

from aae_tune.mlflow_store import mlflow_client  # noqa: E402
from aae_tune.names import ROLE_TRIAL, TAG_ROLE, TAG_SEARCH, experiment_name  # noqa: E402
from aae_tune.search.space import load_space  # noqa: E402

SPACE = "likelihood_mnist"
CONCURRENT = 2  # as the search-efficiency searches ran


@dataclass(frozen=True)
class Recorded:
    """One random + FIFO trial: the score it reported after each epoch it trained (carried between scored epochs;
    -inf where none was finite yet)."""

    started: int  # ms, MLflow's start time of the trial's run
    reports: tuple[float, ...]  # reports[e - 1]: the score after epoch e

    def peak(self, mode: str) -> float:
        """Its best report at any epoch: what the search-efficiency benchmark's curves count."""
        return best(self.reports, mode)


def recorded_trials(client, experiment_id: str, name: str, metric: str) -> list[Recorded]:
    """The trials of search ``name`` in the order they started."""
    runs = client.search_runs([experiment_id], f"tags.{TAG_SEARCH} = '{name}' and tags.{TAG_ROLE} = '{ROLE_TRIAL}'",
                              max_results=10_000)
    trials = []
    for run in runs:
        scored = {m.step: m.value for m in client.get_metric_history(run.info.run_id, metric)
                  if math.isfinite(m.value)}
        epochs = sorted(m.step for m in client.get_metric_history(run.info.run_id, "recon_loss"))
        reports, last = [], -math.inf
        for epoch in epochs:
            last = scored.get(epoch, last)
            reports.append(last)
        if reports:
            trials.append(Recorded(run.info.start_time, tuple(reports)))
    return sorted(trials, key=lambda t: t.started)


def parse_setting(spec: str) -> tuple[int, float]:
    """``g<grace>-rf<reduction factor>`` -> (grace, factor)."""
    try:
        grace, factor = spec.split("-")
        if not (grace.startswith("g") and factor.startswith("rf")):
            raise ValueError
        return int(grace[1:]), float(factor[2:])
    except ValueError:
        raise SystemExit(f"--settings {spec}: write g<grace>-rf<factor>, e.g. g1-rf4") from None


def asha(spec: str, max_epochs: int, metric: str, mode: str) -> ASHAScheduler:
    """A fresh scheduler as the search builds it (aae_tune.search.driver.make_scheduler)."""
    grace, factor = parse_setting(spec)
    return ASHAScheduler(time_attr="epoch", metric=metric, mode=mode, max_t=max_epochs,
                         grace_period=min(grace, max_epochs), reduction_factor=factor)


def replay(trials: list[Recorded], scheduler: ASHAScheduler | None, metric: str, mode: str,
           target: float) -> int | None:
    """Trial-epochs spent on ``trials`` (proposed in this order; ``scheduler`` None: FIFO, every trial trains all
    its epochs) until a report reaches ``target``; None if none does."""
    queue = list(enumerate(trials))
    running: list[tuple[SimpleNamespace, Recorded]] = []
    spent = 0
    while queue or running:
        while queue and len(running) < CONCURRENT:
            index, trial = queue.pop(0)
            handle = SimpleNamespace(trial_id=str(index), epoch=0)
            if scheduler is not None:
                scheduler.on_trial_add(None, handle)
            running.append((handle, trial))
        for handle, trial in list(running):
            handle.epoch += 1
            spent += 1
            score = trial.reports[handle.epoch - 1]
            if (score >= target) if mode == "max" else (score <= target):
                return spent
            so_far = best(trial.reports[: handle.epoch], mode)  # what the search's ASHA ranks (best_<metric>)
            stop = scheduler is not None and scheduler.on_trial_result(
                None, handle, {"epoch": handle.epoch, metric: so_far}) == TrialScheduler.STOP
            if stop or handle.epoch == len(trial.reports):
                running.remove((handle, trial))
    return None


def best(scores: list[float], mode: str) -> float:
    return max(scores) if mode == "max" else min(scores)


def own_proposals_table(by_seed: dict[int, list[Recorded]], settings: list[str], args, metric: str,
                        mode: str) -> None:
    sizes = sorted({len(trials) for trials in by_seed.values()})
    print(f"\n**The searches' own proposals**: each seed's {'/'.join(map(str, sizes))} random configurations in the "
          "order they started; fraction of random + FIFO's trial-epochs spent when the replay first reports that "
          "seed's best (FIFO replayed: the check against the recorded search)")
    print("| scheduler | " + " | ".join(f"seed {s}" for s in by_seed) + " |")
    print("|---|" + "---:|" * len(by_seed))
    targets = {seed: best([t.peak(mode) for t in trials], mode) for seed, trials in by_seed.items()}
    print("| (random + FIFO's best) | " + " | ".join(f"{t:.2f}" for t in targets.values()) + " |")
    for spec in [None, *settings]:
        cells = []
        for seed, trials in by_seed.items():
            budget = sum(len(t.reports) for t in trials)
            scheduler = None if spec is None else asha(spec, args.max_epochs, metric, mode)
            spent = replay(trials, scheduler, metric, mode, targets[seed])
            cells.append("never" if spent is None else f"{spent / budget:.0%}")
        print(f"| {'FIFO, replayed' if spec is None else f'ASHA {spec}'} | " + " | ".join(cells) + " |")


def fresh_draws_table(pool: list[Recorded], settings: list[str], args, metric: str, mode: str) -> None:
    rng = random.Random(args.draw_seed)
    draws = []
    for _ in range(args.draws):
        order = rng.sample(pool, len(pool))
        draws.append((order[: args.num_samples], order[args.num_samples:][: args.trials]))
    full = [t for t in pool if len(t.reports) == args.max_epochs]
    print(f"\n**Fresh draws** from {len(pool)} recorded configurations ({len(full)} trained all {args.max_epochs} "
          f"epochs), {args.draws} draws (seed {args.draw_seed}): random + FIFO on {args.num_samples} of them sets "
          f"target and budget, ASHA gets {len(draws[0][1])} others")
    print(f"| proposals, scheduler | reached the target within {args.goal:.0%} of the budget | median fraction "
          f"(never = inf) | reached at all |")
    print("|---|---:|---:|---:|")
    rows: dict[str, list[float]] = {}
    for baseline, others in draws:  # reference: random + FIFO again, on configurations it has not seen
        budget = sum(len(t.reports) for t in baseline)
        target = best([t.peak(mode) for t in baseline], mode)
        spent = replay(others, None, metric, mode, target)
        rows.setdefault("random, FIFO (another draw)", []).append(math.inf if spent is None else spent / budget)
        for spec in settings:
            spent = replay(others, asha(spec, args.max_epochs, metric, mode), metric, mode, target)
            rows.setdefault(f"random, ASHA {spec}", []).append(math.inf if spent is None else spent / budget)
    for row, fractions in rows.items():
        within = sum(f <= args.goal for f in fractions) / len(fractions)
        reached = sum(math.isfinite(f) for f in fractions) / len(fractions)
        median = statistics.median(fractions)
        print(f"| {row} | {within:.0%} | {'never' if math.isinf(median) else f'{median:.0%}'} | {reached:.0%} |")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tracking-uri", required=True, help="the search-efficiency benchmark's MLflow store")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--num-samples", type=int, default=16, help="random + FIFO's trials per search")
    p.add_argument("--max-epochs", type=int, default=12)
    p.add_argument("--settings", nargs="+", default=["g1-rf2", "g1-rf3", "g1-rf4", "g2-rf3", "g3-rf3", "g4-rf3"])
    p.add_argument("--trials", type=int, default=32, help="configurations ASHA may start per fresh draw")
    p.add_argument("--draws", type=int, default=2000)
    p.add_argument("--draw-seed", type=int, default=0)
    p.add_argument("--goal", type=float, default=0.25)
    args = p.parse_args(argv)
    for spec in args.settings:
        parse_setting(spec)
    space = load_space(SPACE)
    client = mlflow_client(args.tracking_uri)
    experiment = client.get_experiment_by_name(experiment_name(SPACE))
    if experiment is None:
        raise SystemExit(f"{args.tracking_uri} holds no {SPACE} searches: run benchmarks/search_efficiency.py first")
    by_seed = {seed: recorded_trials(client, experiment.experiment_id, f"eff-random-fifo-s{seed}", space.metric)
               for seed in args.seeds}
    missing = [seed for seed, trials in by_seed.items() if len(trials) < args.num_samples]
    if missing:
        raise SystemExit(f"random + FIFO searches of seeds {missing} have fewer than {args.num_samples} trials "
                         "recorded: finish them with benchmarks/search_efficiency.py")
    own_proposals_table(by_seed, args.settings, args, space.metric, space.mode)
    pool = [t for trials in by_seed.values() for t in trials]
    if len(pool) < args.num_samples + 2:
        raise SystemExit(f"{len(pool)} recorded configurations: too few for fresh draws of {args.num_samples}")
    fresh_draws_table(pool, args.settings, args, space.metric, space.mode)
    return 0


if __name__ == "__main__":
    sys.exit(main())
