"""The Optuna study behind a TPE search, persisted in an RDB so that it outlives the search: ``optuna-dashboard``
opens it, ``optuna.load_study`` reads it, and ``--warm-start NAME`` seeds a new search of the same space with
an earlier study's finished trials (TPE then proposes from their scores instead of from scratch).

The study is named after the search. By default it lives in SQLite beside a SQLite MLflow store (``optuna.db``
next to ``mlflow.db``), else in ``optuna.db`` of a local storage path; ``--optuna-storage`` takes any SQLAlchemy
URL. Each study carries its space's signature (space name, metric, mode, searched parameters and their
distributions) as user attributes: a warm start from a study with another signature is refused.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from aae_tune.mlflow_store import SQLITE_PREFIX, sqlite_path, store_creation_lock
from aae_tune.search.space import SearchSpace

STUDY_FILE = "optuna.db"
SIGNATURE_ATTR = "aae_space_signature"
RDB_SCHEMES = (SQLITE_PREFIX, "postgresql", "mysql", "oracle", "mssql")


def default_study_storage(tracking_uri: str, storage_path: str) -> str | None:
    """``optuna.db`` beside a SQLite MLflow store, else in a local storage path; None (in memory) otherwise."""
    store = sqlite_path(tracking_uri)
    if store is not None:
        return f"{SQLITE_PREFIX}{store.resolve().parent / STUDY_FILE}"
    if "://" not in storage_path:
        return f"{SQLITE_PREFIX}{Path(storage_path).expanduser().resolve() / STUDY_FILE}"
    return None


def check_study_storage(url: str, problems: list[str]) -> None:
    if not url.startswith(RDB_SCHEMES):
        problems.append(f"--optuna-storage {url}: not a SQLAlchemy URL Optuna can use; e.g. sqlite:///optuna.db or "
                        "postgresql://user@host/db")
    elif (path := sqlite_path(url)) is not None and not path.resolve().parent.is_dir():
        problems.append(f"--optuna-storage {url}: its folder does not exist")


def space_signature(space: SearchSpace) -> dict[str, Any]:
    """What two studies must share for one to warm-start the other."""
    params = {key: {k: v for k, v in vars(spec).items() if v is not None} for key, spec in sorted(space.params.items())}
    return json.loads(json.dumps({"space": space.name, "metric": space.metric, "mode": space.mode, "params": params}))


def _storage_exists(url: str) -> bool:
    path = sqlite_path(url)
    return path is None or path.is_file()


def warm_start_points(url: str | None, study_name: str, space: SearchSpace,
                      problems: list[str]) -> tuple[list[dict[str, Any]], list[float]]:
    """The finished trials (params, score) of the earlier study ``study_name``; a problem when there is none or it
    searched another space or parameter set."""
    import optuna

    where = f"--warm-start {study_name}"
    if url is None or not _storage_exists(url):
        problems.append(f"{where}: no Optuna storage to read it from ({url or 'in memory'}); give --optuna-storage")
        return [], []
    try:
        study = optuna.load_study(study_name=study_name, storage=url)
    except KeyError:
        names = ", ".join(s.study_name for s in optuna.get_all_study_summaries(storage=url)) or "none"
        problems.append(f"{where}: no such study in {url} (studies there: {names})")
        return [], []
    theirs, ours = study.user_attrs.get(SIGNATURE_ATTR), space_signature(space)
    if theirs != ours:
        diff = sorted(k for k in ours if (theirs or {}).get(k) != ours[k])
        problems.append(f"{where}: that study searched a different {', '.join(diff)} (its space: "
                        f"{(theirs or {}).get('space', 'unknown')}); warm-start only from a search of the same space "
                        "and parameters")
        return [], []
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE and t.value is not None]
    if not done:
        problems.append(f"{where}: the study has no finished trial to learn from")
    # a study of a search started before list choices went to Optuna as their texts holds their indices instead
    points = [{key: space.encode(key, value) for key, value in t.params.items()} for t in done]
    return points, [float(t.value) for t in done]


def open_study(url: str, study_name: str, space: SearchSpace) -> Any:
    """Create the search's study, label it with its space's signature, and return the ``RDBStorage`` that Tune's
    ``OptunaSearch`` takes (it pickles without its engine, so a --resume reopens the same database)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    direction = "maximize" if space.mode == "max" else "minimize"
    with store_creation_lock(url):  # Optuna, like MLflow, migrates a new SQLite file without a lock
        storage = optuna.storages.RDBStorage(url)
        study = optuna.create_study(storage=storage, study_name=study_name, direction=direction, load_if_exists=True)
    study.set_user_attr(SIGNATURE_ATTR, space_signature(space))
    return storage
