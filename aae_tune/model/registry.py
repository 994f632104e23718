"""Model name (``ExperimentConfig.model``) -> AAE class. One training loop (aae_tune/train.py) serves them all.

What each variant accepts, reports and draws is declared, torch-free, in ``aae_tune.experiments.MODEL_SPECS``
under the same names.
"""

from __future__ import annotations

from aae_tune.config import ExperimentConfig
from aae_tune.experiments import MODEL_SPECS
from aae_tune.model.aae import AdversarialAutoencoder
from aae_tune.model.categorical import CategoricalAAE, DimRedAAE
from aae_tune.model.variants import ConditionedAAE, SupervisedAAE

MODELS: dict[str, type[AdversarialAutoencoder]] = {
    "likelihood": AdversarialAutoencoder,
    "conditioned": ConditionedAAE,
    "supervised": SupervisedAAE,
    "semisupervised": CategoricalAAE,  # with labels
    "clustering": CategoricalAAE,  # without labels
    "dimred": DimRedAAE,
}
assert set(MODELS) == set(MODEL_SPECS), "every declared model needs a class, and every class a declaration"


def build_model(cfg: ExperimentConfig, data_dim: int = 784) -> AdversarialAutoencoder:
    """A freshly initialised model of ``cfg``'s variant for (N, data_dim) data (seed torch first for a fixed init)."""
    return MODELS[cfg.model](cfg, data_dim)
