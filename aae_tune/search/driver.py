"""Runs a validated ``SearchRequest`` on Ray Tune: Optuna TPE (or random) proposals, ASHA early stopping,
per-trial checkpoints kept by score, MLflow streaming, then the end-of-search evaluation (finalize.py)."""

from __future__ import annotations

import os
from typing import Any

import ray
from optuna.samplers import TPESampler
from ray import tune
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
from ray.tune.search import BasicVariantGenerator, ConcurrencyLimiter
from ray.tune.search.optuna import OptunaSearch

from aae_tune.cluster.ray_session import start_ray
from aae_tune.data.splits import SplitData
from aae_tune.names import SPOOL_FILE
from aae_tune.search.callback import MlflowTrialCallback, is_unreachable
from aae_tune.search.finalize import SearchSummary, finalize_search
from aae_tune.search.request import SearchRequest, write_search_record
from aae_tune.search.space import ParamSpec, SearchSpace
from aae_tune.search.tracking import SearchTracker, redact_uri
from aae_tune.search.trainable import TrialSettings, aae_trainable


def tune_domain(spec: ParamSpec) -> Any:
    """A space file distribution as a Tune search domain (Optuna's searcher converts these itself)."""
    d = spec.distribution
    if d in ("choice", "grid"):
        values = list(range(len(spec.values))) if spec.is_index_choice() else list(spec.values)
        return tune.grid_search(values) if d == "grid" else tune.choice(values)
    if d == "uniform":
        return tune.uniform(spec.low, spec.high)
    if d == "loguniform":
        return tune.loguniform(spec.low, spec.high)
    if d == "quniform":
        return tune.quniform(spec.low, spec.high, spec.q)
    if d == "qloguniform":
        return tune.qloguniform(spec.low, spec.high, spec.q)
    return tune.randint(int(spec.low), int(spec.high))


def tune_param_space(space: SearchSpace) -> dict[str, Any]:
    return {key: tune_domain(spec) for key, spec in space.params.items()}


def make_searcher(request: SearchRequest):
    space = request.space
    if space.searcher.type == "random":
        # max_concurrent is enforced by TuneConfig.max_concurrent_trials
        return BasicVariantGenerator(random_state=request.seed)
    sampler = TPESampler(seed=request.seed, n_startup_trials=space.searcher.n_startup_trials)
    optuna = OptunaSearch(metric=space.metric, mode=space.mode, sampler=sampler)
    return ConcurrencyLimiter(optuna, max_concurrent=request.max_concurrent)


def make_scheduler(request: SearchRequest):
    sched = request.space.scheduler
    if sched.type == "fifo":
        return FIFOScheduler()
    return ASHAScheduler(
        time_attr="epoch", max_t=request.max_epochs,
        grace_period=min(sched.grace_period, request.max_epochs), reduction_factor=sched.reduction_factor,
    )


def trial_resources(request: SearchRequest) -> dict[str, float]:
    gpus = request.gpus_per_trial
    if gpus is None:  # default: a whole GPU per trial when the cluster has any, else CPU only
        gpus = 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0
    return {"cpu": request.cpus_per_trial, "gpu": gpus}


def build_tuner(request: SearchRequest, data: SplitData, tracker: SearchTracker) -> tune.Tuner:
    space = request.space
    settings = TrialSettings(
        space=space, seed=request.seed, max_epochs=request.max_epochs, smoke=request.smoke,
        threads=max(1, int(request.cpus_per_trial)),
    )
    # with_parameters puts settings and data in the object store once; every trial maps the same arrays.
    trainable = tune.with_resources(
        tune.with_parameters(aae_trainable, settings=settings, data=data), trial_resources(request)
    )
    run_config = tune.RunConfig(
        name=request.name,
        storage_path=request.storage_path,
        callbacks=[MlflowTrialCallback(tracker, request.max_epochs, spool_path(request))],
        checkpoint_config=tune.CheckpointConfig(
            num_to_keep=2, checkpoint_score_attribute=space.metric, checkpoint_score_order=space.mode
        ),
        failure_config=tune.FailureConfig(max_failures=2),
        verbose=1,
    )
    if request.resume:
        return tune.Tuner.restore(
            request.experiment_dir, trainable=trainable, resume_errored=False, param_space=tune_param_space(space)
        )
    return tune.Tuner(
        trainable,
        param_space=tune_param_space(space),
        tune_config=tune.TuneConfig(
            metric=space.metric, mode=space.mode, num_samples=request.num_samples,
            search_alg=make_searcher(request), scheduler=make_scheduler(request),
            max_concurrent_trials=request.max_concurrent,
        ),
        run_config=run_config,
    )


def spool_path(request: SearchRequest) -> str:
    """Where tracking events wait while MLflow is unreachable: the search's folder (or, for cloud storage, the
    working folder)."""
    if "://" in request.experiment_dir:
        return os.path.abspath(f".aae_tune_{request.name}_{SPOOL_FILE}")
    return os.path.join(request.experiment_dir, SPOOL_FILE)


def search_params(request: SearchRequest) -> dict[str, Any]:
    return {
        "space": request.space.name, "space_file": request.space_path, "seed": request.seed,
        "num_samples": request.num_samples, "max_epochs": request.max_epochs,
        "max_concurrent": request.max_concurrent, "cpus_per_trial": request.cpus_per_trial,
        "gpus_per_trial": request.gpus_per_trial, "smoke": request.smoke, "storage_path": request.storage_path,
        "tracking_uri": redact_uri(request.tracking_uri), "top_k": request.top_k,
        "final_samples": request.final_samples, "metric": request.space.metric, "mode": request.space.mode,
    }


def run_search(request: SearchRequest, data: SplitData) -> SearchSummary:
    """Start or resume the search, wait for it, evaluate and record its best trials."""
    os.environ["MLFLOW_TRACKING_URI"] = request.tracking_uri  # for Tune's pickled callback after a --resume
    # Fail fast when the server goes away (the callback spools instead); MLflow's default retries take minutes.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    if not request.resume:
        write_search_record(request)
    tracker = SearchTracker(request.tracking_uri, request.experiment_name, request.name)
    tracker.log_params(tracker.parent_run_id, search_params(request))
    tracker.log_space(request.space)
    sent = MlflowTrialCallback(tracker, request.max_epochs, spool_path(request)).flush()  # left by an earlier run
    if sent:
        print(f"sent {sent} tracking events spooled while MLflow was unreachable", flush=True)
    start_ray(request.address)
    print(f"search {request.name}: {request.num_samples} trials x {request.max_epochs} epochs on "
          f"{data.source}; MLflow {redact_uri(request.tracking_uri)} run {tracker.parent_run_id}", flush=True)
    results = build_tuner(request, data, tracker).fit()
    if results.num_terminated + results.num_errors < request.num_samples:
        # Ctrl-C (Tune saved its state) or a driver-side failure: nothing to finalize yet.
        return SearchSummary.interrupted_search(request, tracker.parent_run_id)
    try:
        return finalize_search(request, results, tracker, data)
    except Exception as exc:
        if not is_unreachable(exc):
            raise
        return SearchSummary.interrupted_search(
            request, tracker.parent_run_id,
            note=f"MLflow became unreachable while recording the results ({type(exc).__name__}). The trials are "
                 "done; once the server is back, the same command with --resume records the rest without re-training.",
        )
