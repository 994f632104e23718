"""Draw samples from a trained model and save them as a PNG grid; home of the shared model-URI resolver.

    python -m aae_tune.sample --model-uri URI --n 100 --out grid.png [--seed 0] [--tracking-uri URI]

URI forms (also used by ``python -m aae_tune.evaluate``): ``models:/name/version``, ``runs:/<run_id>/path``, any
other MLflow artifact URI (``file://``, ``s3://``, ``mlflow-artifacts:/`` ...), or a local directory (a folder
written by ``save_model_files``, an MLflow model folder, or a Tune checkpoint). Only ``config.json`` +
``model_state.pt`` (or a trainer checkpoint) are read, with ``torch.load(weights_only=True)``: a downloaded model
is never unpickled, so ``mlflow.pytorch.load_model`` is deliberately not used.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlparse

from aae_tune.aae import AdversarialAutoencoder
from aae_tune.errors import fail
from aae_tune.model_io import find_model_dir, load_model_files


class ModelURIError(ValueError):
    """A model URI that cannot be resolved: unknown scheme, missing path, run or registered model."""


def _is_local_path(uri: str) -> bool:
    """No URI scheme (or a one-letter one: a Windows drive) means a path on this machine."""
    scheme = urlparse(uri).scheme
    return scheme == "" or len(scheme) == 1


def load_model_from_uri(
    uri: str, tracking_uri: str | None = None, device: str | None = None
) -> AdversarialAutoencoder:
    """Resolve ``uri`` (see module docstring) to a model in eval mode on ``device`` (default: CUDA if visible).

    Raises ``ModelURIError`` when nothing can be fetched and ``CheckpointError`` (from model_io) when the fetched
    files are not an aae_tune model; both are ``ValueError``s with a message meant for the user.
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
    from mlflow import MlflowClient
    from mlflow.store.artifact.utils.models import get_model_name_and_version

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    found = get_model_name_and_version(client, uri)  # (name, version), or (model_id,) for a logged model
    if len(found) == 1:
        return client.get_logged_model(found[0]).artifact_location
    return client.get_model_version_download_uri(*found)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m aae_tune.sample", description="Save a PNG grid of model samples.")
    p.add_argument("--model-uri", required=True, help="models:/name/version, runs:/<run_id>/path, or a local dir")
    p.add_argument("--n", type=int, default=100, help="number of samples (default 100: a 10x10 grid)")
    p.add_argument("--out", required=True, help="output PNG path")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tracking-uri", default=None, help="MLflow tracking (and registry) URI for models:/ runs:/")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.n < 1:
        return fail(f"--n must be >= 1, got {args.n}")
    if args.seed < 0:
        return fail(f"--seed must be >= 0, got {args.seed}")
    if not args.out.lower().endswith(".png"):
        return fail(f"--out must be a .png path, got {args.out}")
    try:
        model = load_model_from_uri(args.model_uri, tracking_uri=args.tracking_uri)
    except ValueError as exc:  # ModelURIError / CheckpointError: the message is the whole story
        return fail(str(exc))

    from aae_tune.data.splits import guess_image_shape
    from aae_tune.metrics import draw_samples
    from aae_tune.plots import save_image_grid  # matplotlib: only once there is something to draw

    # a linear decoder output means standardised data (SVHN): each image is rescaled for display
    path = save_image_grid(draw_samples(model, args.n, args.seed), args.out, image_shape=guess_image_shape(
        model.data_dim), standardized=model.cfg.net.output == "linear")
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
