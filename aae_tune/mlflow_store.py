"""Opening an MLflow store safely when several processes may be the first to open it.

MLflow creates a fresh SQLite store (tables, then a chain of alembic migrations) in whichever process opens it
first, without any lock. Two processes opening the same new file at once (a search and an ``aae-tune evaluate``,
two searches sharing one ``mlflow.db``, a script reading a search's store while it starts) interleave their
migrations and one of them dies half-way ("Online migration expected to match one row ... 0 found", "table ...
already exists"), sometimes leaving ``_alembic_tmp_*`` tables behind. Every aae_tune process therefore opens a
SQLite store under an exclusive ``flock`` on the store's folder: the first one creates it, the others wait and then
find it complete. Server and other database URIs are opened as they are (the server owns its schema). Optuna
migrates a new SQLite study file the same way; ``search.study.open_study`` takes the same lock.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlflow import MlflowClient

SQLITE_PREFIX = "sqlite:///"


def sqlite_path(tracking_uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (None for every other kind of store)."""
    if not tracking_uri.startswith(SQLITE_PREFIX):
        return None
    return Path(tracking_uri[len(SQLITE_PREFIX):].split("?", 1)[0]).expanduser()


@contextlib.contextmanager
def store_creation_lock(tracking_uri: str) -> Iterator[None]:
    """Hold an exclusive lock on a SQLite store's folder (no-op for other stores or without ``fcntl``)."""
    path = sqlite_path(tracking_uri)
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock, MLflow's own behaviour
        fcntl = None  # type: ignore[assignment]
    if path is None or fcntl is None or not path.parent.is_dir():
        yield
        return
    fd = os.open(path.parent, os.O_RDONLY)  # a folder can be flock-ed: no lock file beside the user's store
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def mlflow_client(tracking_uri: str, registry: bool = False) -> MlflowClient:
    """An ``MlflowClient`` whose tracking store (and model registry when ``registry``) is created and migrated.

    The first call on a new SQLite file creates it under the folder lock; later calls find it complete.
    """
    from mlflow import MlflowClient

    with store_creation_lock(tracking_uri):
        client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri if registry else None)
        client.search_experiments(max_results=1)  # builds the tracking store: tables and migrations
        if registry:
            client.search_registered_models(max_results=1)  # and the registry's
    return client
