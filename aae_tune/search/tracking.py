"""MLflow records of a search: one parent run per search, one nested run per trial, keyed so that a resumed
search finds and reuses them (Ray Tune's own MLflow callback keeps its trial -> run map in memory only and
creates duplicates after a restore).

Runs are found by tags: ``aae_search`` = search name on both, ``aae_role`` = parent/trial, ``aae_trial_id`` =
Tune's trial id on trial runs. All logging happens on the driver (a Tune ``Callback``), so trials need no access
to the tracking server and a SQLite store sees a single writer.
"""

from __future__ import annotations

import logging
import math
import os
import re
import time
from typing import Any

import mlflow
import yaml
from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_RUN_NOTE

from aae_tune.experiments import VALIDATION_METRICS
from aae_tune.mlflow_store import mlflow_client
from aae_tune.names import ROLE_PARENT, ROLE_TRIAL, TAG_ORPHANS, TAG_ROLE, TAG_SEARCH, TAG_STOP_REASON, TAG_TRIAL
from aae_tune.search.lineage import TAG_CODE_RESUMED, TAG_CODE_VERSION, DataLineage, resumed_code_tags
from aae_tune.search.scoring import CHECKPOINT_SCORE
from aae_tune.search.values import flatten

logger = logging.getLogger("aae_tune.tracking")

# Keys Tune adds to every result: bookkeeping, not model metrics.
TUNE_KEYS = {
    "training_iteration", "time_this_iter_s", "time_total_s", "timestamp", "time_since_restore",
    "iterations_since_restore", "timesteps_total", "episodes_total", "pid", "done", "trial_id",
    "checkpoint_dir_name", "should_checkpoint",
    CHECKPOINT_SCORE,  # Tune's ranking of the trial's checkpoints: the epoch's score again, or the worst value
}
SCORED_METRICS = {m for metrics in VALIDATION_METRICS.values() for m in metrics}  # the scorer's, not the trainer's
MAX_PARAM_LEN = 6000
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
MODEL_TRAINING_KIND = "custom_model_development"  # the MLflow UI's name for "train models, compare runs"


def redact_uri(uri: str) -> str:
    """Hide the password of ``scheme://user:password@host`` URIs before they reach a log or a param."""
    return re.sub(r"(//[^/:@]+):[^/@]*@", r"\1:***@", uri)


def numeric_metrics(result: dict[str, Any]) -> dict[str, float]:
    """The finite numeric model metrics of a Tune result (Tune's bookkeeping keys and flags dropped). Validation
    scores carried over from an earlier epoch (``evaluation.every_epochs`` > 1: Tune's schedulers need a score
    every epoch) are dropped too, so an MLflow history holds each score at the epoch it was computed. The running
    score (``best_<metric>``, ``best_epoch``) is logged every epoch: it is defined at each one."""
    carried = result.get("valid_epoch", result.get("epoch")) != result.get("epoch")
    skip = TUNE_KEYS | {"valid_epoch"} | (SCORED_METRICS if carried else set())
    return {k: float(v) for k, v in result.items() if k not in skip and isinstance(v, (int, float))
            and not isinstance(v, bool) and math.isfinite(v)}


class SearchTracker:
    """Finds or creates the MLflow runs of one search and writes to them."""

    def __init__(self, tracking_uri: str, experiment_name: str, search_name: str,
                 artifact_location: str | None = None):
        self.tracking_uri, self.search_name = tracking_uri, search_name
        mlflow.set_tracking_uri(tracking_uri)
        self._client: MlflowClient | None = None
        experiment = self.client.get_experiment_by_name(experiment_name)
        self.experiment_id = (
            experiment.experiment_id if experiment
            else self.client.create_experiment(experiment_name, artifact_location=artifact_location)
        )
        if experiment is None or experiment.tags.get(EXPERIMENT_KIND_TAG) != MODEL_TRAINING_KIND:
            # the kind MLflow 3 files it under (model training, not GenAI); its UI also needs the link's
            # ?workflowType=machine_learning (cluster.browser.landing_url) to open on the runs
            self.client.set_experiment_tag(self.experiment_id, EXPERIMENT_KIND_TAG, MODEL_TRAINING_KIND)
        self._trial_runs: dict[str, str] = {}
        self.lineage: DataLineage | None = None
        self.parent_run_id = self._find_or_create({TAG_ROLE: ROLE_PARENT}, run_name=search_name)

    @property
    def client(self) -> MlflowClient:
        if self._client is None:
            self._client = mlflow_client(self.tracking_uri)
        return self._client

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles its callbacks into the experiment folder (for --resume): keep the client and any password
        # in the tracking URI out of that file. The driver re-supplies the URI through MLFLOW_TRACKING_URI.
        return {**self.__dict__, "_client": None, "tracking_uri": redact_uri(self.tracking_uri)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        if "***" in self.tracking_uri and os.environ.get("MLFLOW_TRACKING_URI"):
            self.tracking_uri = os.environ["MLFLOW_TRACKING_URI"]

    def log_space(self, space: Any) -> None:
        """The resolved space (file + overrides) as YAML on the parent run."""
        self.client.log_text(self.parent_run_id, yaml.safe_dump(space.to_dict(), sort_keys=False), "space.yaml")

    def _find(self, tags: dict[str, str]) -> str | None:
        query = " and ".join(f"tags.{k} = '{v}'" for k, v in {TAG_SEARCH: self.search_name, **tags}.items())
        runs = self.client.search_runs([self.experiment_id], filter_string=query, max_results=2)
        if len(runs) > 1:
            logger.warning("several MLflow runs match %s; using the first", query)
        return runs[0].info.run_id if runs else None

    def _find_or_create(self, tags: dict[str, str], run_name: str, extra: dict[str, str] | None = None) -> str:
        found = self._find(tags)
        if found:
            if self.client.get_run(found).info.status != "RUNNING":
                self.client.update_run(found, status="RUNNING")
            return found
        all_tags = {TAG_SEARCH: self.search_name, **tags, **(extra or {})}
        run_id = self.client.create_run(self.experiment_id, tags=all_tags, run_name=run_name).info.run_id
        if self.lineage is not None:
            self._log_lineage(run_id)
        return run_id

    def record_data(self, lineage: DataLineage) -> None:
        """The search's data on its parent run now and on every trial run as it is created (once per run)."""
        self.lineage = lineage
        if not self.client.get_run(self.parent_run_id).inputs.dataset_inputs:
            self._log_lineage(self.parent_run_id)

    def _log_lineage(self, run_id: str) -> None:
        self.client.log_inputs(run_id, datasets=self.lineage.inputs())
        self.set_tags(run_id, self.lineage.tags())

    def record_code(self, version: dict[str, str], resume: bool) -> str | None:
        """The code version on the parent run; on a resume under other code, that version appended to
        ``aae_code_resumed_under`` and a note to print (None when nothing changed)."""
        if not resume:
            self.set_tags(self.parent_run_id, version)
            return None
        recorded = self.client.get_run(self.parent_run_id).data.tags
        tags = resumed_code_tags(recorded, version)
        if not tags:
            return None
        self.set_tags(self.parent_run_id, tags)
        started = recorded.get(TAG_CODE_VERSION, "(not recorded)")
        return (f"note: search {self.search_name} started under code {started} and resumes under "
                f"{version[TAG_CODE_VERSION]}: the epochs trained from here on use the new code (MLflow tag "
                f"{TAG_CODE_RESUMED})")

    def describe(self, run_id: str, markdown: str) -> None:
        """The run's description (the note the MLflow UI shows on the run's page)."""
        self.set_tags(run_id, {MLFLOW_RUN_NOTE: markdown})

    def trial_run(self, trial_id: str, run_name: str | None = None) -> str:
        """The nested run of ``trial_id``, created on first sight and reused after a resume."""
        if trial_id not in self._trial_runs:
            self._trial_runs[trial_id] = self._find_or_create(
                {TAG_ROLE: ROLE_TRIAL, TAG_TRIAL: trial_id},
                run_name=run_name or trial_id,
                extra={"mlflow.parentRunId": self.parent_run_id},
            )
        return self._trial_runs[trial_id]

    def _search_trial_runs(self) -> list[Any]:
        query = f"tags.{TAG_SEARCH} = '{self.search_name}' and tags.{TAG_ROLE} = '{ROLE_TRIAL}'"
        return self.client.search_runs([self.experiment_id], filter_string=query, max_results=10_000)

    def drop_orphan_trials(self, known: set[str]) -> dict[str, str]:
        """Delete (MLflow's soft delete, restorable) the unfinished runs of trials that Tune does not know: a driver
        killed after a trial started (its run created) but before Tune saved its state forgets that trial, and the
        resumed search runs it again under a new id. The orphans' trial ids go on the parent run; returns trial id ->
        run id for every trial run left, from the same query."""
        runs = {r.data.tags[TAG_TRIAL]: r for r in self._search_trial_runs()}
        orphans = sorted(t for t, r in runs.items() if t not in known and r.info.status == "RUNNING")
        for trial_id in orphans:
            run_id = runs.pop(trial_id).info.run_id
            self.set_tags(run_id, {TAG_STOP_REASON: "orphaned: started before the driver was killed, unknown to "
                                                    "the resumed Tune state, which ran it again under another id"})
            self.client.delete_run(run_id)
            self._trial_runs.pop(trial_id, None)
        if orphans:
            self.set_tags(self.parent_run_id, {TAG_ORPHANS: ",".join(orphans)})
        return {t: r.info.run_id for t, r in runs.items()}

    def log_params(self, run_id: str, params: dict[str, Any]) -> list[str]:
        """Log params once: a resumed run already has them (MLflow refuses to change a logged param). Returns the
        keys whose logged value differs from the given one (a PBT member's mutated values)."""
        existing = self.client.get_run(run_id).data.params
        flat = {k: str(v)[:MAX_PARAM_LEN] for k, v in flatten(params).items()}
        new = [Param(k, v) for k, v in flat.items() if k not in existing]
        for i in range(0, len(new), 100):
            self.client.log_batch(run_id, params=new[i : i + 100])
        return sorted(k for k, v in flat.items() if k in existing and existing[k] != v)

    def last_step(self, run_id: str, key: str = "epoch") -> int:
        """The highest step already logged for ``key`` (0 if none): what a resumed trial must not log again."""
        history = self.client.get_metric_history(run_id, key)
        return max((m.step for m in history), default=0)

    def log_metrics(self, run_id: str, metrics: dict[str, Any], step: int) -> None:
        now = int(time.time() * 1000)
        batch = [Metric(k, v, now, step) for k, v in numeric_metrics(metrics).items()]
        if batch:
            self.client.log_batch(run_id, metrics=batch)

    def set_tags(self, run_id: str, tags: dict[str, Any]) -> None:
        self.client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def end_run(self, run_id: str, status: str = "FINISHED") -> None:
        self.client.set_terminated(run_id, status=status)
