"""User-facing errors of the training layer, importable without loading torch."""


class TrainingDiverged(RuntimeError):
    """A loss became NaN/inf: the run cannot recover, stop it and record why."""


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable, or was written by an incompatible config."""
