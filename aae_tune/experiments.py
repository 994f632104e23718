"""The paper's experiments and priors, one declaration each: what a model variant accepts, reports and draws,
and what each kind of p(z) takes.

``ExperimentConfig.model`` names one of ``MODEL_SPECS``. The config's checks, the metric a search space may
optimise, the scores a trial reports (``aae_tune.evaluate.scores``) and the figures it logs
(``aae_tune.figures.sets``) all read the declaration here instead of keeping tables of their own. The classes that
implement the variants are registered under the same names in ``aae_tune.model.registry``.

``PriorConfig.kind`` names one of ``PRIOR_SPECS``: the code dimension it fixes and the ``PriorConfig`` fields it
reads, with their ranges. The config check (``aae_tune.config``) and the model's prior
(``aae_tune.model.priors.build_prior``, whose ``SAMPLERS`` hold one sampler per kind) both read it. A new prior
kind is its name in ``PriorKind``, one ``PriorSpec`` and one sampler (plus a ``PriorConfig`` field, with its
default, for each new parameter).

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
# The range a prior parameter must lie in (written into the message as it reads: "must be > 0").
Bound = Literal["> 0", ">= 0", ">= 1"]


def within(value: float, bound: Bound) -> bool:
    """Whether ``value`` lies in ``bound`` (NaN lies in none: every comparison with it is false)."""
    return value > 0 if bound == "> 0" else value >= (1 if bound == ">= 1" else 0)


@dataclass(frozen=True)
class PriorSpec:
    """One kind of p(z). ``params``: the ``PriorConfig`` fields its sampler takes, in the order of the sampler's
    arguments (after the code dimension, for a prior of any dimension), each with its range."""

    paper: str
    params: dict[str, Bound]
    # the code dimension: a number (the 2-D priors), "any" (the sampler takes code_dim) or "components" (one-hot:
    # one dimension per component, so code_dim must equal prior.num_components)
    dim: int | Literal["any", "components"]
    categorical: bool = False  # samples are one-hot vectors of a categorical

    @property
    def has_components(self) -> bool:
        """Whether each sample comes from one of ``num_components`` components (a label can pick one)."""
        return "num_components" in self.params

    def code_dim_problem(self, kind: str, code_dim: int, num_components: int) -> str | None:
        """Why ``code_dim`` does not fit this prior, as the config check reports it; None when it fits."""
        if isinstance(self.dim, int) and code_dim != self.dim:
            return f"code_dim: the {kind} prior is {self.dim}-D, so code_dim must be {self.dim}, got {code_dim}"
        if self.dim == "components" and code_dim != num_components:
            return (f"code_dim: a {kind} prior needs code_dim == prior.num_components ({num_components}), "
                    f"got {code_dim}")
        return None


PRIOR_SPECS: dict[str, PriorSpec] = {
    "gaussian": PriorSpec("Sec. 3, App. A.1", params={"std": "> 0"}, dim="any"),
    # K elongated 2-D Gaussians arranged as petals around the origin
    "mixture": PriorSpec("Sec. 2.3, Fig. 3, 4a", dim=2, params={
        "num_components": ">= 1", "radius": "> 0", "radial_std": "> 0", "tangential_std": "> 0"}),
    "swiss_roll": PriorSpec("Sec. 2.3, Fig. 4c-d", dim=2, params={
        "num_components": ">= 1", "roll_scale": "> 0", "roll_turns": "> 0", "roll_noise": ">= 0"}),
    "categorical": PriorSpec("Sec. 5-6", params={"num_components": ">= 1"}, dim="components", categorical=True),
}
assert set(PRIOR_SPECS) == set(PRIORS), "every PriorKind needs a PriorSpec"


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
# a label-conditioned discriminator picks the prior component of each label: the prior must have components
assert all(PRIOR_SPECS[kind].has_components for spec in MODEL_SPECS.values() if spec.component_per_label
           for kind in spec.priors), "a component_per_label model may only take priors with components"

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
