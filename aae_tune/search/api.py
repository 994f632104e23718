"""The search service from Python: the same checks, the same search and the same MLflow record as
``python -m aae_tune.search``, with the result as an object instead of a printed summary.

    >>> from aae_tune.search import run
    >>> result = run("likelihood_mnist", num_samples=8, max_epochs=20, seed=0,
    ...              overrides={"code_dim": 8, "budget.max_concurrent": 2}, tracking_uri="sqlite:///mlflow.db")
    >>> result.best.trial_id, result.best.best_valid, result.best.config, result.best.test_metrics
    >>> result.best.run_id, result.parent_run_id, result.registered_model

Bad input raises ``ConfigError`` (every problem in one message) or ``DataError`` before Ray starts.
"""

from __future__ import annotations

from typing import Any

from aae_tune.search.cli import build_parser
from aae_tune.search.request import SearchRequest, build_request


def make_request(space: str, *, num_samples: int | None = None, max_epochs: int | None = None,
                 max_concurrent: int | None = None, seed: int = 0, overrides: dict[str, Any] | None = None,
                 data_dir: str | None = None, tracking_uri: str | None = None, storage_path: str = "ray_results",
                 address: str | None = None, cpus_per_trial: float = 1.0, gpus_per_trial: float | None = None,
                 name: str | None = None, resume: bool = False, top_k: int | None = None,
                 final_samples: int | None = None, smoke: bool = False, max_failures: int = 2,
                 dashboard: bool = False, optuna_storage: str | None = None,
                 warm_start: str | None = None, artifact_location: str | None = None,
                 train_best: str | None = None, pending_timeout: float | None = None) -> SearchRequest:
    """A validated search, exactly as the command line builds it (the arguments are its flags; ``overrides`` are
    its ``--set`` pairs: dotted keys into the space file, e.g. ``{"code_dim": 8, "budget.max_concurrent": 2}``)."""
    args = build_parser().parse_args(["--space", space])  # the command line's defaults
    settings = {k: v for k, v in locals().items() if k not in ("space", "args", "overrides")}
    vars(args).update(settings)
    args.overrides = list((overrides or {}).items())  # values as they are: no text round trip
    return build_request(args)


def run(space: str, *, data: Any = None, **options: Any):
    """Run (or with ``resume=True`` continue) a search; return its ``SearchSummary``: ``best`` (a ``TrialRow``:
    trial_id, run_id, config, best_valid, test_metrics, checkpoint), ``rows`` (every trial), ``parent_run_id``,
    ``registered_model``, ``interrupted``. ``options`` are those of :func:`make_request`; ``data`` replaces the
    space's dataset with already loaded ``DataSplits`` (e.g. ``load_mnist().head(10_000)`` for a benchmark)."""
    from aae_tune.search.driver import load_search_data
    from aae_tune.search.session import run_search

    request = make_request(space, **options)
    return run_search(request, data if data is not None else load_search_data(request))
