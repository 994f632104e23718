"""The Tune side of a search's safety: ``SearchGuard`` signs Tune's state at every experiment checkpoint (the trust
boundary of ``search.signing``) and stops the whole search cleanly when its storage fails or its lease is lost.

Tune pickles its callbacks and stopper into ``tuner.pkl`` and, on ``--resume``, uses the unpickled copies: the guard
therefore holds only the search folder's name and finds the live driver's signer and lease in ``ACTIVE``, which the
driver fills (``guard_search``) and empties when the search ends.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ray import tune

from aae_tune.search.callback import failure_reason
from aae_tune.search.lease import SearchLease
from aae_tune.search.pending import PendingTimeout
from aae_tune.search.signing import StateSigner

logger = logging.getLogger(__name__)

# A trial or state write that failed for one of these reasons fails every other write too: stop, don't retry.
STORAGE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO)
STORAGE_MESSAGES = tuple(os.strerror(code) for code in STORAGE_ERRNOS)


@dataclass
class SearchControls:
    """The live driver's side of one search: what the guard signs with, and why the search must stop (if it must)."""

    signer: StateSigner
    lease: SearchLease | None = None
    stop_reason: str = ""
    expected_trials: int = 0  # a resumed search: the trials its signed state holds

    def reason_to_stop(self) -> str:
        return self.stop_reason or (self.lease.lost if self.lease else "")


ACTIVE: dict[str, SearchControls] = {}  # experiment folder -> controls, for the guards Tune unpickled


@contextlib.contextmanager
def guard_search(experiment_dir: str, controls: SearchControls) -> Iterator[SearchControls]:
    ACTIVE[experiment_dir] = controls
    try:
        yield controls
    finally:
        ACTIVE.pop(experiment_dir, None)


def storage_failure(text: str) -> str | None:
    """The storage error in an error text (a trial's traceback, an OSError), if it is one."""
    found = [message for message in STORAGE_MESSAGES if message in text]
    return found[0] if found else None


class SearchGuard(tune.Callback, tune.Stopper):
    """Registered as a Tune callback (signing, trial errors) and as the run's stopper (stop everything)."""

    def __init__(self, experiment_dir: str, pending: PendingTimeout | None = None):
        self.experiment_dir = experiment_dir
        self.pending = pending  # trials waiting for resources no node has: warned at start, stopped after a while
        self._staging: str | None = None

    @property
    def controls(self) -> SearchControls | None:
        return ACTIVE.get(self.experiment_dir)

    def __getstate__(self) -> dict[str, Any]:
        return {"experiment_dir": self.experiment_dir, "pending": self.pending, "_staging": None}

    # ---- callback --------------------------------------------------------------------------------------
    def setup(self, **info: Any) -> None:
        if self.pending is not None:
            self.pending.setup(**info)

    def on_step_begin(self, iteration: int, trials: list, **info: Any) -> None:
        controls = self.controls
        if self.pending is not None:
            self.pending.on_step_begin(iteration, trials, **info)
            if self.pending.fired and controls is not None and not controls.stop_reason:
                controls.stop_reason = self.pending.fired
        if controls is not None and controls.expected_trials and not trials and not controls.stop_reason:
            # Tune logs "Failed to restore the run state" and quietly starts the experiment again: never that
            controls.stop_reason = (f"Tune could not restore the {controls.expected_trials} trials of the search's "
                                    "signed state (see its log above); stopped instead of starting over")
        if self._staging is None and trials:
            # Tune keeps its state in a local staging folder and uploads it after each experiment checkpoint
            self._staging = trials[0].storage.experiment_driver_staging_path

    def get_state(self) -> dict | None:
        """Called inside Tune's experiment checkpoint, after Tune wrote its state files to the staging folder and
        before it uploads them: the moment to sign exactly what is uploaded. Returns None, so Tune writes no
        callback-state file (which would be written after this and so be unsigned)."""
        controls = self.controls
        if controls is None or self._staging is None or controls.stop_reason:
            return None
        try:
            controls.signer.include_staging(self._staging)
            controls.signer.commit()
        except OSError as exc:
            controls.stop_reason = f"writing the search's state failed ({exc}); the last complete state is kept"
            logger.error("%s", controls.stop_reason)
        return None

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._stop_on_storage_failure(trial)

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._stop_on_storage_failure(trial)  # a retry would fail the same way, and so would every other trial

    def _stop_on_storage_failure(self, trial: Any) -> None:
        controls, cause = self.controls, storage_failure(failure_reason(trial))
        if controls is not None and cause and not controls.stop_reason:
            controls.stop_reason = f"trial {trial.trial_id} could not write to the storage path ({cause})"

    # ---- stopper ---------------------------------------------------------------------------------------
    def __call__(self, trial_id: str, result: dict) -> bool:
        return False

    def stop_all(self) -> bool:
        controls = self.controls
        return bool(controls and controls.reason_to_stop()) or bool(self.pending and self.pending.stop_all())
