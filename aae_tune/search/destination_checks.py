"""Pre-flight checks of where a search writes: its folder in the storage path, the MLflow store, the Optuna study.

Each of them is created by another library after Ray has started (Tune the search folder, through pyarrow; MLflow
and Optuna their SQLite files, each running its own alembic migrations): a folder that is a file, a database that is
not SQLite or belongs to the other tool, or two of them on one path fail there with a traceback. They are refused
here, before anything is created.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path

from aae_tune.mlflow_store import sqlite_path
from aae_tune.search.storage_files import is_uri

SQLITE_HEADER = b"SQLite format 3\x00"
# Tables that say whose database a SQLite file is (both tools also keep an ``alembic_version`` table)
OWNER_TABLES = {"MLflow": {"experiments", "runs"}, "Optuna": {"studies", "trials"}}


def check_search_folder(storage: str, name: str, problems: list[str]) -> None:
    """Tune writes the search into ``<storage>/<name>``: a file there fails inside pyarrow once Ray has started."""
    folder = f"{storage.rstrip('/')}/{name}"
    if remote_is_file(folder) if is_uri(storage) else local_is_file(folder):
        problems.append(f"--name {name}: {folder} is a file, not a search folder; pick another --name or "
                        "--storage-path (or move the file away)")


def local_is_file(path: str) -> bool:
    return os.path.lexists(path) and not os.path.isdir(path)  # a broken link counts: mkdir fails there too


def remote_is_file(location: str) -> bool:
    from pyarrow import ArrowException, fs

    try:
        filesystem, path = fs.FileSystem.from_uri(location)
        return filesystem.get_file_info(path).type == fs.FileType.File
    except (ArrowException, OSError, ValueError):
        return False  # the storage check reports an unreachable storage path


def check_store_files(storage: str, name: str, tracking_uri: str, optuna_url: str | None,
                      problems: list[str]) -> None:
    """The Optuna study's SQLite file must be SQLite (or new) and Optuna's (``check_tracking_uri`` checks MLflow's
    the same way), and the two stores must lie apart from each other and from the search folder."""
    # the study's URL may be the default one beside the MLflow store: name the flag that moves it either way
    stores = {"MLflow": (f"--tracking-uri {tracking_uri}", tracking_uri),
              "Optuna": (f"the Optuna study {optuna_url} (--optuna-storage)", optuna_url)}
    files = {tool: path.expanduser().resolve() for tool, (_, url) in stores.items()
             if url and (path := sqlite_path(url)) is not None}
    if "Optuna" in files and (problem := sqlite_file_problem(files["Optuna"], "Optuna")):
        problems.append(f"{stores['Optuna'][0]}: {problem}")
    if len(files) == 2 and files["MLflow"] == files["Optuna"]:
        other = files["MLflow"].with_name("study.db" if files["MLflow"].name == "optuna.db" else "optuna.db")
        problems.append(f"{stores['Optuna'][0]}: the same file as the MLflow store; their tables and migrations "
                        f"collide. Give the study its own file, e.g. --optuna-storage sqlite:///{other}")
    if not is_uri(storage):
        search_folder = Path(storage).expanduser().resolve() / name
        for tool, path in files.items():
            if path == search_folder or search_folder in path.parents:
                problems.append(f"{stores[tool][0]}: the {tool} store would lie in the search folder {search_folder}, "
                                "which belongs to Ray Tune (its state and checkpoints); keep the store outside it")


def sqlite_file_problem(path: Path, tool: str) -> str | None:
    """Why ``tool`` could not use ``path`` as its SQLite database (None: it can, or it will create it)."""
    if path.is_dir():
        return f"{path} is a folder, not a database file"
    if not path.is_file() or path.stat().st_size == 0:
        return None  # a new (or empty) file: the tool creates its tables
    try:
        with path.open("rb") as f:
            header = f.read(len(SQLITE_HEADER))
    except OSError as exc:
        return f"cannot read {path} ({exc.strerror})"
    if header != SQLITE_HEADER:
        return f"{path} is not a SQLite database; point it at a new file or at a {tool} database"
    other = next((owner for owner, marks in OWNER_TABLES.items() if owner != tool and marks <= table_names(path)),
                 None)
    if other:
        return f"{path} holds an {other} store, not an {tool} one; give {tool} its own file"
    return None


def table_names(path: Path) -> set[str]:
    """The tables of a SQLite file, read-only (empty if it cannot be read now, e.g. locked by a writer)."""
    with contextlib.suppress(sqlite3.Error), contextlib.closing(
            sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=2)) as db:
        return {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    return set()
