"""The paper's experiments, one declaration each: what a model variant accepts, reports and draws.

``ExperimentConfig.model`` names one of ``MODEL_SPECS``. The config's checks, the metric a search space may
optimise, the scores a trial reports (``aae_tune.evaluate.scores``) and the figures it logs
(``aae_tune.figures.sets``) all read the declaration here instead of keeping tables of their own. The classes that
implement the variants are registered under the same names in ``aae_tune.model.registry``.

Plain data, no torch: validating a search space reads it without loading the model code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

ModelKind = Literal["likelihood", "conditioned", "supervised", "semisupervised", "clustering", "dimred"]
EncoderKind = Literal["deterministic", "gaussian", "universal"]
PriorKind = Literal["gaussian", "mixture", "swiss_roll", "categorical"]
# How a trial is judged (see ``VALIDATION_METRICS``); test figures are named like the validation ones.
ScoreKind = Literal["parzen", "components", "reconstruction", "classification", "clustering"]
# none: never sees a label. subset: every example's label, or a seeded balanced subset (num_labeled).
# all: every label (num_labeled must stay null). optional: labels unless num_labeled is 0.
LabelUse = Literal["none", "subset", "all", "optional"]
Figure = Literal["samples", "latent", "manifold", "neighbours", "style_label", "cluster_heads"]

ENCODERS: tuple[EncoderKind, ...] = get_args(EncoderKind)
PRIORS: tuple[PriorKind, ...] = get_args(PriorKind)


@dataclass(frozen=True)
class ModelSpec:
    paper: str  # where the paper describes it
    score: ScoreKind  # what a trial reports (with labels, for the models whose labels are optional)
    labels: LabelUse
    figures: tuple[Figure, ...]  # PNGs logged under figures/ for every trial
    unlabeled_score: ScoreKind | None = None  # optional-label models trained without any label
    encoders: tuple[EncoderKind, ...] = ENCODERS
    priors: tuple[PriorKind, ...] = PRIORS  # what p(z) of the (style) code may be
    categorical: bool = False  # q(y|x) softmax + q(z|x) style code, two adversaries (model/categorical.py)
    component_per_label: bool = False  # the prior has one component per label (label-conditioned discriminator)

    def score_kind(self, uses_labels: bool) -> ScoreKind:
        return self.score if uses_labels or self.unlabeled_score is None else self.unlabeled_score


_BASE_FIGURES: tuple[Figure, ...] = ("samples", "latent")
_CATEGORICAL = {"encoders": ("deterministic",), "priors": ("gaussian",), "categorical": True}

MODEL_SPECS: dict[str, ModelSpec] = {
    "likelihood": ModelSpec("Sec. 3, Table 1", score="parzen", labels="none",
                            figures=(*_BASE_FIGURES, "manifold", "neighbours")),
    # mixture / swiss-roll prior with a label-conditioned discriminator: one prior component per label
    "conditioned": ModelSpec("Sec. 2.3, Fig. 3-4", score="components", labels="subset",
                             figures=(*_BASE_FIGURES, "manifold"), priors=("mixture", "swiss_roll"),
                             component_per_label=True),
    "supervised": ModelSpec("Sec. 4, Fig. 6-7", score="reconstruction", labels="all",
                            figures=(*_BASE_FIGURES, "style_label"), encoders=("deterministic",),
                            priors=("gaussian",)),
    "semisupervised": ModelSpec("Sec. 5, Table 2", score="classification", unlabeled_score="clustering",
                                labels="optional", figures=(*_BASE_FIGURES, "style_label"), **_CATEGORICAL),
    "clustering": ModelSpec("Sec. 6, Table 3", score="clustering", labels="none",
                            figures=(*_BASE_FIGURES, "cluster_heads"), **_CATEGORICAL),
    "dimred": ModelSpec("Sec. 7, Fig. 10-11", score="classification", unlabeled_score="clustering",
                        labels="optional", figures=(*_BASE_FIGURES, "cluster_heads"), **_CATEGORICAL),
}
assert set(MODEL_SPECS) == set(get_args(ModelKind)), "every ModelKind needs a ModelSpec"

# What a trial reports besides the per-epoch training metrics (valid_recon_loss comes with every epoch).
VALIDATION_METRICS: dict[ScoreKind, tuple[str, ...]] = {
    "parzen": ("valid_parzen_ll", "valid_parzen_se", "valid_parzen_sigma"),
    "components": ("valid_component_accuracy",),
    "reconstruction": (),
    "classification": ("valid_error",),
    "clustering": ("valid_cluster_error", "valid_clusters_used"),
}
ALWAYS_REPORTED = ("valid_recon_loss",)
# Table 1: model samples of the Parzen window; the per-epoch validation estimate draws as many (a Parzen figure
# depends on its sample count, not only its noise)
TABLE1_SAMPLES = 10_000


def reported_metrics(score: ScoreKind) -> set[str]:
    """Validation metrics a trial of this kind reports: what a search space may optimise."""
    return {*ALWAYS_REPORTED, *VALIDATION_METRICS[score]}
