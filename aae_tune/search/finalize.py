"""After the search: the order of the end-of-search steps. One row per trial (``search.results``); every trial's
best checkpoint becomes an MLflow model with its figures, the best K trials (by their score: ``search.scoring``)
get the paper's test protocol on Ray, the best one is registered (``search.publish``), the parent run receives the
trial table and the report (``search.report``), and the summary is written (``search.summary``). Every step is
idempotent, so ``--resume`` of a finished search repeats nothing that already reached MLflow."""

from __future__ import annotations

from collections.abc import Sequence

from tqdm.auto import tqdm

from aae_tune.data.splits import SplitData
from aae_tune.errors import ConfigError
from aae_tune.search.publish import (
    evaluate_test,
    log_best_trial,
    log_trial_model,
    log_trial_table,
    register_best,
)
from aae_tune.search.report import log_pbt_policy, log_search_report
from aae_tune.search.request import SearchRequest
from aae_tune.search.results import TuneResult, ranked, score_reports, trial_records, trial_row
from aae_tune.search.space import SearchSpace, load_space
from aae_tune.search.summary import SearchSummary, settings_in_effect
from aae_tune.search.tracking import SearchTracker


def finalize_search(request: SearchRequest, results: Sequence[TuneResult], tracker: SearchTracker,
                    data: SplitData) -> SearchSummary:
    space = request.space
    runs = tracker.drop_orphan_trials({result.metrics.get("trial_id") for result in results})
    rows = [trial_row(result, space, request.max_epochs, runs) for result in results]
    to_log = [r for r in rows if r.checkpoint and r.run_id]
    model_uris = {r.trial_id: log_trial_model(tracker, r, data, request.seed)
                  for r in tqdm(to_log, desc="models and figures to MLflow", unit="trial", mininterval=1.0)}
    scored = [r for r in ranked(rows, space.mode) if r.trial_id in model_uris]
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
        log_best_trial(tracker, best, space.metric)
    fixed, overrides = settings_in_effect(space_file(request), space, request.smoke)
    summary = SearchSummary(
        name=request.name, experiment_dir=request.experiment_dir, tracking_uri=request.tracking_uri,
        experiment_name=request.experiment_name, parent_run_id=tracker.parent_run_id, metric=space.metric,
        rows=rows, best=best, registered_model=registered,
        data_caveat=tracker.lineage.caveat if tracker.lineage else "", experiment_id=tracker.experiment_id,
        fixed=fixed, overrides=overrides,
    )
    tracker.describe(tracker.parent_run_id, summary.description(request))
    tracker.end_run(tracker.parent_run_id, "FINISHED")
    return summary


def space_file(request: SearchRequest) -> SearchSpace | None:
    """The space file as written (no ``--set``), to tell what this search changed; None if it no longer loads
    (edited or moved since the search started): the summary then names no overrides."""
    try:
        return load_space(request.space_path)
    except (ConfigError, OSError):
        return None
