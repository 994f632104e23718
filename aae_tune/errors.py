"""User-facing errors of the training layer, importable without loading torch."""

import sys


class TrainingDiverged(RuntimeError):
    """A loss became NaN/inf: the run cannot recover, stop it and record why."""


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable, or was written by an incompatible config."""


def fail(message: str, code: int = 2) -> int:
    """Print one ``error: ...`` line on stderr and return the exit code for ``main`` to return."""
    print(f"error: {message}", file=sys.stderr)
    return code
