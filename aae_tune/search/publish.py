"""A finished search's results into MLflow: each trial's best checkpoint as an MLflow PyTorch model with its
figures, the test protocol for the best trials, the trial table, the best trial's figures on the parent run, and
the best model registered (and made ``champion`` when it beats the current one). Every step is idempotent, so a
``--resume`` of a finished search repeats nothing that already reached MLflow."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import torch

from aae_tune.data.splits import SplitData
from aae_tune.evaluate.parallel import ParallelParzenRun, parallel_parzen_run
from aae_tune.evaluate.parzen import ParzenResult
from aae_tune.evaluate.scores import TEST_PREFIX, describe_test_scores, test_scores
from aae_tune.figures.sets import trial_figures
from aae_tune.model.aae import AdversarialAutoencoder
from aae_tune.model.io import load_model_files
from aae_tune.names import (
    CHAMPION_ALIAS,
    CONFIG_FILE,
    STATE_FILE,
    TAG_BEST_TRIAL,
    TAG_MODEL_URI,
    TAG_REGISTERED,
    TAG_SEARCH,
    VERSION_METRIC,
    VERSION_SCORE,
    VERSION_SMOKE,
    experiment_name,
)
from aae_tune.search.request import SearchRequest
from aae_tune.search.results import TrialRow, best_trial_metrics
from aae_tune.search.summary import score_text
from aae_tune.search.tracking import SearchTracker


def log_trial_model(tracker: SearchTracker, row: TrialRow, data: SplitData, seed: int) -> str:
    """Model (MLflow PyTorch flavour + the safe state-dict files), sample grid and latent scatter PNGs."""
    run = tracker.client.get_run(row.run_id)
    if TAG_MODEL_URI in run.data.tags:
        return run.data.tags[TAG_MODEL_URI]
    with row.checkpoint.as_directory() as directory:  # local, or downloaded from cloud storage
        return _log_model_dir(tracker, row, Path(directory), data, seed, run.info.status)


def _log_model_dir(tracker: SearchTracker, row: TrialRow, directory: Path, data: SplitData, seed: int,
                   status: str) -> str:
    model = load_model_files(directory, device="cpu")
    with tempfile.TemporaryDirectory(prefix="aae_figs_") as tmp:
        trial_figures(model, data, tmp, seed=seed)
        tracker.client.log_artifacts(row.run_id, tmp, "figures")
    example = model.export_example(torch.as_tensor(np.asarray(data.valid_x[:2])),
                                   torch.as_tensor(np.asarray(data.valid_y[:2])))
    with mlflow.start_run(run_id=row.run_id):
        # MLflow's default 'pt2' format is a pickle-free torch.export graph of forward() (reconstruction); the
        # extra files carry the full model (sampling too) as a weights-only state dict for aae_tune's loaders.
        info = mlflow.pytorch.log_model(
            model, name="model", input_example=example.numpy(),
            extra_files=[str(directory / CONFIG_FILE), str(directory / STATE_FILE)],
            # only public packages: the pt2 graph needs torch and mlflow, not aae_tune (no index serves it)
            pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", f"mlflow=={mlflow.__version__}"],
        )
        mlflow.set_tag(TAG_MODEL_URI, info.model_uri)
    tracker.client.set_terminated(row.run_id, status=status if status != "RUNNING" else "FINISHED")
    return info.model_uri


def evaluate_test(tracker: SearchTracker, row: TrialRow, data: SplitData, request: SearchRequest) -> None:
    """The paper's test figure for one of the best trials (``test_scores``; Table 1's Parzen protocol runs on Ray),
    from the checkpoint of the trial's best epoch and logged at that epoch's step. Reported, never used to choose.
    A --resume of a finished search reads it from MLflow instead of recomputing."""
    existing = tracker.client.get_run(row.run_id).data.metrics
    if not any(k.startswith(TEST_PREFIX) for k in existing):
        with row.checkpoint.as_directory() as directory:
            model = load_model_files(directory, device="cpu")
        ray_runs: list[ParallelParzenRun] = []

        def parzen_on_ray(model: AdversarialAutoencoder, valid: np.ndarray, test: np.ndarray, n_samples: int,
                          seed: int) -> ParzenResult:
            ray_runs.append(parallel_parzen_run(model, valid, test, n_samples=n_samples, seed=seed, progress=True))
            return ray_runs[-1].result

        scores = test_scores(model, data, parzen_samples=request.final_samples, seed=request.seed,
                             parzen=parzen_on_ray)
        for run in ray_runs:  # which Ray nodes scored this model: on a cluster the evaluation is spread like the trials
            tracker.set_tags(row.run_id, {"parzen_ray_nodes": ",".join(run.nodes), "parzen_tasks": len(run.task_nodes)})
        tracker.log_metrics(row.run_id, scores, step=row.best_epoch if row.best_epoch is not None else row.epochs)
        existing = scores
    row.test_metrics = {k: v for k, v in sorted(existing.items()) if k.startswith(TEST_PREFIX)}


def register_best(tracker: SearchTracker, row: TrialRow, model_uri: str, request: SearchRequest) -> str:
    """Register the best trial's model as a new version (described: search, trial, figures, data) and move the
    ``champion`` alias to it when it beats the current champion (see ``promote_champion``)."""
    parent = tracker.client.get_run(tracker.parent_run_id)
    if TAG_REGISTERED in parent.data.tags:
        return parent.data.tags[TAG_REGISTERED]
    space = request.space
    tags = {VERSION_METRIC: space.metric, VERSION_SCORE: repr(row.best_valid), TAG_SEARCH: request.name,
            VERSION_SMOKE: str(request.smoke).lower()}
    version = mlflow.register_model(model_uri, experiment_name(space.name), tags=tags)
    test = "; ".join(describe_test_scores(row.test_metrics)) or "no test figure"
    tracker.client.update_model_version(
        version.name, version.version,
        description=f"search {request.name}, trial {row.trial_id} (MLflow run {row.run_id}): "
                    f"{score_text(space.metric, row, '.4g')} (validation, {space.mode}); {test}; data: "
                    f"{data_source(tracker)}{'; smoke run' if request.smoke else ''}",
    )
    promote_champion(tracker, version.name, version.version, tags, space.mode)
    uri = f"models:/{version.name}/{version.version}"
    tracker.set_tags(tracker.parent_run_id, {TAG_REGISTERED: uri, TAG_BEST_TRIAL: row.trial_id})
    return uri


def promote_champion(tracker: SearchTracker, name: str, version: str, tags: dict[str, str], mode: str) -> None:
    """Point ``models:/<name>@champion`` at ``version`` unless the current champion is better: a full-budget
    version beats a smoke one; between two of the same kind and metric, the better validation score wins."""
    client = tracker.client
    try:
        current = client.get_model_version_by_alias(name, CHAMPION_ALIAS)
    except mlflow.exceptions.MlflowException:  # no champion yet
        current = None
    if current is not None:
        old = current.tags

        def rank(t: dict[str, str]) -> tuple[bool, float]:
            score = float(t.get(VERSION_SCORE, "nan"))
            return t.get(VERSION_SMOKE) != "true", score if mode == "max" else -score

        same_metric = old.get(VERSION_METRIC) == tags[VERSION_METRIC]
        if same_metric and not rank(tags) > rank(old):
            return
    client.set_registered_model_alias(name, CHAMPION_ALIAS, version)


def log_best_trial(tracker: SearchTracker, row: TrialRow, metric: str) -> None:
    """The best trial's score, its epoch and its test figure on the parent run (``best_trial_*``)."""
    tracker.log_metrics(tracker.parent_run_id, best_trial_metrics(row, metric), step=0)


def log_trial_table(tracker: SearchTracker, records: list[dict[str, Any]]) -> None:
    table = pa.Table.from_pylist(records)
    with tempfile.TemporaryDirectory(prefix="aae_table_") as tmp:
        pq.write_table(table, Path(tmp) / "trials.parquet")
        pa_csv.write_csv(table, Path(tmp) / "trials.csv")
        tracker.client.log_artifacts(tracker.parent_run_id, tmp, "summary")


def data_source(tracker: SearchTracker) -> str:
    return tracker.lineage.source if tracker.lineage else "unknown"
