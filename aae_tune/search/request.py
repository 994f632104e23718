"""A validated search (``SearchRequest``) and every pre-flight check that builds one from ``SearchOptions``.

Everything a user can get wrong — the options themselves (``aae_tune.search.options``), the space file, ``--set``
overrides, budgets, the seed, each trial's resources, the search name, the storage path, the tracking URI (its
REST API, not only /health), the MLflow and Optuna stores, the Ray address, a --resume that does not match — is
checked here, before Ray starts, and reported as one ``ConfigError``. The data is checked by its loader right after
(``aae_tune.search.cli``).
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aae_tune.errors import ConfigError, UntrustedState
from aae_tune.mlflow_store import sqlite_path
from aae_tune.names import SEARCH_LAYOUT, SEARCH_RECORD, experiment_name
from aae_tune.schema import parse_overrides
from aae_tune.search.destination_checks import check_search_folder, check_store_files, sqlite_file_problem
from aae_tune.search.lease import lease_ttl, read_holder, why_stale
from aae_tune.search.options import COUNTS, SearchOptions, flag, name_problem, valid_name
from aae_tune.search.resources import check_counts, check_trial_resources
from aae_tune.search.retrain import Source, load_source
from aae_tune.search.server import probe_tracking_server
from aae_tune.search.signing import VerifiedState
from aae_tune.search.space import SearchSpace, load_space
from aae_tune.search.storage_files import check_storage_uri, is_uri

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
SMOKE_TRAIN_IMAGES = 5000  # --smoke trains on the first 5,000 training images (validation and test stay whole)


@dataclass(frozen=True)
class SearchRequest:
    """A validated search: the space plus every command-line setting, budgets resolved."""

    space: SearchSpace
    space_path: str
    name: str
    seed: int
    num_samples: int
    max_epochs: int
    max_concurrent: int
    cpus_per_trial: float
    gpus_per_trial: float | None  # None: one GPU share per trial if the cluster has GPUs, else CPU only
    storage_path: str
    tracking_uri: str
    address: str | None
    data_dir: str | None
    resume: bool
    smoke: bool
    top_k: int
    final_samples: int
    max_failures: int = 2  # Tune's FailureConfig: restarts of a failed trial from its last checkpoint
    dashboard: bool = False  # the local Ray's dashboard, on 127.0.0.1
    optuna_storage: str | None = None  # the TPE study's RDB (None: in memory, or a random search)
    warm_start: str | None = None  # the earlier study whose finished trials seed this one
    warm_points: tuple[dict[str, Any], ...] = ()  # its trials' params ...
    warm_scores: tuple[float, ...] = ()  # ... and scores
    artifact_location: str | None = None  # where a new MLflow experiment keeps its artifacts (e.g. s3://...)
    source: Source | None = None  # --train-best: the finished search whose best configurations this one trains
    verified: VerifiedState | None = None  # --resume: the search's signed state, checked before anything starts
    pending_timeout: float | None = None  # --pending-timeout: seconds trials may all wait for resources (pending.py)

    @property
    def experiment_name(self) -> str:
        return experiment_name(self.space.name)

    @property
    def experiment_dir(self) -> str:
        return f"{self.storage_path.rstrip('/')}/{self.name}"


def check_storage_path(path: str, problems: list[str]) -> str:
    if is_uri(path):
        check_storage_uri(path, problems)
        return path.rstrip("/")
    local = Path(path).expanduser().resolve()
    existing = next(p for p in (local, *local.parents) if p.exists())  # probe there: create nothing yet
    if not existing.is_dir():
        problems.append(f"--storage-path {path}: {existing} is a file, not a folder")
        return str(local)
    probe = existing / f".aae_tune_write_test_{time.time_ns()}"
    try:
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        problems.append(f"--storage-path {path}: not writable ({exc.strerror}); choose a folder you can write to")
    return str(local)


def check_tracking_uri(uri: str, problems: list[str]) -> None:
    from aae_tune.search.tracking import redact_uri

    shown = redact_uri(uri)
    if uri.startswith(("http://", "https://")):
        probe_tracking_server(uri, shown, problems)  # /health, then the REST API a search calls, within a timeout
    elif (path := sqlite_path(uri)) is not None:
        folder = path.resolve().parent
        if not folder.is_dir():
            problems.append(f"--tracking-uri {shown}: folder {folder} does not exist")
        elif problem := sqlite_file_problem(path.resolve(), "MLflow"):
            problems.append(f"--tracking-uri {shown}: {problem}")
    elif not uri.startswith(("file:", "databricks", "postgresql", "mysql", "mssql")) and is_uri(uri):
        problems.append(f"--tracking-uri {shown}: unsupported scheme; use sqlite:///path.db, http://host:port, ...")
    elif not is_uri(uri) and not uri.startswith("file:"):
        problems.append(f"--tracking-uri {shown}: not a URI; use e.g. sqlite:///mlflow.db or http://127.0.0.1:5000")


def check_address(address: str | None, problems: list[str]) -> None:
    if address in (None, "auto", "local"):
        return
    target = address.split("://", 1)[-1]
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        problems.append(f"--address {address}: expected host:port (e.g. 127.0.0.1:6379) or ray://host:10001")
        return
    try:
        with socket.create_connection((host, int(port)), timeout=5):
            pass
    except OSError as exc:
        problems.append(f"--address {address}: no Ray cluster answers there ({exc}); start it with `ray start "
                        "--head` or drop --address to start a local one")


RESUMABLE_FIELDS = ("experiment", "params", "metric", "mode", "scheduler", "searcher", "evaluation", "smoke")


def search_record(space: SearchSpace, seed: int, smoke: bool, max_epochs: int | None = None) -> dict[str, Any]:
    fields = space.to_dict()
    return {"space": {k: fields[k] for k in RESUMABLE_FIELDS}, "seed": seed, "smoke": smoke,
            "space_name": space.name, "max_epochs": max_epochs, "layout": SEARCH_LAYOUT}


def saved_record(verified: VerifiedState) -> dict[str, Any]:
    """The record a search was started with, from its signed state (never from the file beside it, which anyone
    with write access to the storage path could replace or delete)."""
    try:
        return json.loads(verified.read(SEARCH_RECORD) or b"")
    except ValueError:
        return {}


def verify_resume(request_dir: str, problems: list[str]) -> VerifiedState | None:
    """The search's signed state, or a problem: a --resume loads nothing the search did not provably write."""
    from aae_tune.search.signing import load_verified, signing_key

    try:
        return load_verified(request_dir, signing_key(create=False))
    except UntrustedState as exc:
        problems.append(f"--resume: {exc}")
    except ConfigError as exc:
        problems += [f"--resume: {p}" for p in exc.problems]
    return None


def check_signing_key(problems: list[str]) -> None:
    """A key that exists must be usable (private, long enough) before anything starts; a missing one is made."""
    from aae_tune.search.signing import KEY_ENV, key_file, signing_key

    if os.environ.get(KEY_ENV) is not None or key_file().exists():
        try:
            signing_key(create=False)
        except ConfigError as exc:
            problems += exc.problems


def check_resume_matches(request_dir: str, saved: dict[str, Any], record: dict[str, Any],
                         problems: list[str]) -> None:
    """A resumed search must train what its checkpoints were written for: same space, seed and smoke mode."""
    if saved.get("layout") != SEARCH_LAYOUT:
        problems.append(f"--resume: the search at {request_dir} was started by an older aae_tune (before the "
                        "subpackage layout); its saved Tune state names modules that no longer exist. Start it again "
                        "under a new --name (its MLflow runs stay where they are)")
        return

    def resumable(r: dict[str, Any]) -> dict[str, Any]:
        space = r.get("space") if isinstance(r.get("space"), dict) else {}
        return {**{k: space.get(k) for k in RESUMABLE_FIELDS}, "seed": r.get("seed"), "smoke": r.get("smoke")}

    diff = differences(resumable(saved), resumable(record))
    if diff:
        problems.append(f"--resume: the search at {request_dir} was started with different {'; '.join(diff)}; "
                        "its checkpoints belong to that config. Resume with the original --space/--set/--seed/"
                        "--smoke (e.g. --set KEY=VALUE-then for a default changed since), or start a new --name")


def differences(then: Any, now: Any, prefix: str = "") -> list[str]:
    """``key: X then, Y now`` for every leaf where two nested mappings differ."""
    if isinstance(then, dict) and isinstance(now, dict):
        return [d for k in sorted(then.keys() | now.keys(), key=str)
                for d in differences(then.get(k), now.get(k), f"{prefix}{k}.")]
    return [] if then == now else [f"{prefix.rstrip('.')}: {then!r} then, {now!r} now"]


def check_resume(request_dir: str, resume: bool, problems: list[str]) -> None:
    from ray import tune

    holder = read_holder(request_dir)
    if holder is not None and why_stale(holder, lease_ttl()) is None:
        # first: a driver that holds the search but has not saved Tune's state yet looks like "no search" below
        problems.append(f"search {request_dir.rstrip('/').rsplit('/', 1)[-1]} is being run by another "
                        f"{holder.describe()}; two drivers must not run one search: wait for it to end")
        return
    exists = (is_uri(request_dir) or Path(request_dir).is_dir()) and tune.Tuner.can_restore(request_dir)
    if resume and not exists:
        problems.append(f"--resume: no search to resume at {request_dir}; check --name and --storage-path")
    if not resume and exists:
        problems.append(f"a search already exists at {request_dir}; add --resume to continue it or pick a new --name")


def check_study(options: SearchOptions, space: SearchSpace, tracking_uri: str, storage: str,
                problems: list[str]) -> dict[str, Any]:
    """The TPE study's storage and, for --warm-start, the earlier study's finished trials."""
    from aae_tune.search.study import check_study_storage, default_study_storage, warm_start_points

    tpe = space.searcher.type == "optuna_tpe"
    if options.optuna_storage:
        check_study_storage(options.optuna_storage, problems)
    url = (options.optuna_storage or default_study_storage(tracking_uri, storage)) if tpe else None
    if not options.warm_start:
        return {"optuna_storage": url}
    if not tpe:
        problems.append(f"--warm-start: needs searcher.type optuna_tpe, not {space.searcher.type}")
    elif options.resume:
        problems.append("--warm-start: a resumed search keeps its own study; drop --warm-start or start a new --name")
    elif not problems:
        points, scores = warm_start_points(url, options.warm_start, space, problems)
        return {"optuna_storage": url, "warm_start": options.warm_start, "warm_points": tuple(points),
                "warm_scores": tuple(scores)}
    return {"optuna_storage": url}


def load_request_space(options: SearchOptions, tracking_uri: str) -> tuple[SearchSpace, Source | None]:
    """The space file with its overrides, or for --train-best the source search's own space and best trials."""
    overrides = parse_overrides(list(options.overrides))
    if not options.train_best:
        return load_space(options.space, overrides), None
    problems: list[str] = []
    check_tracking_uri(tracking_uri, problems)
    if options.warm_start:
        problems.append("--train-best trains fixed configurations; drop --warm-start")
    if not problems:
        k = options.num_samples if options.num_samples is not None else 1
        space, source = load_source(tracking_uri, load_space(options.space).name, options.train_best, k, overrides,
                                    problems)
        if not problems:
            return space, source
    raise ConfigError(problems, "command line")


def load_checked_space(options: SearchOptions, tracking_uri: str,
                       problems: list[str]) -> tuple[SearchSpace, Source | None]:
    """``load_request_space``; when it refuses, its problems join those the options already have (one message)."""
    try:
        return load_request_space(options, tracking_uri)
    except ConfigError as exc:
        if not problems:
            raise  # the space's own message, under its own source (the file), as before
        where = "" if exc.source == "command line" else f"{exc.source}: "
        raise ConfigError([*problems, *(f"{where}{p}" for p in exc.problems)], "command line") from exc


def check_run_settings(options: SearchOptions, counts: dict[str, int], problems: list[str]) -> None:
    """The command line's numbers as numpy, torch and Ray take them after the pre-flight (aae_tune.search.resources):
    counts and each trial's CPUs and GPUs (on a local Ray: whether this machine has them, or every trial would stay
    PENDING). The seed and the pending timeout are the options' own checks (``SearchOptions.range_problems``)."""
    check_counts({**counts, "max_failures": options.max_failures}, problems)
    negative_gpus = options.gpus_per_trial is not None and options.gpus_per_trial < 0
    if options.cpus_per_trial > 0 and not negative_gpus:  # else reported by SearchOptions.range_problems
        check_trial_resources(options.cpus_per_trial, options.gpus_per_trial, options.address, problems)


def check_destinations(storage: str, name: str, tracking_uri: str, optuna_url: str | None,
                       problems: list[str]) -> None:
    """Where the search writes (aae_tune.search.destination_checks): its folder must not be a file, and the MLflow
    store, the Optuna study and the search folder must be apart."""
    if valid_name(name):
        check_search_folder(storage, name, problems)
        check_store_files(storage, name, tracking_uri, optuna_url, problems)


def resolve_counts(options: SearchOptions, space: SearchSpace, source: Source | None) -> dict[str, int]:
    """Each count (``COUNTS``) as given, else --smoke's, the source search's (--train-best) or the space's."""
    budget, ev = space.budget, space.evaluation
    smoke = options.smoke
    num_samples = options.num_samples if options.num_samples is not None else (
        len(source.points) if source else 2 if smoke else budget.num_samples)
    defaults = {"num_samples": num_samples, "max_epochs": 2 if smoke else budget.max_epochs,
                "max_concurrent": budget.max_concurrent,
                # a long run of the best K: each of them gets the test protocol
                "top_k": num_samples if source else ev.top_k, "final_samples": 1000 if smoke else ev.final_samples}
    return {k: given if (given := getattr(options, k)) is not None else defaults[k] for k in COUNTS}


def build_request(options: SearchOptions | Any) -> SearchRequest:
    """Validate everything; raise one ConfigError listing all problems. ``options``: a ``SearchOptions``, or the
    command line's ``argparse.Namespace`` (read as one)."""
    if not isinstance(options, SearchOptions):
        options = SearchOptions.from_namespace(options)
    if type_problems := options.type_problems():
        raise ConfigError(type_problems, "search options")  # no other check can read a value of the wrong type
    problems = options.range_problems()
    tracking_uri = options.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI
    space, source = load_checked_space(options, tracking_uri, problems)
    values = resolve_counts(options, space, source)
    # a count given is checked by range_problems; one resolved from the space or a source is checked here
    problems += [f"--{flag(k)}: must be >= 1, got {v}" for k, v in values.items()
                 if v < 1 and getattr(options, k) is None]
    name = options.name or f"{space.name}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}"
    if not options.name and not valid_name(name):  # a given name is checked by range_problems
        problems.append(name_problem(name))
    check_run_settings(options, values, problems)
    storage = check_storage_path(options.storage_path, problems)
    if not source:
        check_tracking_uri(tracking_uri, problems)
    check_address(options.address, problems)
    check_signing_key(problems)
    verified = None
    if valid_name(name) and not problems:
        check_resume(f"{storage}/{name}", options.resume, problems)
        if options.resume and not problems:
            verified = verify_resume(f"{storage}/{name}", problems)
        if verified is not None:
            check_resume_matches(f"{storage}/{name}", saved_record(verified),
                                 search_record(space, options.seed, options.smoke), problems)
    study = check_study(options, space, tracking_uri, storage, problems)
    check_destinations(storage, name, tracking_uri, study["optuna_storage"], problems)
    if problems:
        raise ConfigError(problems, "command line")
    return SearchRequest(**study,
        space=space, space_path=str(options.space), name=name, seed=options.seed,
        cpus_per_trial=options.cpus_per_trial, gpus_per_trial=options.gpus_per_trial, storage_path=storage,
        tracking_uri=tracking_uri, address=options.address, data_dir=options.data_dir, resume=options.resume,
        smoke=options.smoke, max_failures=options.max_failures, dashboard=options.dashboard,
        artifact_location=options.artifact_location, pending_timeout=options.pending_timeout,
        source=source, verified=verified, **values,
    )


def describe_request(request: SearchRequest) -> str:
    """What a search would run (``--dry-run``): the resolved space as YAML, the budget and each trial's resources."""
    import yaml

    from aae_tune.search.tracking import redact_uri

    gpus = "1 per trial if the cluster has GPUs, else none" if request.gpus_per_trial is None else \
        request.gpus_per_trial
    lines = [
        f"# search {request.name} (dry run: checked, nothing started)",
        f"# {request.num_samples} trials x {request.max_epochs} epochs, at most {request.max_concurrent} at once, "
        f"seed {request.seed}{', smoke' if request.smoke else ''}",
        f"# each trial: {request.cpus_per_trial} CPU, GPU: {gpus}; restarts on failure: {request.max_failures}",
        f"# Ray: {request.address or 'a local Ray on 127.0.0.1'}; results: {request.experiment_dir}; "
        f"MLflow: {redact_uri(request.tracking_uri)}",
        f"# the best {request.top_k} trial(s) get the test protocol"
        + (f" with {request.final_samples} samples" if request.space.experiment_config().score_kind == "parzen"
           else ""),
        f"# Optuna study: {redact_uri(request.optuna_storage) if request.optuna_storage else 'none (in memory)'}"
        + (f", warm-started from {request.warm_start} ({len(request.warm_points)} trials)"
           if request.warm_start else ""),
        *(f"# {line}" for line in (request.source.describe(request.space.metric) if request.source else [])),
        yaml.safe_dump(resolved_space(request), sort_keys=False, width=110).rstrip(),
    ]
    return "\n".join(lines)


def resolved_space(request: SearchRequest) -> dict[str, Any]:
    """The space as this search runs it: its budget is the one the flags resolved, not the file's default."""
    space = request.space.to_dict()
    space["budget"] = {"num_samples": request.num_samples, "max_epochs": request.max_epochs,
                       "max_concurrent": request.max_concurrent}
    return space
