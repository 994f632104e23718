"""Runs a validated ``SearchRequest`` on Ray Tune: Optuna TPE (or random) proposals, ASHA early stopping,
per-trial checkpoints kept by score, MLflow streaming, then the end-of-search evaluation (finalize.py). Which
figure ranks what: ``search.scoring``."""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import ray
from optuna.samplers import TPESampler
from ray import tune
from ray.tune.schedulers import FIFOScheduler, PopulationBasedTraining, TrialScheduler
from ray.tune.search import BasicVariantGenerator, ConcurrencyLimiter
from ray.tune.search.optuna import OptunaSearch

from aae_tune.data import load_dataset
from aae_tune.data.splits import DataSplits, SplitData
from aae_tune.errors import ConfigError
from aae_tune.names import SPOOL_FILE
from aae_tune.search.asha import ResumableASHA
from aae_tune.search.callback import MlflowTrialCallback
from aae_tune.search.capacity import check_capacity
from aae_tune.search.guard import SearchGuard
from aae_tune.search.pending import PendingTimeout, pending_timeout_s
from aae_tune.search.request import SMOKE_TRAIN_IMAGES, SearchRequest
from aae_tune.search.scoring import BEST_EPOCH, CHECKPOINT_SCORE, best_key, tune_metric
from aae_tune.search.space import ParamSpec, SearchSpace
from aae_tune.search.study import open_study
from aae_tune.search.tracking import SearchTracker, redact_uri
from aae_tune.search.trainable import TrialSettings, aae_trainable

TUNER_FILE = "tuner.pkl"  # Tune's pickled Tuner, written straight to the storage path


def tune_domain(spec: ParamSpec) -> Any:
    """A space file distribution as a Tune search domain (Optuna's searcher converts these itself)."""
    d = spec.distribution
    if d in ("choice", "grid"):
        return tune.grid_search(spec.searched_values()) if d == "grid" else tune.choice(spec.searched_values())
    if d == "uniform":
        return tune.uniform(spec.low, spec.high)
    if d == "loguniform":
        return tune.loguniform(spec.low, spec.high)
    if d == "quniform":
        return tune.quniform(spec.low, spec.high, spec.q)
    if d == "qloguniform":
        return tune.qloguniform(spec.low, spec.high, spec.q)
    return tune.randint(int(spec.low), int(spec.high))


def pbt_mutation(spec: ParamSpec) -> Any:
    """PBT's form of a distribution: a list for a choice (PBT shifts to a neighbouring value, or resamples), a
    Tune domain for a range (PBT multiplies by 0.8 or 1.2, or resamples)."""
    return spec.searched_values() if spec.distribution == "choice" else tune_domain(spec)


def clip_to_ranges(config: dict[str, Any], mutable: dict[str, ParamSpec]) -> dict[str, Any]:
    """PBT's x0.8 / x1.2 steps know no bounds: keep each range-valued parameter inside the space's range."""
    for key, spec in mutable.items():
        if spec.distribution != "choice" and key in config:
            high = spec.high - 1 if spec.distribution == "randint" else spec.high  # randint: high excluded
            config[key] = type(config[key])(min(max(config[key], spec.low), high))
    return config


def tune_param_space(space: SearchSpace) -> dict[str, Any]:
    return {key: tune_domain(spec) for key, spec in space.params.items()}


def make_searcher(request: SearchRequest):
    space = request.space
    if space.searcher.type == "random":
        # Not a Tune Searcher: ConcurrencyLimiter cannot wrap it and TuneConfig.max_concurrent_trials is dropped for
        # it (with a warning), so the limit goes to the generator itself. PBT compares a whole population: all of
        # it is created at once and takes turns on the CPUs (paused at each perturbation, resumed from checkpoints).
        pbt = space.scheduler.type == "pbt"
        limit = max(request.max_concurrent, request.num_samples) if pbt else request.max_concurrent
        points = list(request.source.points) if request.source else None  # --train-best: the K configurations
        return BasicVariantGenerator(random_state=request.seed, max_concurrent=limit, points_to_evaluate=points)
    tpe = space.searcher
    sampler = TPESampler(seed=request.seed, n_startup_trials=tpe.n_startup_trials, multivariate=tpe.multivariate,
                         constant_liar=tpe.constant_liar)
    storage = open_study(request.optuna_storage, request.name, space) if request.optuna_storage else None
    # Ray's OptunaSearch tells Optuna the metric of a trial's last result: the running score (tune_metric), so
    # the study's value for a trial is its score, the best epoch's (TuneConfig's metric, the same, wins anyway).
    optuna = OptunaSearch(
        metric=tune_metric(space.metric, space.scheduler.type), mode=space.mode, sampler=sampler,
        study_name=request.name, storage=storage,
        points_to_evaluate=list(request.warm_points) or None, evaluated_rewards=list(request.warm_scores) or None,
    )
    return ConcurrencyLimiter(optuna, max_concurrent=request.max_concurrent)


def make_scheduler(request: SearchRequest):
    sched = request.space.scheduler
    if sched.type == "fifo":
        return FIFOScheduler()
    if sched.type == "pbt":
        # Synchronous: every member reaches the same epoch before the bottom ones copy the top ones, so a copied
        # checkpoint is from the copier's own epoch and each trial's epochs (MLflow steps) run 1, 2, ... without
        # repeats or gaps. PBT draws from Python's and NumPy's global generators: seeded for reproducible choices.
        random.seed(request.seed)
        np.random.seed(request.seed)
        mutable = request.space.pbt_mutations()
        return FinitePBT(
            request.max_epochs, time_attr="epoch", perturbation_interval=sched.perturbation_interval,
            hyperparam_mutations={key: pbt_mutation(spec) for key, spec in mutable.items()},
            quantile_fraction=sched.quantile_fraction, resample_probability=sched.resample_probability,
            custom_explore_fn=lambda config: clip_to_ranges(config, mutable),
            synch=True, require_attrs=False,  # a diverged trial's last report has no epoch (report_divergence)
        )
    # ASHA ranks a rung by TuneConfig's metric: the running score, what a trial stopped there keeps as its score
    # (scoring.tune_metric; benchmarks/asha_replay.py replays the same)
    return ResumableASHA(  # its rungs are kept, signed, in the search folder for --resume (search/asha.py)
        time_attr="epoch", max_t=request.max_epochs,
        grace_period=min(sched.grace_period, request.max_epochs), reduction_factor=sched.reduction_factor,
    )


class FinitePBT(PopulationBasedTraining):
    """PBT that knows the trials' last epoch: a member copied into at its last epoch would train no further and
    only duplicate the member it copied (two identical "best" trials), so the last epoch is never a perturbation."""

    def __init__(self, max_epochs: int, **kwargs: Any):
        super().__init__(**kwargs)
        self.max_epochs = max_epochs

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        if result.get(self._time_attr, 0) >= self.max_epochs:
            return TrialScheduler.CONTINUE  # the trial ends with this result
        return super().on_trial_result(tune_controller, trial, result)


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
    resources = trial_resources(request)
    trainable = tune.with_resources(tune.with_parameters(aae_trainable, settings=settings, data=data), resources)
    # the guard signs Tune's state and stops the search on a storage failure, a lost lease, or trials left waiting
    # for resources no node has (warned at start, stopped after --pending-timeout)
    guard = SearchGuard(request.experiment_dir,
                        PendingTimeout(pending_timeout_s(request.pending_timeout, request.address), resources))
    run_config = tune.RunConfig(
        name=request.name,
        storage_path=request.storage_path,
        callbacks=[MlflowTrialCallback(tracker, request.max_epochs, spool_path(request)), guard],
        stop=guard,
        checkpoint_config=tune.CheckpointConfig(
            # PBT copies a member's latest checkpoint after the member has moved on: keep more (Tune's advice)
            num_to_keep=4 if space.scheduler.type == "pbt" else 2,
            # the epoch's own score (a carried one ranks last): the best kept checkpoint is the trial's best epoch
            checkpoint_score_attribute=CHECKPOINT_SCORE, checkpoint_score_order=space.mode,
        ),
        failure_config=tune.FailureConfig(max_failures=request.max_failures),
        progress_reporter=progress_reporter(request),
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
            # ASHA, Optuna and the table's order: the running score (PBT: the epoch's value; scoring.tune_metric)
            metric=tune_metric(space.metric, space.scheduler.type), mode=space.mode, num_samples=request.num_samples,
            # the concurrency limit lives in the searcher (make_searcher): Tune warns and ignores a second one
            search_alg=make_searcher(request), scheduler=make_scheduler(request),
            # A finished trial's process (torch imported, the data mapped) trains the next one: without this each
            # trial paid a fresh actor, ~2.7 s on this machine (benchmarks/soak.py). Trials keep no process-wide
            # state (own generator, fork_rng at init), so reuse changes no number.
            reuse_actors=True,
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
        "optuna_storage": redact_uri(request.optuna_storage or "in memory"), "warm_start": request.warm_start,
        "warm_start_trials": len(request.warm_points),
    }


def load_search_data(request: SearchRequest) -> DataSplits:
    """The space's dataset (checked by its loader: a DataError before Ray starts); --smoke keeps 5,000 images.
    Then whether the storage can hold what the search will write with it (a ConfigError with the figures)."""
    dataset = request.space.dataset
    data = load_dataset(dataset.name, request.data_dir, **dataset.options())
    data = data.head(SMOKE_TRAIN_IMAGES) if request.smoke else data
    problems: list[str] = []
    check_capacity(request, data.train_x.shape[1], problems)
    if problems:
        raise ConfigError(problems, "command line")
    return data


ENVIRONMENT_DEFAULTS = {
    # Fail fast when the server goes away (the callback spools instead); MLflow's default retries take minutes.
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
    # A quiet console: Tune's classic reporter (the compact table of ``progress_reporter``; the new output engine
    # ignores it), no progress bar per downloaded MLflow artifact, no warning each time Tune snapshots its state.
    "RAY_AIR_NEW_OUTPUT": "0",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0",  # 0: never warn
}


@contextlib.contextmanager
def search_environment(request: SearchRequest) -> Iterator[None]:
    """The environment the search's parts read (a user's own settings win), restored afterwards, so that
    ``aae_tune.search.run`` leaves its caller's environment as it found it."""
    saved = {key: os.environ.get(key) for key in ("MLFLOW_TRACKING_URI", *ENVIRONMENT_DEFAULTS)}
    os.environ["MLFLOW_TRACKING_URI"] = request.tracking_uri  # for Tune's pickled callback after a --resume
    for key, value in ENVIRONMENT_DEFAULTS.items():
        os.environ.setdefault(key, value)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def progress_reporter(request: SearchRequest) -> tune.CLIReporter:
    """A table that fits a terminal: short parameter names (list-valued choices as their values), the epoch, its
    validation value, the trial's score so far and the epoch that reached it, the reconstruction loss."""
    space = request.space
    return tune.CLIReporter(
        parameter_columns={key: short_name(key) for key in space.params},
        metric_columns=metric_columns(space.metric),
        max_column_length=14, max_report_frequency=30, sort_by_metric=True,  # metric and mode: from TuneConfig
    )


def metric_columns(metric: str) -> dict[str, str]:
    """The table's result columns: the last epoch's value next to the trial's score (the summary's figure)."""
    return {"epoch": "ep", metric: "valid", best_key(metric): "best valid", BEST_EPOCH: "best ep",
            "recon_loss": "recon"}


ABBREVIATIONS = {"optim": "", "reconstruction": "rec", "adversarial": "adv", "semi_supervised": "semi",
                 "momentum": "mom", "drop_epochs": "drops", "drop_factor": "dfac", "input_dropout": "in_drop",
                 "hidden_dropout": "hid_drop", "input_noise_std": "noise", "recon_cost": "cost", "encoder": "enc"}


def short_name(key: str) -> str:
    """``optim.reconstruction.lr`` -> ``rec.lr``: a column header a terminal has room for."""
    return ".".join(p for p in (ABBREVIATIONS.get(part, part) for part in key.split(".")) if p)


def cut_short(result: tune.Result) -> bool:
    """A trial Tune stopped because its loop ended (Ctrl-C), not because the trial finished or the scheduler stopped
    it. Tune marks all three TERMINATED; only the last two carry ``done`` in their last result. Without this check,
    an interrupt during a search's last trial looked like a finished search whose last trial stopped early."""
    return result.error is None and not result.metrics.get("done", False)
