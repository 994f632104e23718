"""After the search: every trial's best checkpoint becomes an MLflow PyTorch model with its figures, the best K
trials (by the validation metric) get the full Table 1 Parzen protocol on Ray, the best one is registered, and
the parent run receives the trial table. Every step is idempotent, so ``--resume`` of a finished search repeats
nothing that already reached MLflow."""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import torch
from ray import tune
from tqdm.auto import tqdm

from aae_tune.cluster.browser import landing_url
from aae_tune.data.splits import SplitData
from aae_tune.errors import is_divergence
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
from aae_tune.search.lifecycle import resume_command
from aae_tune.search.report import log_pbt_policy, log_search_report
from aae_tune.search.request import SearchRequest
from aae_tune.search.tracking import SearchTracker, redact_uri

PAPER_DATA = "the paper's 50K/10K/10K MNIST split"


def search_description(request: SearchRequest, data_caveat: str) -> list[str]:
    """The parent run's description while the search runs (markdown lines): space, budget, data."""
    space = request.space
    return [
        f"**{space.name}**: {space.description}",
        f"- budget: {request.num_samples} trials x {request.max_epochs} epochs, searcher {space.searcher.type}, "
        f"scheduler {space.scheduler.type}, seed {request.seed}{' (smoke)' if request.smoke else ''}",
        f"- data: {data_caveat or PAPER_DATA}",
        *(f"- {line}" for line in (request.source.describe(space.metric) if request.source else [])),
    ]


@dataclass
class TrialRow:
    trial_id: str
    run_id: str | None
    status: str  # COMPLETED / STOPPED (by ASHA) / DIVERGED / ERROR
    epochs: int
    best_valid: float | None  # best value of the search metric over the trial's checkpoints
    config: dict[str, Any] = field(default_factory=dict)  # the sampled parameters
    checkpoint: tune.Checkpoint | None = None  # the best one, with its filesystem (local, s3://, gs://, ...)
    error: str | None = None
    test_metrics: dict[str, float] = field(default_factory=dict)  # the paper's test figure (scores.test_scores)


@dataclass
class SearchSummary:
    name: str
    experiment_dir: str
    tracking_uri: str
    experiment_name: str
    parent_run_id: str
    metric: str
    rows: list[TrialRow]
    best: TrialRow | None
    registered_model: str | None

    interrupted: bool = False
    note: str = ""
    recording_unfinished: bool = False  # trials done, MLflow unreachable while recording them
    finished_earlier: str = ""  # --resume of a finished search: its stored summary, printed again
    data_caveat: str = ""  # non-empty when the data is not the paper's: printed next to every figure
    experiment_id: str = ""

    @classmethod
    def interrupted_search(cls, request: SearchRequest, parent_run_id: str, note: str = "",
                           recording_unfinished: bool = False) -> SearchSummary:
        return cls(
            name=request.name, experiment_dir=request.experiment_dir, tracking_uri=request.tracking_uri,
            experiment_name=request.experiment_name, parent_run_id=parent_run_id, metric=request.space.metric,
            rows=[], best=None, registered_model=None, interrupted=True, note=note,
            recording_unfinished=recording_unfinished,
        )

    @classmethod
    def already_finished(cls, request: SearchRequest, note: str) -> SearchSummary:
        return cls(
            name=request.name, experiment_dir=request.experiment_dir, tracking_uri=request.tracking_uri,
            experiment_name=request.experiment_name, parent_run_id="", metric=request.space.metric,
            rows=[], best=None, registered_model=None, finished_earlier=note,
        )

    def description(self, request: SearchRequest) -> str:
        """Markdown for the parent run's page: the space, the budget, the data and the best trial's figures."""
        lines = search_description(request, self.data_caveat)
        if self.best is not None:
            b = self.best
            lines.append(f"- best trial `{b.trial_id}`: {self.metric} = {b.best_valid:.4g} (validation) after "
                         f"{b.epochs} epochs; registered as `{self.registered_model}`")
            lines += [f"  - {line} (reported, never optimised)" for line in describe_test_scores(b.test_metrics)]
        return "\n".join(lines)

    def browse_hint(self) -> str:
        """Where to look at the runs: the server's experiment page, or how to serve a local store first."""
        uri = redact_uri(self.tracking_uri)
        if uri.startswith(("http://", "https://")):
            return landing_url(uri, self.experiment_id)
        return f"mlflow ui --backend-store-uri {uri}, then {landing_url('http://127.0.0.1:5000', self.experiment_id)}"

    def render(self) -> str:
        if self.finished_earlier:
            return self.finished_earlier
        if self.interrupted:
            return (f"\n{self.note or 'search ' + self.name + ' was interrupted'}; its state is saved in "
                    f"{self.experiment_dir}.\ncontinue it with: {resume_command(self.name)}")
        counts = {s: sum(r.status == s for r in self.rows) for s in ("COMPLETED", "STOPPED", "DIVERGED", "ERROR")}
        lines = [
            f"\n== search {self.name}: {len(self.rows)} trials ({counts['COMPLETED']} completed, "
            f"{counts['STOPPED']} stopped early, {counts['DIVERGED']} diverged, {counts['ERROR']} failed)",
        ]
        for r in self.rows:
            if r.status in ("DIVERGED", "ERROR"):
                last = ((r.error or "").strip().splitlines() or ["unknown error"])[-1]
                lines.append(f"   {r.status.lower()}: trial {r.trial_id}: {last}")
        if self.best is None:
            lines.append("   no trial reported a score: see the errors above and the Tune logs")
        else:
            b = self.best
            caveat = f"  [{self.data_caveat}]" if self.data_caveat else ""
            lines += [
                f"best trial {b.trial_id}: {self.metric} = {b.best_valid:.2f} (validation) after {b.epochs} "
                f"epochs{caveat}",
                f"   config: {b.config}",
            ]
            tests = describe_test_scores(b.test_metrics)
            lines += [f"   {line}  (reported, never optimised){caveat}" for line in tests]
        lines += [
            f"MLflow: {redact_uri(self.tracking_uri)}, experiment {self.experiment_name}, parent run "
            f"{self.parent_run_id}",
            f"   browse: {self.browse_hint()}",
            f"registered model: {self.registered_model or '-'}",
            f"Tune results: {self.experiment_dir}",
        ]
        return "\n".join(lines)


def best_checkpoint(result: Any, metric: str, mode: str) -> tuple[Any, dict[str, Any]] | tuple[None, None]:
    # A diverged trial's last checkpoint is a marker with score -inf: never a model to log or evaluate.
    scored = [(c, m) for c, m in (result.best_checkpoints or [])
              if isinstance(m.get(metric), (int, float)) and math.isfinite(m[metric])]
    if not scored:
        return None, None
    pick = max if mode == "max" else min
    return pick(scored, key=lambda cm: cm[1][metric])


def trial_row(result: Any, request: SearchRequest, runs: dict[str, str]) -> TrialRow:
    metrics = result.metrics or {}
    trial_id = str(metrics.get("trial_id") or Path(result.path).name)
    ckpt, best = best_checkpoint(result, request.space.metric, request.space.mode)
    history = result.metrics_dataframe
    epochs = int(history["epoch"].max()) if history is not None and "epoch" in history else 0
    status = "COMPLETED" if epochs >= request.max_epochs else "STOPPED"
    if result.error:
        status = "DIVERGED" if is_divergence(str(result.error)) else "ERROR"
    return TrialRow(
        trial_id=trial_id, run_id=runs.get(trial_id), status=status, epochs=epochs,
        best_valid=None if best is None else float(best[request.space.metric]),
        config={k: request.space.decode(k, v) for k, v in (result.config or {}).items()},
        checkpoint=ckpt, error=None if result.error is None else str(result.error),
    )


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
    """The paper's test figure for one of the best trials (``test_scores``; Table 1's Parzen protocol runs on Ray).
    Reported, never used to choose. A --resume of a finished search reads it from MLflow instead of recomputing."""
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
        tracker.log_metrics(row.run_id, scores, step=row.epochs)
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
        description=f"search {request.name}, trial {row.trial_id}: {space.metric} = {row.best_valid:.4g} "
                    f"(validation, {space.mode}) after {row.epochs} epochs; {test}; data: {data_source(tracker)}"
                    f"{'; smoke run' if request.smoke else ''}",
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


def score_reports(results: Any, metric: str) -> list[tuple[float, float]]:
    """(timestamp, validation score) of every epoch every trial reported: the search's progress against compute."""
    out = []
    for result in results:
        history = result.metrics_dataframe
        if history is None or metric not in history or "timestamp" not in history:
            continue
        scored = history[["timestamp", metric]].dropna()
        out += [(float(t), float(v)) for t, v in scored.itertuples(index=False) if math.isfinite(v)]
    return out


def log_trial_table(tracker: SearchTracker, records: list[dict[str, Any]]) -> None:
    table = pa.Table.from_pylist(records)
    with tempfile.TemporaryDirectory(prefix="aae_table_") as tmp:
        pq.write_table(table, Path(tmp) / "trials.parquet")
        pa_csv.write_csv(table, Path(tmp) / "trials.csv")
        tracker.client.log_artifacts(tracker.parent_run_id, tmp, "summary")


def finalize_search(request: SearchRequest, results: Any, tracker: SearchTracker, data: SplitData) -> SearchSummary:
    space = request.space
    runs = tracker.drop_orphan_trials({result.metrics.get("trial_id") for result in results})
    rows = [trial_row(result, request, runs) for result in results]
    to_log = [r for r in rows if r.checkpoint and r.run_id]
    model_uris = {r.trial_id: log_trial_model(tracker, r, data, request.seed)
                  for r in tqdm(to_log, desc="models and figures to MLflow", unit="trial", mininterval=1.0)}
    scored = [r for r in rows if r.best_valid is not None and r.trial_id in model_uris]
    scored.sort(key=lambda r: r.best_valid, reverse=space.mode == "max")
    for row in scored[: request.top_k]:
        evaluate_test(tracker, row, data, request)
    best = scored[0] if scored else None
    registered = register_best(tracker, best, model_uris[best.trial_id], request) if best else None
    records = trial_records(rows)
    log_trial_table(tracker, records)
    if space.scheduler.type == "pbt":
        log_pbt_policy(tracker, request.experiment_dir)
    log_search_report(tracker, rows, records, score_reports(results, space.metric), space, request.max_epochs)
    if best is not None:
        best_metrics = {f"best_{space.metric}": best.best_valid}
        best_metrics |= {f"best_{k}": v for k, v in best.test_metrics.items()}
        tracker.log_metrics(tracker.parent_run_id, best_metrics, step=0)
    summary = SearchSummary(
        name=request.name, experiment_dir=request.experiment_dir, tracking_uri=request.tracking_uri,
        experiment_name=request.experiment_name, parent_run_id=tracker.parent_run_id, metric=space.metric,
        rows=rows, best=best, registered_model=registered,
        data_caveat=tracker.lineage.caveat if tracker.lineage else "", experiment_id=tracker.experiment_id,
    )
    tracker.describe(tracker.parent_run_id, summary.description(request))
    tracker.end_run(tracker.parent_run_id, "FINISHED")
    return summary


def data_source(tracker: SearchTracker) -> str:
    return tracker.lineage.source if tracker.lineage else "unknown"
