"""The Ray Tune function trainable: one search trial = the core training loop + per-epoch validation score.

Tune passes the sampled parameters as ``config`` (flat dotted keys); fixed settings and the dataset arrive
through ``tune.with_parameters`` (so the data sits once in the object store and every trial on a node maps the
same memory). Each epoch the trial reports its metrics together with a checkpoint holding the full trainer state,
so a failed or paused trial resumes exactly from ``tune.get_checkpoint()`` — or, when that checkpoint cannot be
read (a truncated or corrupt ``trainer.pt``), from the trial's newest earlier checkpoint that can (``restore_trainer``).

The score a search optimises is the space's validation metric (aae_tune.evaluate.scores): for the likelihood
experiment a Parzen estimate on validation images only (sigma chosen on a second validation slice), for the
others the paper's classification / clustering / component / reconstruction figure on validation images. Test data
never enters a trial. Besides the epoch's value, every report carries the trial's running score (``best_<metric>``,
``best_epoch``: ``search.scoring``), which every checkpoint saves, so a restored trial goes on from it.
"""

from __future__ import annotations

import logging
import math
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray
import torch
from pyarrow import fs as pafs
from ray import tune

from aae_tune.data.splits import SplitData
from aae_tune.errors import CheckpointError, TrainingDiverged
from aae_tune.evaluate.scores import validation_scores
from aae_tune.model.io import resolve_device, save_model_files
from aae_tune.names import DIVERGED_FILE
from aae_tune.search.scoring import CHECKPOINT_SCORE, MAX_SCORE_BYTES, SCORE_FILE, RunningBest, worst
from aae_tune.search.space import SearchSpace
from aae_tune.search.storage_files import read_bytes_on
from aae_tune.train import Trainer

logger = logging.getLogger("aae_tune.search")
CHECKPOINT_FOLDER = re.compile(r"checkpoint_(\d+)")  # Tune's name for a trial's n-th checkpoint folder


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
    best = RunningBest(settings.space.metric, settings.space.mode)
    if checkpoint is not None:
        folder = Path(tune.get_context().get_trial_dir()).name
        best = restored_best(restore_trainer(trainer, checkpoint, trial_folder=folder), folder, settings.space)
    try:
        train_and_report(trainer, data, settings, best)
    except TrainingDiverged as exc:
        report_divergence(exc, settings, best)
        raise


def restore_trainer(trainer: Trainer, checkpoint: tune.Checkpoint, trial_folder: str | None = None) -> tune.Checkpoint:
    """Load into ``trainer`` the newest of the trial's checkpoints that can be read, and return it.

    ``checkpoint`` (Tune's latest) comes first. If it cannot be read (truncated or corrupt ``trainer.pt``: Tune would
    retry from the same bad file until ``max_failures`` is spent), the trial's earlier checkpoints follow, newest
    first, and the first that loads is used, with one warning naming the bad ones. Training then re-runs the epochs
    after it: the MLflow callback logs only epochs its run does not have yet, and ASHA (``time_attr="epoch"``) has
    already recorded the trial at the rungs those epochs reach, so neither counts an epoch twice. ``trial_folder``
    (the name of the trial's folder) keeps the fallback within the trial's own checkpoints: a PBT member restored
    from another member's checkpoint is not moved to an older state of that member. None: no such check.

    A ``DIVERGED`` marker raises ``TrainingDiverged`` as before; if no checkpoint loads, a ``CheckpointError`` names
    each one tried with its reason, so that every retry of the trial fails visibly, for the same stated reason.
    """
    unreadable: list[tuple[str, str]] = []  # (location, reason), newest first
    for candidate in checkpoints_to_try(checkpoint, trial_folder):
        try:
            load_checkpoint(trainer, candidate)
        except CheckpointError as exc:  # Trainer.load checks before it changes anything: the trainer is untouched
            unreadable.append((checkpoint_location(candidate), one_line(exc)))
            continue
        if unreadable:
            bad = "; ".join(f"{where} ({why})" for where, why in unreadable)
            logger.warning("unreadable checkpoint %s: resuming from the earlier checkpoint %s (epoch %d) instead",
                           bad, checkpoint_location(candidate), trainer.epoch)
        return candidate
    tried = "".join(f"\n  {where}: {why}" for where, why in unreadable)
    raise CheckpointError(f"no checkpoint of this trial can be read, so it cannot resume; tried, newest first:{tried}")


def checkpoints_to_try(checkpoint: tune.Checkpoint, trial_folder: str | None) -> Iterator[tune.Checkpoint]:
    """``checkpoint``, then (listed only if it is needed) the trial's earlier ones, newest first."""
    yield checkpoint
    yield from earlier_checkpoints(checkpoint, trial_folder)


def load_checkpoint(trainer: Trainer, checkpoint: tune.Checkpoint) -> None:
    with checkpoint.as_directory() as directory:  # local, or downloaded from cloud storage
        marker = Path(directory) / DIVERGED_FILE
        if marker.is_file():  # a retry of a diverged trial: training is deterministic, it would diverge again
            raise TrainingDiverged(marker.read_text())
        trainer.load(directory)


def earlier_checkpoints(checkpoint: tune.Checkpoint, trial_folder: str | None) -> list[tune.Checkpoint]:
    """The ``checkpoint_NNNNNN`` folders beside ``checkpoint`` with a lower index, newest first. Listed on the
    checkpoint's own filesystem (pyarrow, as Tune writes them), so a storage path in the cloud (s3://...) works
    like a local one. None when ``checkpoint`` is not a numbered folder of ``trial_folder``."""
    parent, _, name = checkpoint.path.rstrip("/").rpartition("/")
    index = checkpoint_index(name)
    if index is None or (trial_folder is not None and parent.rpartition("/")[2] != trial_folder):
        return []
    return [c for c in trial_checkpoints(checkpoint.filesystem, parent)
            if checkpoint_index(c.path.rpartition("/")[2]) < index]


def restored_best(checkpoint: tune.Checkpoint, trial_folder: str | None, space: SearchSpace) -> RunningBest:
    """The trial's running score at the checkpoint it resumes from. From its own checkpoint: the score saved in it.
    From another trial's (a PBT member that copied a better one): the score is this trial's own, over the epochs it
    reported itself, so it comes from this trial's newest checkpoint instead. Empty when none holds one (a
    checkpoint written before scores were saved): the score then starts again at the next scored epoch."""
    parent, _, _ = checkpoint.path.rstrip("/").rpartition("/")
    root, _, folder = parent.rpartition("/")
    own = trial_folder is None or folder == trial_folder
    mine = [checkpoint] if own else trial_checkpoints(checkpoint.filesystem, f"{root}/{trial_folder}")
    for candidate in mine:
        saved = read_best(candidate, space)
        if saved is not None:
            return saved
    return RunningBest(space.metric, space.mode)


def read_best(checkpoint: tune.Checkpoint, space: SearchSpace) -> RunningBest | None:
    """The score file alone, read on the checkpoint's own filesystem (no download of the whole checkpoint)."""
    try:  # a file in the storage path is untrusted: bounded, then validated
        data = read_bytes_on(checkpoint.filesystem, f"{checkpoint.path.rstrip('/')}/{SCORE_FILE}", MAX_SCORE_BYTES)
    except (OSError, ValueError):  # unreadable, or larger than a trial ever writes: no saved score
        return None
    if data is None or len(data) > MAX_SCORE_BYTES:  # absent (an older checkpoint), or grew while read
        return None
    return RunningBest.from_json(data.decode(errors="replace"), space.metric, space.mode)


def trial_checkpoints(filesystem: pafs.FileSystem, folder: str) -> list[tune.Checkpoint]:
    """The numbered checkpoints of a trial's folder, newest first."""
    entries = filesystem.get_file_info(pafs.FileSelector(folder, allow_not_found=True))
    numbered = [(checkpoint_index(e.base_name), e.path) for e in entries if e.type == pafs.FileType.Directory]
    newest = sorted(((i, path) for i, path in numbered if i is not None), reverse=True)
    return [tune.Checkpoint(path, filesystem=filesystem) for _, path in newest]


def checkpoint_index(folder_name: str) -> int | None:
    match = CHECKPOINT_FOLDER.fullmatch(folder_name)
    return int(match.group(1)) if match else None


def checkpoint_location(checkpoint: tune.Checkpoint) -> str:
    """Where a checkpoint lives as users write it: Tune keeps cloud paths without their scheme."""
    kind = getattr(checkpoint.filesystem, "type_name", "local")
    scheme = {"gcs": "gs"}.get(kind, kind)  # pyarrow's filesystem type name -> the URI scheme
    return checkpoint.path if kind == "local" else f"{scheme}://{checkpoint.path}"


def one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())  # torch's reasons can span lines; the error lists one checkpoint per line


def report_divergence(exc: TrainingDiverged, settings: TrialSettings, best: RunningBest | None = None) -> None:
    """Leave a checkpoint that says "diverged" before failing, so that Tune's retries (FailureConfig) stop at once.
    Its score is the worst possible, so it is never a trial's best checkpoint; it carries no "epoch", so ASHA
    ignores it. The trial's running score stays what its scored epochs reached."""
    space = settings.space
    low = worst(space.mode)
    best = best or RunningBest(space.metric, space.mode)
    with tempfile.TemporaryDirectory(prefix="aae_diverged_") as directory:
        (Path(directory) / DIVERGED_FILE).write_text(str(exc))
        tune.report({space.metric: low, CHECKPOINT_SCORE: low, "diverged": 1.0, **best.result()},
                    checkpoint=tune.Checkpoint.from_directory(directory))


def train_and_report(trainer: Trainer, data: SplitData, settings: TrialSettings,
                     best: RunningBest | None = None) -> None:
    cfg, space = trainer.cfg, settings.space
    every = space.evaluation.every_epochs
    best = best if best is not None else RunningBest(space.metric, space.mode)
    last_score: dict[str, float] = {}
    while trainer.epoch < cfg.epochs:
        metrics = trainer.train_epoch()
        scored = trainer.epoch % every == 0 or trainer.epoch == cfg.epochs or not last_score
        if scored:
            last_score = validation_metrics(trainer, data, settings) | {"valid_epoch": trainer.epoch}
        own = scored or space.metric in metrics  # the trainer's own metrics (valid_recon_loss) come every epoch
        # node_id makes placement visible (which Ray node ran which epoch); the driver records it as a tag.
        metrics.update(last_score, epoch=trainer.epoch, node_id=ray.get_runtime_context().get_node_id())
        if own:
            best.update(metrics[space.metric], trainer.epoch)
        # a carried score ranks its checkpoint last: the best checkpoint is one whose own weights were scored
        metrics.update(best.result(), **{CHECKPOINT_SCORE: metrics[space.metric] if own else worst(space.mode)})
        with tempfile.TemporaryDirectory(prefix="aae_ckpt_") as directory:
            trainer.save(directory)
            save_model_files(trainer.model, directory)  # the safe model files, for MLflow and sampling
            (Path(directory) / SCORE_FILE).write_text(best.to_json())
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(directory))
