"""The search service: space files, pre-flight checks, the Tune trainable and driver, MLflow tracking, finalize.

Kept free of imports so that validating a space (``aae_tune.search.space``) loads neither torch nor Ray.
"""


def run(space: str, **options):  # returns a SearchSummary (its type would import torch and Ray here)
    """Run a search from Python: see :func:`aae_tune.search.api.run` (imported on call, so that importing this
    package stays free of torch and Ray)."""
    from aae_tune.search.api import run as run_search

    return run_search(space, **options)
