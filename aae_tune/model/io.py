"""Trained models as safe files, where they run, and where they come from.

Files: ``config.json`` + ``model_state.pt`` (a state dict, never a pickled object). The same two files travel
everywhere: inside Tune checkpoints (next to the full trainer state), as ``extra_files`` of the MLflow PyTorch
model, and out of the Model Registry. Loading them uses ``torch.load(weights_only=True)``, so a model from a remote
store is never unpickled; ``mlflow.pytorch.load_model`` is deliberately not used.

URIs (``load_model_from_uri``, used by ``python -m aae_tune.sample`` and ``python -m aae_tune.evaluate``):
``models:/name/version``, ``runs:/<run_id>/path``, any other MLflow artifact URI (``file://``, ``s3://``,
``mlflow-artifacts:/`` ...), or a local directory (a folder written by ``save_model_files``, an MLflow model
folder, or a Tune checkpoint).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from torch.overrides import TorchFunctionMode

from aae_tune.config import ExperimentConfig
from aae_tune.errors import CheckpointError, ConfigError, ModelURIError
from aae_tune.mlflow_store import mlflow_client
from aae_tune.model.aae import AdversarialAutoencoder
from aae_tune.model.registry import build_model
from aae_tune.names import CHECKPOINT_FILE, CONFIG_FILE, STATE_FILE
from aae_tune.safe_yaml import read_bounded_bytes

MAX_CONFIG_BYTES = 1 << 20  # a config.json is about 2 KB


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``None``/"auto": CUDA when this process can see a GPU (e.g. Ray assigned one), else CPU. Trials, the
    trainer and the Parzen tasks all decide with this one rule."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


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
    """Rebuild a model from ``save_model_files`` output, or from a trainer checkpoint directory.

    Nothing the files declare is allocated before it is checked: the config must be small, and the weights must
    fit the model it describes (built first without memory, on the meta device) key by key and shape by shape."""
    directory = Path(directory)
    if (directory / STATE_FILE).is_file() and (directory / CONFIG_FILE).is_file():
        config_file = directory / CONFIG_FILE
        cfg, data_dim = _config_and_data_dim(_read_config_json(config_file), config_file)
        state = _safe_load(directory / STATE_FILE)
        where = f"{directory} ({STATE_FILE} against {CONFIG_FILE})"
    elif (directory / CHECKPOINT_FILE).is_file():
        where = directory / CHECKPOINT_FILE
        full = _safe_load(where)
        if not isinstance(full, dict):
            raise CheckpointError(f"{where}: expected a trainer checkpoint (a mapping), got {type(full).__name__}")
        payload = {"config": _parse_json(full.get("config_json"), where), "data_dim": full.get("data_dim")}
        cfg, data_dim = _config_and_data_dim(payload, where)
        state = full.get("model")
    else:
        raise CheckpointError(f"{directory} holds neither {CONFIG_FILE} + {STATE_FILE} nor {CHECKPOINT_FILE}")
    return build_checked_model(cfg, data_dim, state, where).to(resolve_device(device)).eval()


def build_checked_model(
    cfg: ExperimentConfig, data_dim: int, state: Any, where: str | os.PathLike
) -> AdversarialAutoencoder:
    """``cfg``'s model with the weights ``state`` loaded, on the CPU; CheckpointError(``where``) if they do not fit.

    The config is only trusted once the weights match it: a 2 KB config declaring a 10,000,000-wide layer would
    otherwise allocate (and randomly initialise) tens of GB before ``load_state_dict`` finds the mismatch."""
    with torch.device("meta"), _SkipMetaNormalInit():  # shapes only: no memory, no random numbers drawn
        skeleton = build_model(cfg, data_dim)
    problems = state_mismatches(skeleton.state_dict(), state)
    if problems:
        raise CheckpointError(f"{where}: weights do not fit the config's architecture: {'; '.join(problems)}; "
                              "the config and weights must come from the same saved model")
    model = build_model(cfg, data_dim)  # as large as the weights just checked
    model.load_state_dict(state)
    return model


class _SkipMetaNormalInit(TorchFunctionMode):
    """Leaves meta tensors un-initialised by ``normal_``: a meta tensor holds no values anyway, and torch's meta
    ``normal_`` is a Python decomposition whose first use imports torch._dynamo (3-4 s, once per process)."""

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        target = args[0] if args else kwargs.get("tensor")  # nn.init.normal_ passes its tensor by keyword
        if func in (torch.Tensor.normal_, torch.nn.init.normal_) and getattr(target, "is_meta", False):
            return target
        return func(*args, **kwargs)


def state_mismatches(expected: Mapping[str, torch.Tensor], found: Any, shown: int = 5) -> list[str]:
    """Missing keys, unexpected keys and shape mismatches of the state dict ``found`` against ``expected`` (a
    model's state dict, possibly on the meta device), each kind listing at most ``shown`` keys."""
    if not isinstance(found, Mapping):
        return [f"expected a state dict (a mapping of tensor names to tensors), got {type(found).__name__}"]
    missing = [k for k in expected if k not in found]
    unexpected = [str(k) for k in found if k not in expected]
    not_tensors = [k for k in expected if k in found and not isinstance(found[k], torch.Tensor)]
    shapes = [f"{k} (file {tuple(found[k].shape)}, config {tuple(expected[k].shape)})" for k in expected
              if k in found and isinstance(found[k], torch.Tensor) and found[k].shape != expected[k].shape]
    problems = []
    for label, keys in (("missing keys", missing), ("unexpected keys", unexpected), ("not tensors", not_tensors),
                        ("shape mismatches", shapes)):
        if keys:
            more = f" and {len(keys) - shown} more" if len(keys) > shown else ""
            problems.append(f"{label}: {', '.join(keys[:shown])}{more}")
    return problems


def _read_config_json(path: Path) -> Any:
    """config.json, read only up to MAX_CONFIG_BYTES (a real one is about 2 KB) and parsed."""
    try:
        raw = read_bounded_bytes(path, MAX_CONFIG_BYTES, str(path))
    except ConfigError as exc:
        raise CheckpointError(f"{path}: {'; '.join(exc.problems)}") from exc
    return _parse_json(raw, path)


def _parse_json(raw: Any, where: Path) -> Any:
    if not isinstance(raw, (str, bytes)) or len(raw) > MAX_CONFIG_BYTES:
        size = f"{len(raw)} characters" if isinstance(raw, (str, bytes)) else type(raw).__name__
        raise CheckpointError(f"{where}: its config must be JSON text of at most {MAX_CONFIG_BYTES} bytes, got "
                              f"{size}; it was not written by aae_tune")
    try:
        return json.loads(raw)
    except ValueError as exc:  # JSONDecodeError, or bytes that are not UTF-8
        raise CheckpointError(f"{where}: its config is not valid JSON ({exc}); save the model again") from exc


def _config_and_data_dim(payload: Any, where: Path) -> tuple[ExperimentConfig, int]:
    if not isinstance(payload, dict) or not isinstance(payload.get("config"), dict):
        raise CheckpointError(f"{where}: expected a JSON object with a 'config' mapping; save the model again")
    cfg = ExperimentConfig.from_dict(payload["config"], source=str(where))
    data_dim = payload.get("data_dim", 784)
    if isinstance(data_dim, bool) or not isinstance(data_dim, int) or data_dim < 1:
        raise CheckpointError(f"{where}: data_dim must be a positive integer, got {data_dim!r}; save the model again")
    return cfg, data_dim


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


def _is_local_path(uri: str) -> bool:
    """No URI scheme (or a one-letter one: a Windows drive) means a path on this machine."""
    scheme = urlparse(uri).scheme
    return scheme == "" or len(scheme) == 1


def load_model_from_uri(
    uri: str, tracking_uri: str | None = None, device: str | None = None
) -> AdversarialAutoencoder:
    """Resolve ``uri`` (see module docstring) to a model in eval mode on ``device`` (default: CUDA if visible).

    Raises ``ModelURIError`` when nothing can be fetched and ``CheckpointError`` when the fetched files are not an
    aae_tune model; both are ``ValueError``s with a message meant for the user.
    """
    uri = str(uri).strip()
    if not uri:
        raise ModelURIError("empty model URI")
    if _is_local_path(uri):
        root = Path(uri).expanduser()
        if not root.exists():
            raise ModelURIError(f"{uri}: no such directory (and not an MLflow URI such as models:/name/1)")
        if not root.is_dir():
            raise ModelURIError(f"{uri}: expected a model directory (config.json + model_state.pt), got a file")
        return load_model_files(find_model_dir(root), device)

    # Remote: download into a temp dir that only lives until the weights are in memory. mlflow is imported here
    # because it is slow to import and local paths do not need it.
    import mlflow.artifacts
    from mlflow.exceptions import MlflowException

    with tempfile.TemporaryDirectory(prefix="aae_model_") as tmp:
        try:
            source = _resolve_registry_uri(uri, tracking_uri) if tracking_uri and uri.startswith("models:") else uri
            local = mlflow.artifacts.download_artifacts(
                artifact_uri=source, dst_path=tmp, tracking_uri=tracking_uri, registry_uri=tracking_uri
            )
        except (MlflowException, OSError, ValueError) as exc:
            where = f" (tracking URI {tracking_uri})" if tracking_uri else ""
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelURIError(f"cannot download model {uri}{where}: {first_line}") from exc
        local_path = Path(local)
        # A URI may name one file (e.g. .../model_state.pt): its folder holds the rest.
        return load_model_files(find_model_dir(local_path if local_path.is_dir() else local_path.parent), device)


def _resolve_registry_uri(uri: str, tracking_uri: str) -> str:
    """``models:/name/version|stage|latest``, ``models:/name@alias`` or ``models:/<model_id>`` -> artifact URI.

    MLflow's own ``models:/`` download looks the model up in the process-wide registry URI and ignores the
    ``registry_uri`` argument (see ``ModelsArtifactRepository._get_model_uri_infos``), so the lookup is done here
    with a client bound to ``tracking_uri`` (the registry lives with the tracking server, MLflow's default).
    """
    from mlflow.store.artifact.utils.models import get_model_name_and_version

    client = mlflow_client(tracking_uri, registry=True)
    found = get_model_name_and_version(client, uri)  # (name, version), or (model_id,) for a logged model
    if len(found) == 1:
        return client.get_logged_model(found[0]).artifact_location
    return client.get_model_version_download_uri(*found)
