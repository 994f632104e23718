"""A trial's score, defined once: the best validation value of the space's metric over the trial's epochs, and the
epoch it was reached at. The test figure comes from the checkpoint of that epoch.

Every place a person or a program reads a trial's score uses these names:

- each epoch the trainable reports the epoch's own value (``<metric>``, as before: it stays the per-epoch history
  in MLflow) and the running score: ``best_<metric>`` and ``best_epoch``. Tune's table shows both, MLflow logs
  both on the trial run, and the searcher (Optuna's value for a trial is the running score of its last result)
  and ASHA read ``best_<metric>`` (``tune_metric``);
- ``checkpoint_score`` ranks the trial's checkpoints (Tune keeps the best few): the epoch's value when it was scored
  that epoch, the worst value when the score was carried from an earlier epoch (``evaluation.every_epochs`` > 1),
  so that a checkpoint whose weights were never scored is never kept as the best one;
- the parent run names the best trial's figures ``best_trial_<name>``: ``best_trial_valid_parzen_ll``,
  ``best_trial_epoch``, ``best_trial_test_parzen_ll`` (what the best trial reached, not a best over tests).

Nothing here imports the rest of the package, so the trainable, the driver and the tests share it cheaply.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

BEST_EPOCH = "best_epoch"  # the epoch at which a trial reached its score
CHECKPOINT_SCORE = "checkpoint_score"  # Tune's ranking of a trial's checkpoints (bookkeeping: not logged)
BEST_TRIAL_PREFIX = "best_trial_"  # the parent run's figures of its best trial
SCORE_FILE = "best_score.json"  # in every checkpoint: the running score at that epoch, for a restored trial
MAX_EPOCH = 10**7  # far beyond any budget: a larger epoch in a score file is not one a trial wrote
MAX_SCORE_BYTES = 4096  # such a file is ~80 bytes; it sits in the storage path, so it is read bounded


def best_key(metric: str) -> str:
    """``valid_parzen_ll`` -> ``best_valid_parzen_ll``: a trial's running score."""
    return f"best_{metric}"


def best_trial_key(name: str) -> str:
    """A figure of the search's best trial, on the parent run: ``best_trial_test_parzen_ll``."""
    return f"{BEST_TRIAL_PREFIX}{name}"


def tune_metric(metric: str, scheduler: str) -> str:
    """What Tune's searcher and scheduler rank trials by.

    The running score for ASHA and FIFO: Optuna then records each trial's score (the best epoch, not the last),
    and ASHA compares the trials at a rung by the score each would keep if stopped there, the same figure the
    summary, the table and MLflow give. PBT ranks the epoch's own value instead: it copies a member's *current*
    weights, so it must compare what those weights score now, not what they scored epochs ago."""
    return metric if scheduler == "pbt" else best_key(metric)


def worst(mode: str) -> float:
    return -math.inf if mode == "max" else math.inf


def at_least_as_good(a: float, b: float, mode: str) -> bool:
    """``a`` as good as ``b`` or better: of epochs that tie, the latest holds the score. Tune's checkpoint manager
    ranks a later checkpoint of an equal score higher and keeps it, so the epoch named here is always one whose
    checkpoint is kept (the test figure's)."""
    return a >= b if mode == "max" else a <= b


@dataclass
class RunningBest:
    """A trial's score so far: updated with every scored epoch, saved in every checkpoint (``SCORE_FILE``)."""

    metric: str
    mode: str
    value: float | None = None
    epoch: int = 0

    def update(self, value: float, epoch: int) -> None:
        if math.isfinite(value) and (self.value is None or at_least_as_good(value, self.value, self.mode)):
            self.value, self.epoch = float(value), int(epoch)

    def result(self) -> dict[str, float]:
        """What a Tune result carries: the running score (the worst value until an epoch is scored)."""
        return {best_key(self.metric): worst(self.mode) if self.value is None else self.value,
                BEST_EPOCH: self.epoch}

    def to_json(self) -> str:
        return json.dumps({"metric": self.metric, "value": self.value, "epoch": self.epoch})

    @classmethod
    def from_json(cls, text: str, metric: str, mode: str) -> RunningBest | None:
        """The saved score of ``metric``; None for another metric or an unreadable file."""
        try:
            data = json.loads(text)
        except (ValueError, RecursionError):
            return None
        if not isinstance(data, dict) or data.get("metric") != metric:
            return None
        value, epoch = data.get("value"), data.get("epoch", 0)
        finite = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        if (value is not None and not finite) or not (isinstance(epoch, int) and not isinstance(epoch, bool)):
            return None
        if epoch < 0 or (value is not None and epoch < 1) or epoch > MAX_EPOCH:
            return None
        return cls(metric, mode, None if value is None else float(value), epoch)
