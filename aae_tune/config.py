"""Experiment configuration: every default of the core library lives here, typed.

Defaults follow Appendix A.1 of Makhzani et al. (2015), the likelihood experiment: encoder, decoder and
discriminator each have two hidden layers of 1000 ReLU units, weights ~ N(0, 0.01), a linear code layer, a sigmoid
decoder output, Euclidean reconstruction cost, mini-batches of 100, SGD with momentum 0.9 for the reconstruction
phase and 0.1 for the adversarial phases, and piecewise-constant learning rates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal

from aae_tune.errors import ConfigError
from aae_tune.experiments import (
    MODEL_SPECS,
    PRIOR_SPECS,
    Bound,
    EncoderKind,
    ModelKind,
    ModelSpec,
    PriorKind,
    ScoreKind,
    within,
)
from aae_tune.safe_yaml import read_yaml_file
from aae_tune.schema import from_dict, parse_overrides, set_path, to_dict

# The fields a checkpoint's tensors (and the prior they were trained against) depend on. hidden_dropout is one:
# its Dropout modules sit between the layers, so turning it on or off renumbers the state dict's keys.
ARCHITECTURE_FIELDS = ("model", "code_dim", "encoder", "noise_dim", "net", "prior", "num_classes", "cluster_heads",
                       "hidden_dropout")
@dataclass(frozen=True)
class NetConfig:
    """Sizes shared by encoder, decoder and discriminator MLPs."""

    hidden: tuple[int, ...] = (1000, 1000)  # hidden ReLU layers of encoder and decoder
    disc_hidden: tuple[int, ...] = (1000, 1000)  # hidden ReLU layers of the discriminator
    init_std: float = 0.01  # weights ~ N(0, init_std), biases 0
    output: Literal["sigmoid", "linear"] = "sigmoid"  # decoder output layer
    # Batch normalisation. encoder: every encoder layer, its q(y|x) / q(z|x) output layers included (App. A.3);
    # autoencoder: those and every decoder layer, the output layer included (App. A.2.2). Never in discriminators.
    batch_norm: Literal["none", "encoder", "autoencoder"] = "none"

    def check(self) -> list[str]:
        errs = [
            f"{name}: layer sizes must be >= 1, got {list(getattr(self, name))}"
            for name in ("hidden", "disc_hidden")
            if any(width < 1 for width in getattr(self, name))
        ]
        if not self.init_std > 0:
            errs.append(f"init_std: must be > 0, got {self.init_std}")
        return errs


@dataclass(frozen=True)
class PriorConfig:
    """p(z): the distribution the adversarial phase matches the codes to (samples only are needed). Which fields
    each kind reads, and their ranges, is declared in ``aae_tune.experiments.PRIOR_SPECS``."""

    kind: PriorKind = "gaussian"
    std: float = 1.0  # gaussian: N(0, std^2 I)
    num_components: int = 10  # mixture / swiss_roll / categorical: number of components (labels)
    radius: float = 2.0  # mixture: distance of each component's mean from the origin
    radial_std: float = 0.5  # mixture: std along the radius (the "petal" length)
    tangential_std: float = 0.05  # mixture: std across the radius
    roll_scale: float = 3.0  # swiss_roll: radius at the end of the roll
    roll_turns: float = 2.0  # swiss_roll: number of turns
    roll_noise: float = 0.05  # swiss_roll: std of the Gaussian around the roll

    def check(self) -> list[str]:
        # every field, whichever kind reads it: a value out of range is a mistake even where this kind ignores it
        return [f"{name}: must be {bound}, got {getattr(self, name)}" for name, bound in PRIOR_PARAMS.items()
                if not within(getattr(self, name), bound)]

    def code_dim_problem(self, code_dim: int) -> str | None:
        """Why a code of ``code_dim`` dimensions cannot have this prior (e.g. a 2-D prior); None when it can."""
        return PRIOR_SPECS[self.kind].code_dim_problem(self.kind, code_dim, self.num_components)


# Each parameter of a prior kind, with its range (a field two kinds read has one range): what PriorConfig checks
PRIOR_PARAMS: dict[str, Bound] = {name: bound for spec in PRIOR_SPECS.values() for name, bound in spec.params.items()}
assert set(PRIOR_PARAMS) == {f.name for f in fields(PriorConfig)} - {"kind"}, \
    "every PriorConfig field is a parameter some PRIOR_SPECS kind declares, and every declared one a field"


@dataclass(frozen=True)
class ScheduleConfig:
    """One optimizer and its piecewise-constant learning rate: lr * factor ** (number of drops passed)."""

    lr: float = 0.01
    momentum: float = 0.9  # SGD momentum; for Adam it is beta1
    drop_epochs: tuple[int, ...] = ()  # epochs (0-based, sorted) at whose start the lr is multiplied by drop_factor
    drop_factor: float = 0.1

    def check(self) -> list[str]:
        errs = []
        if not (self.lr > 0 and math.isfinite(self.lr)):
            errs.append(f"lr: must be a finite number > 0, got {self.lr}")
        if not 0 <= self.momentum < 1:
            errs.append(f"momentum: must be in [0, 1), got {self.momentum}")
        if list(self.drop_epochs) != sorted(set(self.drop_epochs)) or any(e < 1 for e in self.drop_epochs):
            errs.append(f"drop_epochs: must be increasing epochs >= 1, got {list(self.drop_epochs)}")
        if not 0 < self.drop_factor <= 1:
            errs.append(f"drop_factor: must be in (0, 1], got {self.drop_factor}")
        return errs


@dataclass(frozen=True)
class OptimConfig:
    optimizer: Literal["sgd", "adam"] = "sgd"
    reconstruction: ScheduleConfig = field(default_factory=lambda: ScheduleConfig(lr=0.01, momentum=0.9))
    adversarial: ScheduleConfig = field(default_factory=lambda: ScheduleConfig(lr=0.1, momentum=0.1))
    # semi-supervised classification phase: cross-entropy of q(y|x) on a labeled mini-batch (Sec. 5)
    classification: ScheduleConfig = field(default_factory=lambda: ScheduleConfig(lr=0.1, momentum=0.9))


@dataclass(frozen=True)
class ClusterHeadConfig:
    """Sec. 7: the representation is W_C y + z; W_C's rows are the cluster heads."""

    kind: Literal["learned", "fixed"] = "learned"  # fixed: W_C = scale * I (needs code_dim == num_classes)
    scale: float = 10.0  # fixed heads: W_C = scale * I; learned heads: N(0, scale^2) initialisation
    threshold: float = 6.0  # eta: pairs of heads closer than this are pushed apart
    penalty: float = 1.0  # weight of sum_{i<j} relu(eta - ||w_i - w_j||) in the reconstruction phase

    def check(self) -> list[str]:
        errs = [f"{k}: must be > 0, got {getattr(self, k)}" for k in ("scale", "threshold") if not getattr(self, k) > 0]
        return errs + ([f"penalty: must be >= 0, got {self.penalty}"] if self.penalty < 0 else [])


@dataclass(frozen=True)
class ExperimentConfig:
    """Everything that defines one training run; the unit a search samples."""

    model: ModelKind = "likelihood"  # which AAE variant (aae_tune.experiments.MODEL_SPECS)
    seed: int = 0
    epochs: int = 100
    batch_size: int = 100
    code_dim: int = 8
    encoder: EncoderKind = "deterministic"
    noise_dim: int = 100  # universal encoder: size of the noise input eta ~ N(0, I)
    input_noise_std: float = 0.0  # Gaussian noise added to encoder inputs during training
    input_dropout: float = 0.0  # dropout on encoder inputs during training (App. A.2.2, A.3: 0.2)
    hidden_dropout: float = 0.0  # dropout after every hidden layer of encoder and decoder during training
    # Reconstruction cost per example: squared = ||x - x_hat||^2 (App. A.1's Euclidean cost), half_squared = half of
    # it (App. A.2.1, A.3), bce = binary cross-entropy of the sigmoid output (pixels in [0, 1] only).
    recon_cost: Literal["squared", "half_squared", "bce"] = "squared"
    # Arithmetic of the training step: bf16 runs the phases' forward passes under torch.autocast (bfloat16 matrix
    # multiplies, fp32 weights, optimizer state and costs). Validation scores, samples and Parzen stay fp32.
    precision: Literal["fp32", "bf16"] = "fp32"
    num_classes: int = 10  # labels / clusters: size of y for the categorical models, components when conditioned
    # Training labels the model may use, drawn with the seed and balanced per class; null = every label. Models
    # without labels (likelihood, clustering) ignore it.
    num_labeled: int | None = None
    cluster_heads: ClusterHeadConfig = field(default_factory=ClusterHeadConfig)  # dimred only
    net: NetConfig = field(default_factory=NetConfig)
    prior: PriorConfig = field(default_factory=PriorConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)

    def check(self) -> list[str]:
        errs = []
        for name in ("epochs", "batch_size", "code_dim", "noise_dim"):
            if getattr(self, name) < 1:
                errs.append(f"{name}: must be >= 1, got {getattr(self, name)}")
        if self.input_noise_std < 0:
            errs.append(f"input_noise_std: must be >= 0, got {self.input_noise_std}")
        errs += [f"{name}: must be in [0, 1), got {getattr(self, name)}" for name in ("input_dropout", "hidden_dropout")
                 if not 0 <= getattr(self, name) < 1]
        if self.recon_cost == "bce" and self.net.output != "sigmoid":
            errs.append("recon_cost: bce needs a sigmoid decoder output (pixels in [0, 1]); use squared or "
                        "half_squared")
        if problem := self.prior.code_dim_problem(self.code_dim):
            errs.append(problem)
        return errs + self._check_variant()

    def _check_variant(self) -> list[str]:
        """What the model variant's declaration (aae_tune.experiments.MODEL_SPECS) allows."""
        spec, errs = self.spec, []
        if self.num_classes < 2:
            errs.append(f"num_classes: must be >= 2, got {self.num_classes}")
        if self.num_labeled is not None and self.num_labeled < 0:
            errs.append(f"num_labeled: must be >= 0 (or null for every label), got {self.num_labeled}")
        if self.encoder not in spec.encoders:
            errs.append(f"encoder: the {self.model} model takes a {' or '.join(spec.encoders)} encoder, got "
                        f"{self.encoder!r}")
        if self.prior.kind not in spec.priors:
            errs.append(f"prior.kind: the {self.model} model's code has a {' or '.join(spec.priors)} prior, got "
                        f"{self.prior.kind!r}")
        elif spec.component_per_label and self.prior.num_components != self.num_classes:
            errs.append(f"prior.num_components: must equal num_classes ({self.num_classes}): one component per label")
        if spec.labels == "all" and self.num_labeled is not None:
            errs.append(f"num_labeled: the {self.model} model uses every label; set it to null, got {self.num_labeled}")
        heads = self.cluster_heads
        if self.model == "dimred" and heads.kind == "fixed" and self.code_dim != self.num_classes:
            errs.append(f"cluster_heads.kind: fixed heads (W_C = scale * I) need code_dim == num_classes, got "
                        f"code_dim {self.code_dim} and num_classes {self.num_classes}")
        return errs

    @property
    def spec(self) -> ModelSpec:
        """The declaration of this config's model variant."""
        return MODEL_SPECS[self.model]

    @property
    def uses_labels(self) -> bool:
        """Whether training sees labels (see ``LabelUse``)."""
        use = self.spec.labels
        return use in ("subset", "all") or (use == "optional" and self.num_labeled != 0)

    @property
    def score_kind(self) -> ScoreKind:
        """Which family of the paper's metrics a trial of this config is judged by."""
        return self.spec.score_kind(self.uses_labels)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None, source: str = "experiment config") -> ExperimentConfig:
        return from_dict(cls, data, source)

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)

    def architecture(self) -> dict[str, Any]:
        """The fields a checkpoint's tensors depend on: restoring across a change here is an error."""
        d = self.to_dict()
        return {k: d[k] for k in ARCHITECTURE_FIELDS}

    def replace(self, **changes: Any) -> ExperimentConfig:
        return replace(self, **changes)


# A seconds-long version of the App. A.1 set-up for smoke runs and tests: same structure, small layers. With
# 128-unit layers the paper's N(0, 0.01) init and plain SGD barely move in the few hundred steps a smoke run
# affords, so it uses a wider init and Adam.
SMOKE_OVERRIDES: dict[str, Any] = {
    "epochs": 1,
    "net": {"hidden": [128, 128], "disc_hidden": [64, 64], "init_std": 0.1},
    "optim": {"optimizer": "adam", "reconstruction": {"lr": 3e-3}, "adversarial": {"lr": 1e-3, "momentum": 0.5},
              "classification": {"lr": 1e-3}},
}


def load_experiment_config(
    path: str | None, overrides: list[str], extra: dict[str, Any] | None = None
) -> ExperimentConfig:
    """YAML file (optional) + built-in extras + ``--set`` overrides, validated in one go."""
    data: dict[str, Any] = {}
    source = "defaults"
    if path:
        source = path
        loaded = read_yaml_file(path)  # bounded: a huge or alias-bombed file is one ConfigError, not gigabytes
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError([f"top level must be a mapping of config keys, got {type(loaded).__name__}"], path)
        data = loaded or {}
    for key, value in (extra or {}).items():
        data[key] = value if not isinstance(value, dict) else {**data.get(key, {}), **value}
    for key, value in parse_overrides(overrides):
        set_path(data, key, value)
    return ExperimentConfig.from_dict(data, source=f"{source} (with overrides)" if overrides else source)
