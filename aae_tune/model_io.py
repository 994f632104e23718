"""Trained models as safe files: ``config.json`` + ``model_state.pt`` (a state dict, never a pickled object).

The same two files travel everywhere: inside Tune checkpoints (next to the full trainer state), as
``extra_files`` of the MLflow PyTorch model, and out of the Model Registry. Loading them uses
``torch.load(weights_only=True)``, so a model from a remote store is never unpickled.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from aae_tune.aae import AdversarialAutoencoder, build_model
from aae_tune.config import ExperimentConfig
from aae_tune.errors import CheckpointError
from aae_tune.train import CHECKPOINT_FILE, resolve_device

CONFIG_FILE = "config.json"
STATE_FILE = "model_state.pt"


def save_model_files(model: AdversarialAutoencoder, directory: str | os.PathLike) -> list[Path]:
    """Write config.json and model_state.pt into ``directory``; returns both paths."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    cfg_path, state_path = directory / CONFIG_FILE, directory / STATE_FILE
    payload = {"config": model.cfg.to_dict(), "data_dim": model.data_dim}
    cfg_path.write_text(json.dumps(payload, indent=2, sort_keys=True))
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, state_path)
    return [cfg_path, state_path]


def load_model_files(directory: str | os.PathLike, device: str | None = None) -> AdversarialAutoencoder:
    """Rebuild a model from ``save_model_files`` output, or from a trainer checkpoint directory."""
    directory = Path(directory)
    if (directory / STATE_FILE).is_file() and (directory / CONFIG_FILE).is_file():
        payload = json.loads((directory / CONFIG_FILE).read_text())
        cfg = ExperimentConfig.from_dict(payload["config"], source=str(directory / CONFIG_FILE))
        state = _safe_load(directory / STATE_FILE)
        data_dim = int(payload.get("data_dim", 784))
    elif (directory / CHECKPOINT_FILE).is_file():
        full = _safe_load(directory / CHECKPOINT_FILE)
        cfg = ExperimentConfig.from_dict(json.loads(full["config_json"]), source=str(directory / CHECKPOINT_FILE))
        state = full["model"]
        data_dim = int(full["data_dim"])
    else:
        raise CheckpointError(f"{directory} holds neither {CONFIG_FILE} + {STATE_FILE} nor {CHECKPOINT_FILE}")
    model = build_model(cfg, data_dim)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise CheckpointError(f"{directory}: weights do not fit the config's architecture: {exc}") from exc
    return model.to(resolve_device(device)).eval()


def _safe_load(path: Path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - every unreadable file is the same user-facing problem
        raise CheckpointError(f"cannot read {path} as a weights-only torch file: {exc}") from exc


def find_model_dir(root: str | os.PathLike) -> Path:
    """The folder below ``root`` (downloaded MLflow model or checkpoint) that holds the model files."""
    root = Path(root)
    for name in (STATE_FILE, CHECKPOINT_FILE):
        hits = sorted(root.rglob(name))
        if hits:
            return hits[0].parent
    raise CheckpointError(f"no {STATE_FILE} or {CHECKPOINT_FILE} under {root}: not an aae_tune model")
