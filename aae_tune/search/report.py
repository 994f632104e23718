"""The search report on the parent MLflow run (``report/``): Optuna's plots of the search (optimisation history,
parallel coordinates, parameter importances), how many trials ASHA kept training at each epoch, the best
validation score against the trial-epochs spent so far, and the trial table as an MLflow table (the UI renders
it). Written once: a --resume of a finished search finds it and leaves it alone.

The plots are drawn from an in-memory Optuna study rebuilt from the trial rows (each trial's sampled values, list
choices as their text, and its score: ``search.scoring``), so a random search gets the same report as a TPE one.
"""

from __future__ import annotations

import logging
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402 - after the backend is chosen
import optuna  # noqa: E402

from aae_tune.search.results import TrialRow  # noqa: E402
from aae_tune.search.space import ParamSpec, SearchSpace  # noqa: E402
from aae_tune.search.storage_files import read_text  # noqa: E402
from aae_tune.search.values import choice_text  # noqa: E402

if TYPE_CHECKING:
    from aae_tune.search.tracking import SearchTracker

logger = logging.getLogger("aae_tune.report")
REPORT_DIR = "report"
OPTUNA_PLOTS = {
    "optimization_history": optuna.visualization.matplotlib.plot_optimization_history,
    "parallel_coordinate": optuna.visualization.matplotlib.plot_parallel_coordinate,
    "param_importances": optuna.visualization.matplotlib.plot_param_importances,
}


def _choice(value: Any) -> Any:
    """Optuna choices are scalars: a list-valued choice (e.g. lr drop epochs) is shown as its text, the same text
    the searcher drew (``search.values``)."""
    return value if value is None or isinstance(value, (bool, int, float, str)) else choice_text(value)


def optuna_distribution(spec: ParamSpec) -> optuna.distributions.BaseDistribution:
    d = spec.distribution
    if d in ("choice", "grid"):
        return optuna.distributions.CategoricalDistribution([_choice(v) for v in spec.values])
    if d == "randint":
        return optuna.distributions.IntDistribution(int(spec.low), int(spec.high) - 1)
    step = spec.q if d == "quniform" else None  # Optuna has no stepped log range: qloguniform is shown as log
    return optuna.distributions.FloatDistribution(spec.low, spec.high, log="log" in d, step=step)


def study_of(rows: list[TrialRow], space: SearchSpace) -> optuna.Study:
    """An in-memory study with one finished trial per scored row: its sampled parameters and best score."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize" if space.mode == "max" else "minimize")
    distributions = {key: optuna_distribution(spec) for key, spec in space.params.items()}
    for row in rows:
        if row.best_valid is None:
            continue
        params = {k: _choice(row.config[k]) for k in distributions if k in row.config}
        try:
            study.add_trial(optuna.trial.create_trial(
                params=params, distributions={k: distributions[k] for k in params}, value=row.best_valid))
        except ValueError as exc:  # a value outside its declared range (e.g. an edited space on --resume)
            logger.warning("report: trial %s left out of the Optuna plots: %s", row.trial_id, exc)
    return study


def save_optuna_plots(study: optuna.Study, out: Path) -> list[str]:
    """The plots Optuna can draw for this study (importances need two or more trials that differ)."""
    written = []
    for name, plot in OPTUNA_PLOTS.items():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # Optuna's "experimental" notes, matplotlib's flat-axis notes
                ax = plot(study)
        except (ValueError, RuntimeError, ZeroDivisionError) as exc:
            logger.info("report: no %s plot (%s)", name, exc)
            continue
        figure = (ax if not hasattr(ax, "__len__") else ax.flat[0]).figure
        figure.savefig(out / f"{name}.png", dpi=100, bbox_inches="tight")
        plt.close(figure)
        written.append(name)
    return written


def asha_rungs(space: SearchSpace, max_epochs: int) -> list[int]:
    """The epochs at which ASHA decides which trials go on (none for FIFO)."""
    sched = space.scheduler
    if sched.type != "asha":
        return []
    rungs, epoch = [], min(sched.grace_period, max_epochs)
    while epoch < max_epochs:
        rungs.append(epoch)
        epoch = int(epoch * sched.reduction_factor)
    return rungs


def save_survival_plot(rows: list[TrialRow], rungs: list[int], out: Path) -> None:
    """Trials still training at each epoch, with ASHA's rungs marked."""
    last = max((r.epochs for r in rows), default=0)
    epochs = list(range(1, last + 1))
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.step(epochs, [sum(r.epochs >= e for r in rows) for e in epochs], where="post")
    for rung in rungs:
        ax.axvline(rung, color="grey", linestyle=":", linewidth=1)
    ax.set(xlabel="epoch", ylabel="trials still training", title="trial survival (dotted: ASHA rungs)")
    fig.savefig(out / "rung_survival.png", dpi=100, bbox_inches="tight")
    plt.close(fig)


def best_so_far(reports: list[tuple[float, float]], mode: str) -> list[float]:
    """Running best of the validation scores in the order they were reported: (timestamp, score) pairs."""
    pick = max if mode == "max" else min
    best: list[float] = []
    for _, score in sorted(reports, key=lambda r: r[0]):
        best.append(score if not best else pick(best[-1], score))
    return best


def save_efficiency_plot(reports: list[tuple[float, float]], space: SearchSpace, out: Path) -> None:
    """The best validation score against the trial-epochs the search had spent when it was reached."""
    best = best_so_far(reports, space.mode)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(range(1, len(best) + 1), best)
    ax.set(xlabel="cumulative trial-epochs", ylabel=f"best {space.metric}", title="best score against compute")
    fig.savefig(out / "best_vs_trial_epochs.png", dpi=100, bbox_inches="tight")
    plt.close(fig)


def log_search_report(tracker: SearchTracker, rows: list[TrialRow], records: list[dict[str, Any]],
                      reports: list[tuple[float, float]], space: SearchSpace, max_epochs: int) -> None:
    """Every report figure and the trial table on the parent run, unless a previous finalize wrote them."""
    client, parent = tracker.client, tracker.parent_run_id
    if client.list_artifacts(parent, REPORT_DIR):
        return
    with tempfile.TemporaryDirectory(prefix="aae_report_") as tmp:
        out = Path(tmp)
        save_optuna_plots(study_of(rows, space), out)
        save_survival_plot(rows, asha_rungs(space, max_epochs), out)
        if reports:
            save_efficiency_plot(reports, space, out)
        client.log_artifacts(parent, tmp, REPORT_DIR)
    columns = {key: [r.get(key) for r in records] for key in dict.fromkeys(k for r in records for k in r)}
    client.log_table(parent, data=columns, artifact_file=f"{REPORT_DIR}/trials.json")


def log_pbt_policy(tracker: SearchTracker, experiment_dir: str) -> None:
    """PBT's record of every exploit, one JSON list per line as Tune writes it in the search's folder (member,
    member copied, their iterations, the copied config, the mutated config): ``pbt/pbt_global.jsonl`` on the
    parent run. Each member's resulting schedule is in its run's ``lr_*`` metrics."""
    text = read_text(f"{experiment_dir.rstrip('/')}/pbt_global.txt")
    if text:
        tracker.client.log_text(tracker.parent_run_id, text, "pbt/pbt_global.jsonl")
