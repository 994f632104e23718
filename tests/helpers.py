"""Helpers shared by the test modules (fixtures live in conftest.py; everything imported lives here)."""

from __future__ import annotations

import socket
from pathlib import Path

from aae_tune.names import ROLE_PARENT, ROLE_TRIAL, TAG_ROLE, TAG_SEARCH, experiment_name
from aae_tune.store import mlflow_client

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_MNIST = REPO_ROOT.parent / "shared" / "data" / "mnist"
# What every likelihood trial logs under figures/ (the other models add theirs: tests/system/test_spaces_smoke.py).
LIKELIHOOD_FIGURES = {f"figures/{name}.png" for name in ("samples", "latent", "manifold", "neighbours")}


def closed_port() -> int:
    """A local port nobody listens on: connecting to it is refused immediately."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def search_runs(tracking_uri: str, search: str | None = None, space: str = "likelihood_mnist"):
    """(MlflowClient, parent runs, trial runs) of one search (or of every search of ``space``) in a store."""
    client = mlflow_client(tracking_uri)
    experiment = client.get_experiment_by_name(experiment_name(space))
    if experiment is None:
        return client, [], []
    query = f"tags.{TAG_SEARCH} = '{search}'" if search else ""
    runs = client.search_runs([experiment.experiment_id], filter_string=query, max_results=10_000)
    by_role = {role: [r for r in runs if r.data.tags.get(TAG_ROLE) == role] for role in (ROLE_PARENT, ROLE_TRIAL)}
    return client, by_role[ROLE_PARENT], by_role[ROLE_TRIAL]
