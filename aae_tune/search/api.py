"""The search service from Python: the same checks, the same search and the same MLflow record as
``python -m aae_tune.search``, with the result as an object instead of a printed summary.

    >>> from aae_tune.search import run
    >>> result = run("likelihood_mnist", num_samples=8, max_epochs=20, seed=0,
    ...              overrides={"code_dim": 8, "budget.max_concurrent": 2}, tracking_uri="sqlite:///mlflow.db")
    >>> result.best.trial_id, result.best.best_valid, result.best.best_epoch, result.best.config
    >>> result.best.test_metrics
    >>> result.best.run_id, result.parent_run_id, result.registered_model

The keyword arguments are the fields of ``SearchOptions`` (aae_tune.search.options: each one's type and default),
the command line's flags by their Python names. Bad input raises ``ConfigError`` (every problem in one message; a
keyword that is no option, with the names that are) or ``DataError`` before Ray starts.
"""

from __future__ import annotations

import inspect
from dataclasses import fields
from typing import Any

from aae_tune.search.options import SearchOptions
from aae_tune.search.request import SearchRequest, build_request


def make_request(space: str, **options: Any) -> SearchRequest:
    """A validated search, exactly as the command line builds it (the arguments are its flags; ``overrides`` are
    its ``--set`` pairs: dotted keys into the space file, e.g. ``{"code_dim": 8, "budget.max_concurrent": 2}``)."""
    return build_request(SearchOptions.from_kwargs(space, **options))


def run(space: str, *, data: Any = None, **options: Any):
    """Run (or with ``resume=True`` continue) a search; return its ``SearchSummary``: ``best`` (a ``TrialRow``:
    trial_id, run_id, config, best_valid, test_metrics, checkpoint), ``rows`` (every trial), ``parent_run_id``,
    ``registered_model``, ``interrupted``. ``options`` are those of :func:`make_request`; ``data`` replaces the
    space's dataset with already loaded ``DataSplits`` (e.g. ``load_mnist().head(10_000)`` for a benchmark)."""
    from aae_tune.search.driver import load_search_data
    from aae_tune.search.session import run_search

    request = make_request(space, **options)
    return run_search(request, data if data is not None else load_search_data(request))


def options_signature(function: Any, *leading: inspect.Parameter) -> inspect.Signature:
    """``leading`` then every option as a keyword with its default: what ``help()`` and editors show for a function
    that takes ``**options`` (the options are declared once, in ``SearchOptions``)."""
    keyword = inspect.Parameter.KEYWORD_ONLY
    params = [inspect.Parameter("overrides", keyword, default=None, annotation="Mapping[str, Any] | None")]
    params += [inspect.Parameter(f.name, keyword, default=f.default, annotation=f.type)
               for f in fields(SearchOptions) if f.name not in ("space", "overrides")]
    return inspect.signature(function).replace(parameters=[*leading, *params])


_SPACE = inspect.Parameter("space", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation="str")
make_request.__signature__ = options_signature(make_request, _SPACE)  # type: ignore[attr-defined]
run.__signature__ = options_signature(  # type: ignore[attr-defined]
    run, _SPACE, inspect.Parameter("data", inspect.Parameter.KEYWORD_ONLY, default=None, annotation="Any"))
