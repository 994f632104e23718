"""The Ray Tune function trainable: one search trial = the core training loop + per-epoch validation score.

Tune passes the sampled parameters as ``config`` (flat dotted keys); fixed settings and the dataset arrive
through ``tune.with_parameters`` (so the data sits once in the object store and every trial on a node maps the
same memory). Each epoch the trial reports its metrics together with a checkpoint holding the full trainer state,
so a failed or paused trial resumes exactly from ``tune.get_checkpoint()``.

The score a search optimises is the space's validation metric (aae_tune.evaluate.scores): for the likelihood
experiment a Parzen estimate on validation images only (sigma chosen on a second validation slice), for the
others the paper's classification / clustering / component / reconstruction figure on validation images. Test data
never enters a trial.
"""

from __future__ import annotations

import logging
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray
import torch
from ray import tune

from aae_tune.data.splits import SplitData
from aae_tune.errors import TrainingDiverged
from aae_tune.evaluate.scores import validation_scores
from aae_tune.model.io import resolve_device, save_model_files
from aae_tune.names import DIVERGED_FILE
from aae_tune.search.space import SearchSpace
from aae_tune.train import Trainer


@dataclass(frozen=True)
class TrialSettings:
    """What every trial of one search shares (everything except the sampled parameters)."""

    space: SearchSpace
    seed: int
    max_epochs: int
    smoke: bool = False
    threads: int = 1  # torch intra-op threads per trial (= CPUs per trial)


def trial_config(settings: TrialSettings, sampled: dict[str, Any]):
    """The ExperimentConfig a trial trains: space defaults + sampled values + the search's seed and budget."""
    cfg = settings.space.experiment_config(sampled, smoke=settings.smoke)
    return cfg.replace(seed=settings.seed, epochs=settings.max_epochs)


def validation_metrics(trainer: Trainer, data: SplitData, settings: TrialSettings) -> dict[str, float]:
    ev = settings.space.evaluation
    try:
        scores = validation_scores(trainer.model, data, seed=settings.seed, parzen_samples=ev.valid_samples)
    except ValueError as exc:  # non-finite samples: the decoder blew up although the losses stayed finite
        raise TrainingDiverged(f"epoch {trainer.epoch}: validation samples are not finite ({exc})") from exc
    bad = [k for k, v in scores.items() if not math.isfinite(v)]
    if bad:
        raise TrainingDiverged(f"epoch {trainer.epoch}: non-finite {', '.join(bad)}")
    return scores


def aae_trainable(config: dict[str, Any], settings: TrialSettings, data: SplitData) -> None:
    """Train one sampled config, reporting every epoch with a checkpoint (current ``ray.tune`` API)."""
    torch.set_num_threads(max(1, settings.threads))
    logging.getLogger("ray.train").setLevel(logging.WARNING)  # not one "Checkpoint successfully created" per epoch
    cfg = trial_config(settings, config)
    trainer = Trainer(cfg, data, device=resolve_device(None))  # CUDA iff Ray gave this trial a GPU
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            marker = Path(directory) / DIVERGED_FILE
            if marker.is_file():  # a retry of a diverged trial: training is deterministic, it would diverge again
                raise TrainingDiverged(marker.read_text())
            trainer.load(directory)
    try:
        train_and_report(trainer, data, settings)
    except TrainingDiverged as exc:
        report_divergence(exc, settings)
        raise


def report_divergence(exc: TrainingDiverged, settings: TrialSettings) -> None:
    """Leave a checkpoint that says "diverged" before failing, so that Tune's retries (FailureConfig) stop at once.
    Its score is the worst possible, so it is never a trial's best checkpoint; it carries no "epoch", so ASHA
    ignores it."""
    space = settings.space
    worst = -math.inf if space.mode == "max" else math.inf
    with tempfile.TemporaryDirectory(prefix="aae_diverged_") as directory:
        (Path(directory) / DIVERGED_FILE).write_text(str(exc))
        tune.report({space.metric: worst, "diverged": 1.0}, checkpoint=tune.Checkpoint.from_directory(directory))


def train_and_report(trainer: Trainer, data: SplitData, settings: TrialSettings) -> None:
    cfg = trainer.cfg
    every = settings.space.evaluation.every_epochs
    last_score: dict[str, float] = {}
    while trainer.epoch < cfg.epochs:
        metrics = trainer.train_epoch()
        if trainer.epoch % every == 0 or trainer.epoch == cfg.epochs or not last_score:
            last_score = validation_metrics(trainer, data, settings) | {"valid_epoch": trainer.epoch}
        # node_id makes placement visible (which Ray node ran which epoch); the driver records it as a tag.
        metrics.update(last_score, epoch=trainer.epoch, node_id=ray.get_runtime_context().get_node_id())
        with tempfile.TemporaryDirectory(prefix="aae_ckpt_") as directory:
            trainer.save(directory)
            save_model_files(trainer.model, directory)  # the safe model files, for MLflow and sampling
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(directory))
