"""Model name (``ExperimentConfig.model``) -> AAE class. One training loop (train.py) serves them all."""

from __future__ import annotations

from aae_tune.aae import AdversarialAutoencoder
from aae_tune.categorical import CategoricalAAE, DimRedAAE
from aae_tune.variants import ConditionedAAE, SupervisedAAE

MODELS: dict[str, type[AdversarialAutoencoder]] = {
    "likelihood": AdversarialAutoencoder,  # Sec. 3, Table 1
    "conditioned": ConditionedAAE,  # Sec. 2.3, Fig. 3-4: mixture / swiss-roll prior, label-conditioned D
    "supervised": SupervisedAAE,  # Sec. 4, Fig. 6-7
    "semisupervised": CategoricalAAE,  # Sec. 5, Table 2 (with labels)
    "clustering": CategoricalAAE,  # Sec. 6, Table 3 (no labels)
    "dimred": DimRedAAE,  # Sec. 7, Fig. 10-11
}
