"""The search service: space files, pre-flight checks, the Tune trainable and driver, MLflow tracking, finalize.

Kept free of imports so that validating a space (``aae_tune.search.space``) loads neither torch nor Ray.
"""
