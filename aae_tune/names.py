"""Names that more than one module (and the user, in MLflow and on disk) relies on: one home each.

Nothing here imports anything: the search, the cluster tools and the tests read the same strings.
"""

from __future__ import annotations

# ---- MLflow: experiments, registered models, run tags ------------------------------------------------------
EXPERIMENT_PREFIX = "aae-"
TAG_SEARCH = "aae_search"  # search name, on the parent run and every trial run
TAG_ROLE = "aae_role"  # ROLE_PARENT or ROLE_TRIAL
TAG_TRIAL = "aae_trial_id"  # Tune's trial id, on trial runs
TAG_MODEL_URI = "aae_model_uri"  # on a trial run: its logged MLflow model
TAG_REGISTERED = "aae_registered_model"  # on the parent run: models:/name/version of the best trial
TAG_BEST_TRIAL = "best_trial_id"
TAG_STOP_REASON = "stop_reason"
TAG_ORPHANS = "aae_orphan_trials_deleted"  # on a parent run: trial ids whose runs a resume soft-deleted
TAG_TRAINED_FROM = "aae_trained_from"  # on a --train-best parent run: the search whose best configs it trains
TAG_SOURCE_RUN = "aae_source_run"  # ... that search's parent run id
TAG_SOURCE_TRIALS = "aae_source_trials"  # ... its trials (JSON list), in this search's trial order
TAG_CONFIG_NOW = "aae_config_now"  # on a PBT trial run: the (mutated) config it trains with since its last restart
# On registered model versions: the validation metric and score they were chosen by, and whether a smoke run made
# them; the alias that points at the best version so far (``models:/aae-<space>@champion``).
VERSION_METRIC = "aae_metric"
VERSION_SCORE = "aae_valid_score"
VERSION_SMOKE = "aae_smoke"
CHAMPION_ALIAS = "champion"
ROLE_PARENT, ROLE_TRIAL = "parent", "trial"


def experiment_name(space_name: str) -> str:
    """The MLflow experiment (and registered model) of every search of one space: ``aae-<space>``."""
    return f"{EXPERIMENT_PREFIX}{space_name}"


# ---- files in a search's folder ----------------------------------------------------------------------------
SEARCH_RECORD = "aae_search.json"  # what a --resume must agree with
SPOOL_FILE = "mlflow_spool.jsonl"  # tracking events waiting for an unreachable MLflow
# The running driver's lease (one driver per search). Not .json: Tune copies every top-level .json/.pkl of the
# folder into its staging folder on restore and uploads that copy again at each sync, which would put back a
# stale lease over the live one.
LEASE_FILE = "aae_search.lease"
STATE_DIR = ".aae_state"  # signed copies of everything Tune unpickles on --resume (search/signing.py)
# Package layout a search's Tune state was pickled with; a --resume across layouts is refused (the pickled
# trainable and callback name modules by their path). 2: the subpackage layout (model/, search/, ...).
SEARCH_LAYOUT = 2

# ---- files in a checkpoint / model folder ------------------------------------------------------------------
CHECKPOINT_FILE = "trainer.pt"  # full trainer state: model, optimizers, schedules, RNG, epoch
CONFIG_FILE = "config.json"  # the model's ExperimentConfig and data_dim
STATE_FILE = "model_state.pt"  # the model's weights as a state dict
DIVERGED_FILE = "DIVERGED"  # a trial's last checkpoint when training diverged
