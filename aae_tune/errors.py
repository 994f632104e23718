"""Every user-facing error of aae_tune, importable without loading torch, Ray or MLflow.

Each one is a ``ValueError`` or ``RuntimeError`` whose message is the whole story for the user: what is wrong and
how to fix it. Command lines catch them and print one ``error: ...`` line (``fail``).
"""

from __future__ import annotations

import sys


class ConfigError(ValueError):
    """A config (file, dict or override) is invalid; the message lists every problem found."""

    def __init__(self, problems: list[str], source: str = "config"):
        self.problems = list(problems)
        self.source = source
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{source} has {len(self.problems)} problem(s):\n{lines}")

    def __reduce__(self) -> tuple[type[ConfigError], tuple[list[str], str], dict]:
        # An exception pickles as (class, self.args) by default, and self.args is the built message: Ray, which
        # pickles a trial's exception to the driver, re-created it as ConfigError(message), one "problem" per
        # character. Rebuild it from what __init__ takes instead.
        return type(self), (self.problems, self.source), self.__dict__


class DataError(ValueError):
    """Any problem with a dataset: missing, corrupt, wrong shape, download failure."""


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable, or was written by an incompatible config."""


class ModelURIError(ValueError):
    """A model URI that cannot be resolved: unknown scheme, missing path, run or registered model."""


class TrainingDiverged(RuntimeError):
    """A loss became NaN/inf: the run cannot recover, stop it and record why."""


class UntrustedState(ValueError):
    """What sits in a search's storage path was not provably written by that search (no valid signature)."""


class SearchBusy(RuntimeError):
    """Another driver holds the search's lease: two drivers must never run one search."""


class SearchFailed(RuntimeError):
    """A search failed after it started: it is recorded as failed with the reason, and ``--resume`` continues it."""


def is_divergence(error_text: str | None) -> bool:
    """Whether an error as Tune records it (a traceback or ``repr`` string) is a ``TrainingDiverged``."""
    return TrainingDiverged.__name__ in (error_text or "")


def fail(message: str, code: int = 2) -> int:
    """Print one ``error: ...`` line on stderr and return the exit code for ``main`` to return."""
    print(f"error: {message}", file=sys.stderr)
    return code
