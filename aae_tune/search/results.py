"""What a finished search's trials were, as plain typed data: one ``TrialRow`` per Tune result.

A row holds the trial's score as ``search.scoring`` defines it (the best validation value of the metric over the
trial's epochs, ``best_valid``, and the epoch that reached it, ``best_epoch``) with the checkpoint of that epoch,
from which the test figure comes. Tune's results are read through the few attributes ``TuneResult`` names, so
everything here runs (and is unit-tested) without Ray or MLflow.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from aae_tune.errors import is_divergence
from aae_tune.search.scoring import BEST_TRIAL_PREFIX, CHECKPOINT_SCORE, best_trial_key

if TYPE_CHECKING:  # types only: this module stays importable without Ray
    from ray import tune

    from aae_tune.search.space import SearchSpace

STATUSES = ("COMPLETED", "STOPPED", "DIVERGED", "ERROR")


class TuneResult(Protocol):
    """The parts of ``ray.tune.Result`` a row is made from."""

    metrics: dict[str, Any] | None
    path: str
    config: dict[str, Any] | None
    error: Any
    best_checkpoints: list[tuple[Any, dict[str, Any]]] | None
    metrics_dataframe: Any  # pandas.DataFrame of every reported result, or None


@dataclass
class TrialRow:
    trial_id: str
    run_id: str | None  # the trial's MLflow run
    status: str  # COMPLETED / STOPPED (by ASHA) / DIVERGED / ERROR
    epochs: int  # epochs trained
    best_valid: float | None  # the trial's score: the best validation value of the metric over its epochs
    config: dict[str, Any] = field(default_factory=dict)  # the sampled values, decoded (list choices as lists)
    best_epoch: int | None = None  # the epoch that reached best_valid: the checkpoint's epoch
    checkpoint: tune.Checkpoint | None = None  # that epoch's, with its filesystem (local, s3://, gs://, ...)
    error: str | None = None
    test_metrics: dict[str, float] = field(default_factory=dict)  # the paper's test figure, from `checkpoint`


def scored_itself(metrics: dict[str, Any], metric: str) -> bool:
    """A finite score computed on this epoch's own weights: not one carried from an earlier epoch
    (``evaluation.every_epochs`` > 1), nor a diverged trial's marker (-inf). The trainable says so with a finite
    ``checkpoint_score``; a result from before it did, with its ``valid_epoch``."""
    value = metrics.get(metric)
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        return False
    if CHECKPOINT_SCORE in metrics:
        return math.isfinite(metrics[CHECKPOINT_SCORE])
    return metrics.get("valid_epoch", metrics.get("epoch")) == metrics.get("epoch")


def best_checkpoint(checkpoints: list[tuple[Any, dict[str, Any]]] | None, metric: str,
                    mode: str) -> tuple[Any, dict[str, Any]] | tuple[None, None]:
    """The checkpoint of the trial's best scored epoch, with its metrics; the latest epoch wins a tie, as in
    ``scoring.RunningBest`` (and Tune's checkpoint manager, which keeps the later of equal scores)."""
    scored = [(c, m) for c, m in checkpoints or [] if scored_itself(m, metric)]
    if not scored:
        return None, None
    sign = -1.0 if mode == "max" else 1.0
    return min(scored, key=lambda cm: (sign * cm[1][metric], -cm[1].get("epoch", -math.inf)))


def trial_row(result: TuneResult, space: SearchSpace, max_epochs: int, runs: dict[str, str]) -> TrialRow:
    """One trial: its status, epochs trained, score (and the epoch and checkpoint of it) and decoded values."""
    metrics = result.metrics or {}
    trial_id = str(metrics.get("trial_id") or Path(result.path).name)
    ckpt, best = best_checkpoint(result.best_checkpoints, space.metric, space.mode)
    history = result.metrics_dataframe
    epochs = int(history["epoch"].max()) if history is not None and "epoch" in history else 0
    status = "COMPLETED" if epochs >= max_epochs else "STOPPED"
    if result.error:
        status = "DIVERGED" if is_divergence(str(result.error)) else "ERROR"
    return TrialRow(
        trial_id=trial_id, run_id=runs.get(trial_id), status=status, epochs=epochs,
        best_valid=None if best is None else float(best[space.metric]),
        best_epoch=None if best is None or "epoch" not in best else int(best["epoch"]),
        # the values that trained the best checkpoint: under PBT the final config may be a later mutation
        config={k: space.decode(k, v) for k, v in ((best or {}).get("config") or result.config or {}).items()},
        checkpoint=ckpt, error=None if result.error is None else str(result.error),
    )


def ranked(rows: list[TrialRow], mode: str) -> list[TrialRow]:
    """The rows with a score, best first (ties keep Tune's order)."""
    scored = [r for r in rows if r.best_valid is not None]
    return sorted(scored, key=lambda r: r.best_valid, reverse=mode == "max")


def best_trial_metrics(row: TrialRow, metric: str) -> dict[str, float]:
    """The parent run's figures of its best trial: ``best_trial_<metric>`` (its score), ``best_trial_epoch`` (the
    epoch that reached it) and ``best_trial_<test metric>`` (the test figure of that epoch's checkpoint)."""
    out = {best_trial_key(metric): row.best_valid}
    if row.best_epoch is not None:
        out[f"{BEST_TRIAL_PREFIX}epoch"] = float(row.best_epoch)
    return out | {best_trial_key(k): v for k, v in row.test_metrics.items()}


def checkpoint_uri(checkpoint: tune.Checkpoint | None) -> str | None:
    """Where a checkpoint lives, as a URI: Tune keeps cloud paths without their scheme (the filesystem has it)."""
    if checkpoint is None:
        return None
    kind = getattr(checkpoint.filesystem, "type_name", "local")
    scheme = {"gcs": "gs"}.get(kind, kind)  # pyarrow's filesystem type name -> the URI scheme users type
    return checkpoint.path if kind == "local" else f"{scheme}://{checkpoint.path}"


def trial_records(rows: list[TrialRow]) -> list[dict[str, Any]]:
    """One flat record per trial: the trial table's rows."""
    plain = [f.name for f in fields(TrialRow) if f.name not in ("config", "test_metrics", "checkpoint")]
    return [{**{k: getattr(r, k) for k in plain}, "checkpoint": checkpoint_uri(r.checkpoint),
             "config": str(r.config), **r.test_metrics} for r in rows]


def score_reports(results: Iterable[TuneResult], metric: str) -> list[tuple[float, float]]:
    """(timestamp, validation score) of every epoch every trial reported: the search's progress against compute."""
    out = []
    for result in results:
        history = result.metrics_dataframe
        if history is None or metric not in history or "timestamp" not in history:
            continue
        scored = history[["timestamp", metric]].dropna()
        out += [(float(t), float(v)) for t, v in scored.itertuples(index=False) if math.isfinite(v)]
    return out
