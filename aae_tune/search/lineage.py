"""Which data and which code a search trained with, as MLflow records it.

Data: one dataset input per split (name, source, digest, sizes) on the parent run and on every trial run, plus tags
that say where the data came from and whether it is the paper's full split. A search that fell back to the embedded
5K MNIST subset says so wherever it reports a figure (the run tags, the parent's description, the summary).

Code: the package version and, from a git checkout, the commit (MLflow's own ``mlflow.source.git.commit`` tag, which
its UI shows) on the parent run. A change to the training step changes the numbers, so a search resumed under other
code says so and records every version it ran under.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from mlflow.entities import Dataset, DatasetInput, InputTag
from mlflow.utils.mlflow_tags import (
    MLFLOW_DATASET_CONTEXT,
    MLFLOW_GIT_COMMIT,
    MLFLOW_SOURCE_NAME,
    MLFLOW_SOURCE_TYPE,
    MLFLOW_USER,
)

import aae_tune

TAG_DATA_SOURCE = "aae_data_source"
TAG_DATA_FULL = "aae_data_full"  # "true" only for the paper's 50K/10K/10K MNIST split
CONTEXTS = {"train": "training", "valid": "validation", "test": "test"}  # MLflow's dataset contexts
TAG_CODE_VERSION = "aae_code_version"  # 0.1.0, or 0.1.0+g<commit>[.dirty] from a git checkout
TAG_CODE_RESUMED = "aae_code_resumed_under"  # the other versions a resumed search trained under, in order
SOURCE_NAME = "aae_tune.search"  # the entry point, as MLflow's "Source" field shows it


@dataclass(frozen=True)
class DataLineage:
    """What the MLflow record says about a search's data (picklable: Tune saves the callback that holds it)."""

    name: str  # mnist / svhn / array
    source: str  # the loader's description: file folder, download, embedded subset, head of ...
    full: bool
    sizes: dict[str, int]
    digests: dict[str, str]

    @property
    def caveat(self) -> str:
        """Empty for the paper's data; otherwise what to print next to every figure."""
        return "" if self.full else f"on {self.source}, not the paper's 50K/10K/10K MNIST split"

    def tags(self) -> dict[str, str]:
        return {TAG_DATA_SOURCE: self.source[:5000], TAG_DATA_FULL: str(self.full).lower()}

    def inputs(self) -> list[DatasetInput]:
        return [
            DatasetInput(
                Dataset(name=f"{self.name}-{split}", digest=self.digests[split], source_type="local",
                        source=json.dumps({"description": self.source}),
                        profile=json.dumps({"num_rows": self.sizes[split]})),
                tags=[InputTag(MLFLOW_DATASET_CONTEXT, context)],
            )
            for split, context in CONTEXTS.items()
        ]


def array_digest(*arrays: np.ndarray) -> str:
    """A short content hash (blake2b, 16 hex digits) of images and labels."""
    h = hashlib.blake2b(digest_size=8)
    for a in arrays:
        h.update(str((a.shape, a.dtype.str)).encode())
        h.update(np.ascontiguousarray(a).data)
    return h.hexdigest()


def data_lineage(data: Any, dataset_name: str) -> DataLineage:
    """Lineage of a loaded dataset (``DataSplits``: arrays, ``source`` and ``is_full``)."""
    splits = {split: (getattr(data, f"{split}_x"), getattr(data, f"{split}_y")) for split in CONTEXTS}
    return DataLineage(
        name=dataset_name, source=str(getattr(data, "source", "unknown")), full=bool(getattr(data, "is_full", False)),
        sizes={split: len(y) for split, (_, y) in splits.items()},
        digests={split: array_digest(x, y) for split, (x, y) in splits.items()},
    )


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=30,
                          check=True).stdout.strip()


def code_version(root: Path | None = None) -> dict[str, str]:
    """Tags naming the code in use: the package version, and when the package's folder ``root`` is the top of a git
    checkout, its commit and whether tracked files differ from it (``.dirty``). A package installed elsewhere (or a
    folder inside some other repository) gets the version alone.

    MLflow's run page shows its "Source" field (and the commit beside it) only when the source name and type are
    set; runs made with ``MlflowClient.create_run`` get neither, so they are set here with the user."""
    root = Path(aae_tune.__file__).resolve().parents[1] if root is None else root.resolve()
    source = {MLFLOW_SOURCE_NAME: SOURCE_NAME, MLFLOW_SOURCE_TYPE: "LOCAL", MLFLOW_USER: _user()}
    try:
        if Path(git(root, "rev-parse", "--show-toplevel")).resolve() != root:
            return {TAG_CODE_VERSION: aae_tune.__version__, **source}
        commit = git(root, "rev-parse", "HEAD")
        dirty = bool(git(root, "status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):  # no git, not a checkout, no commit yet
        return {TAG_CODE_VERSION: aae_tune.__version__, **source}
    return {TAG_CODE_VERSION: f"{aae_tune.__version__}+g{commit[:7]}{'.dirty' if dirty else ''}",
            MLFLOW_GIT_COMMIT: commit, **source}


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # a container user with no passwd entry
        return "unknown"


def resumed_code_tags(recorded: dict[str, str], current: dict[str, str]) -> dict[str, str]:
    """Tags for a search resumed under ``current`` code whose parent run holds ``recorded``: nothing when the
    version is the same, else the version appended to ``aae_code_resumed_under``."""
    earlier = [v for v in recorded.get(TAG_CODE_RESUMED, "").split(",") if v]
    last = earlier[-1] if earlier else recorded.get(TAG_CODE_VERSION)  # None: started before versions were recorded
    now = current[TAG_CODE_VERSION]
    return {} if now == last else {TAG_CODE_RESUMED: ",".join([*earlier, now])}
