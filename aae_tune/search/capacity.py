"""What a search will write, estimated before it starts, against the free space where it writes.

A search that fills its disk half-way loses time and, before aae_tune signed its state, lost the search itself;
refusing up front with the figures costs nothing. The estimate is deliberately generous (the largest architecture
the space can draw, every trial keeping its checkpoints to the end); only local folders are checked: a bucket has
no free space to ask for.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from aae_tune.config import ARCHITECTURE_FIELDS
from aae_tune.mlflow_store import sqlite_path
from aae_tune.model.registry import build_model
from aae_tune.search.request import SearchRequest
from aae_tune.search.storage_files import is_uri

# A checkpoint holds the weights twice (trainer.pt and model_state.pt) plus up to three optimizer slots per weight
# (momentum of the reconstruction and adversarial optimizers, Adam's second moment): 5x the weights, measured 4.97x
# on the likelihood model with SGD.
CHECKPOINT_PER_WEIGHT_BYTES = 5 * 4
TRIAL_FILES_BYTES = 1 << 20  # Tune's per-trial results, params, events and our signed state, per trial
MLFLOW_FIGURES_BYTES = 2 << 20  # a trial's figures and its MLflow model metadata, besides the weights
MIB = 1 << 20


@dataclass(frozen=True)
class WriteEstimate:
    storage_bytes: int  # Tune: checkpoints kept x checkpoint size x trials, plus per-trial files
    mlflow_bytes: int  # MLflow artifacts (models, figures), counted only for a local store
    weights_bytes: int  # one model's weights (the largest the space can draw)
    checkpoints_kept: int

    def describe(self) -> str:
        return (f"{self.storage_bytes / MIB:.0f} MiB of checkpoints and state ({self.checkpoints_kept} checkpoints "
                f"of {CHECKPOINT_PER_WEIGHT_BYTES // 4 * self.weights_bytes / MIB:.1f} MiB per trial)")


def largest_weights_bytes(request: SearchRequest, data_dim: int) -> int:
    """fp32 bytes of the largest model the space can draw, built on the meta device (no memory)."""
    space = request.space
    sampled = {key: max(spec.extremes(), key=_size_rank) for key, spec in space.params.items()
               if key.split(".")[0] in ARCHITECTURE_FIELDS}
    cfg = space.experiment_config(sampled, smoke=request.smoke)
    with torch.device("meta"):
        model = build_model(cfg, data_dim)
    return 4 * sum(p.numel() for p in model.parameters())


def _size_rank(value: object) -> float:
    """Which edge of an architecture parameter's range makes the larger model: the larger number; for choices of
    non-numbers, the first."""
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0


def estimate_writes(request: SearchRequest, data_dim: int) -> WriteEstimate:
    weights = largest_weights_bytes(request, data_dim)
    kept = (4 if request.space.scheduler.type == "pbt" else 2) + 1  # Tune also keeps the latest checkpoint
    storage = request.num_samples * (kept * CHECKPOINT_PER_WEIGHT_BYTES // 4 * weights + TRIAL_FILES_BYTES)
    local_mlflow = sqlite_path(request.tracking_uri) is not None or request.tracking_uri.startswith("file:")
    mlflow = request.num_samples * (weights + MLFLOW_FIGURES_BYTES) if local_mlflow else 0
    return WriteEstimate(storage, mlflow, weights, kept)


def free_bytes(path: str) -> tuple[int, int] | None:
    """(free bytes, device) of the filesystem that holds ``path`` or its nearest existing parent."""
    existing = next((p for p in (Path(path), *Path(path).parents) if p.exists()), None)
    if existing is None:
        return None
    return shutil.disk_usage(existing).free, existing.stat().st_dev


def check_capacity(request: SearchRequest, data_dim: int, problems: list[str]) -> WriteEstimate:
    """A problem if the storage path (with a local MLflow store on the same disk) cannot hold the estimate."""
    estimate = estimate_writes(request, data_dim)
    if is_uri(request.storage_path):
        return estimate
    storage = free_bytes(request.storage_path)
    store = sqlite_path(request.tracking_uri)
    mlflow = free_bytes(str(store.parent if store else Path.cwd())) if estimate.mlflow_bytes else None
    if storage is None:
        return estimate
    needed = estimate.storage_bytes + (estimate.mlflow_bytes if mlflow and mlflow[1] == storage[1] else 0)
    if needed > storage[0]:
        problems.append(f"--storage-path {request.storage_path}: the search will write about {needed / MIB:.0f} MiB "
                        f"({estimate.describe()}, for {request.num_samples} trials) but only {storage[0] / MIB:.0f} "
                        "MiB are free there; free space, choose another --storage-path, or run fewer trials")
    elif mlflow and mlflow[1] != storage[1] and estimate.mlflow_bytes > mlflow[0]:
        problems.append(f"--tracking-uri {request.tracking_uri}: its artifacts need about "
                        f"{estimate.mlflow_bytes / MIB:.0f} MiB but only {mlflow[0] / MIB:.0f} MiB are free there")
    return estimate
