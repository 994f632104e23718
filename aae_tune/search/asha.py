"""ASHA whose rungs survive ``--resume``.

Tune restores a search's trials and its searcher on resume, but rebuilds the scheduler from the tuner as it was
first pickled: ASHA came back with empty rungs (Tune's table printed "Bracket: Iter 10.000: None | ..."), so every
trial passed the rungs it reached after a resume until new records had piled up, and the trials ASHA was meant to
stop trained on. ``ResumableASHA`` writes its rung records (milestone -> trial id -> score) as JSON into Tune's
staging folder whenever they change: they are signed and uploaded with Tune's own state at its next experiment
checkpoint (``SearchGuard.get_state``). After a resume it reads them back from the search folder, which the
pre-flight has verified by then, before its first decision.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

from ray.tune.schedulers import ASHAScheduler

from aae_tune.search.storage_files import read_bytes_on, write_text

RUNGS_FILE = "asha_rungs.json"
MAX_RUNGS_BYTES = 16 << 20  # a record is ~40 bytes: room for 100,000 trials at several rungs
MAX_RECORDS = 1_000_000  # per rung
MAX_TRIAL_ID = 200  # Tune's trial ids are ~11 characters
logger = logging.getLogger("aae_tune.asha")


class ResumableASHA(ASHAScheduler):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not all(hasattr(b, "_rungs") for b in getattr(self, "_brackets", [None])):  # Ray's private layout
            raise RuntimeError("ResumableASHA: this Ray's ASHAScheduler keeps no _brackets/_rungs; update asha.py")
        self._loaded = False  # rungs read back (once, at the first event of this driver)
        self._written = -1  # how many records the last written file held; records are only ever added

    def rung_records(self) -> list[list[list[Any]]]:
        """Per bracket, per rung: [milestone, {trial id: score}] (scores signed so that higher is better)."""
        return [[[milestone, dict(recorded)] for milestone, recorded in bracket._rungs] for bracket in self._brackets]

    def load_rung_records(self, saved: Any) -> int:
        """Merge saved records into the rungs of the same milestones; returns how many were taken. Anything that is
        not the shape ``rung_records`` writes is refused whole (the file is the search's own, signed, but still
        parsed as untrusted)."""
        if not _well_formed(saved, [[m for m, _ in b._rungs] for b in self._brackets]):
            raise ValueError(f"{RUNGS_FILE}: not the rung records of this scheduler")
        taken = 0
        for bracket, rungs in zip(self._brackets, saved, strict=True):
            for (_, recorded), (_, records) in zip(bracket._rungs, rungs, strict=True):
                for trial_id, score in records.items():
                    taken += trial_id not in recorded
                    recorded.setdefault(trial_id, float(score))  # ints up to 1e308 only: larger ones overflow
        return taken

    def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
        self._load_once(trial)
        super().on_trial_add(tune_controller, trial)

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        self._load_once(trial)
        action = super().on_trial_result(tune_controller, trial, result)
        self._write_if_changed(trial)
        return action

    def on_trial_complete(self, tune_controller: Any, trial: Any, result: dict) -> None:
        super().on_trial_complete(tune_controller, trial, result)
        self._write_if_changed(trial)

    def _load_once(self, trial: Any) -> None:
        if self._loaded:
            return
        self._loaded = True
        try:
            text = read_saved_rungs(trial.storage)
            if text is None:  # a new search, or one that stopped before any trial reached a rung
                return
            taken = self.load_rung_records(json.loads(text))
        except (OSError, ValueError, OverflowError, RecursionError) as exc:  # too large, not JSON, not rungs, ...
            logger.warning("ASHA's saved rungs are not readable (%s): its rungs start empty", exc)
            return
        logger.info("ASHA resumed with %d rung records", taken)
        self._write_if_changed(trial)  # into the new staging folder, so the next signed state keeps them

    def _write_if_changed(self, trial: Any) -> None:
        count = sum(len(recorded) for bracket in self._brackets for _, recorded in bracket._rungs)
        staging = getattr(getattr(trial, "storage", None), "experiment_driver_staging_path", None)
        if count == self._written or staging is None or not Path(staging).is_dir():
            return
        # -inf (a trial whose epochs never scored) is written as -Infinity and read back as such. Atomic: Tune may
        # upload the staging folder at any moment, and must never see half a file.
        write_text(str(Path(staging) / RUNGS_FILE), json.dumps(self.rung_records()))
        self._written = count


def read_saved_rungs(storage: Any) -> str | None:
    """The rung file in the search folder this driver restored (the trial's own storage context: the folder as it
    is now, where the pre-flight verified it, not where it was when the tuner was first pickled); None if absent."""
    path = f"{storage.experiment_fs_path.rstrip('/')}/{RUNGS_FILE}"
    data = read_bytes_on(storage.storage_filesystem, path, MAX_RUNGS_BYTES, name=RUNGS_FILE)
    return None if data is None else data.decode()


def _well_formed(saved: Any, milestones: list[list[float]]) -> bool:
    """Brackets of [milestone, {trial id: score}] rungs, with this scheduler's milestones in its order; a score is a
    number, never NaN or +inf (-inf: a trial whose every epoch failed to score)."""
    if not isinstance(saved, list) or len(saved) != len(milestones):
        return False
    for rungs, expected in zip(saved, milestones, strict=True):
        if not isinstance(rungs, list) or len(rungs) != len(expected):
            return False
        for rung, milestone in zip(rungs, expected, strict=True):
            if not (isinstance(rung, list) and len(rung) == 2 and rung[0] == milestone and isinstance(rung[1], dict)):
                return False
            if len(rung[1]) > MAX_RECORDS or not all(
                    isinstance(k, str) and len(k) <= MAX_TRIAL_ID and isinstance(v, int | float)
                    and not isinstance(v, bool) and not math.isnan(v) and v < math.inf for k, v in rung[1].items()):
                return False
    return True
