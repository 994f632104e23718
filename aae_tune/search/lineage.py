"""Which data a search trained and scored on, as MLflow records it: one dataset input per split (name, source,
digest, sizes) on the parent run and on every trial run, plus tags that say where the data came from and whether
it is the paper's full split. A search that fell back to the embedded 5K MNIST subset says so wherever it reports
a figure (the run tags, the parent's description, the summary)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import numpy as np
from mlflow.entities import Dataset, DatasetInput, InputTag
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

TAG_DATA_SOURCE = "aae_data_source"
TAG_DATA_FULL = "aae_data_full"  # "true" only for the paper's 50K/10K/10K MNIST split
CONTEXTS = {"train": "training", "valid": "validation", "test": "test"}  # MLflow's dataset contexts


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
