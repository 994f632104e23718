"""Search spaces: one declarative YAML file per experiment (``search_spaces/*.yaml``), validated up front.

A file holds the fixed experiment config, the searched fields with their distributions, the scheduler, the
searcher, the metric and the default budget. ``load_space`` reports every problem of a file in one
``ConfigError`` — file, key and fix — before Ray is started.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from aae_tune.config import ARCHITECTURE_FIELDS, SMOKE_OVERRIDES, ExperimentConfig
from aae_tune.errors import ConfigError
from aae_tune.experiments import TABLE1_SAMPLES, reported_metrics
from aae_tune.safe_yaml import read_yaml_file
from aae_tune.schema import collect, set_path, suggest, to_dict
from aae_tune.search.numbers import choice_problems, non_finite_paths, range_problems, too_large_counts
from aae_tune.search.values import decode_choice, duplicate_texts, encode_choice, is_listed, searched_values

# Names end up in paths (Tune's experiment folder) and MLflow names: no separators, no "..".
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
Distribution = Literal["uniform", "loguniform", "quniform", "qloguniform", "randint", "choice", "grid"]
# ASHA keeps the best 1/reduction_factor of the trials at each rung: beyond this it keeps no trial of a real budget
MAX_REDUCTION_FACTOR = 100.0


def shipped_spaces_dir() -> Path:
    """search_spaces/ of the source tree this package runs from (a checkout, editable or on PYTHONPATH), else the
    installed package data of ``aae_tune.search_spaces`` (pyproject.toml maps the folder to that package)."""
    checkout = Path(__file__).resolve().parents[2] / "search_spaces"
    if (checkout / "__init__.py").is_file():
        return checkout
    return Path(str(resources.files("aae_tune.search_spaces")))


SPACES_DIR = shipped_spaces_dir()


@dataclass(frozen=True)
class ParamSpec:
    """One searched field. uniform/loguniform/quniform/qloguniform: [low, high] (q: step); randint:
    integers in [low, high); choice: one of ``values`` (scalars, or lists such as lr drop epochs: searched as their
    texts, ``search.values``); grid: every one of ``values`` (random searcher only: each point runs
    ``num_samples`` times)."""

    distribution: Distribution
    low: float | None = None
    high: float | None = None
    q: float | None = None
    values: tuple[Any, ...] | None = None

    def check(self) -> list[str]:
        d = self.distribution
        if d in ("choice", "grid"):
            same = duplicate_texts(self.values or ())
            return choice_problems(d, self.values, self.is_listed_choice()) + [
                f"values: {t!r} names two values (a string spelled like a list); quote it otherwise" for t in same]
        if self.low is None or self.high is None:
            return [f"{d} needs low and high"]
        return range_problems(d, self.low, self.high, self.q)

    def extremes(self) -> list[Any]:
        """Values at the edges of the range: each must give a valid experiment config."""
        if self.distribution in ("choice", "grid"):
            return list(self.values or ())
        if self.distribution == "randint":
            return [int(self.low), int(self.high) - 1]
        return [self.low, self.high]

    def is_listed_choice(self) -> bool:
        """Optuna's categoricals hold scalars only: a choice with list values is searched by their texts."""
        return self.distribution in ("choice", "grid") and is_listed(self.values)

    def searched_values(self) -> list[Any]:
        """What Tune and Optuna draw from for a choice or grid (``search.values``)."""
        return searched_values(self.values or ())


@dataclass(frozen=True)
class SchedulerSpec:
    """ASHA (early stopping), FIFO (every trial runs its budget) or Population Based Training: every
    ``perturbation_interval`` epochs the worst ``quantile_fraction`` of the population continue from a checkpoint of
    the best, with the mutable searched values (rates, momenta, drops, regularisers: ``pbt_mutations``) perturbed
    by x0.8 / x1.2 (or, with ``resample_probability``, drawn afresh). The result is a schedule, not one value."""

    type: Literal["asha", "fifo", "pbt"] = "asha"
    grace_period: int = 2  # ASHA: epochs every trial gets before ASHA may stop it
    reduction_factor: float = 3.0  # ASHA
    perturbation_interval: int = 4  # PBT: epochs between exploit / explore steps
    quantile_fraction: float = 0.25  # PBT: bottom fraction that clones the top fraction
    resample_probability: float = 0.25  # PBT: chance a mutated value is resampled instead of perturbed

    def check(self) -> list[str]:
        errs = [] if self.grace_period >= 1 else [f"grace_period: must be >= 1, got {self.grace_period}"]
        if not 1 < self.reduction_factor <= MAX_REDUCTION_FACTOR:  # NaN fails it too
            errs.append(f"reduction_factor: must be > 1 and at most {MAX_REDUCTION_FACTOR:g} (ASHA keeps the best "
                        f"1/reduction_factor of the trials at each rung), got {self.reduction_factor}")
        if self.perturbation_interval < 1:
            errs.append(f"perturbation_interval: must be >= 1, got {self.perturbation_interval}")
        if not 0 < self.quantile_fraction <= 0.5:
            errs.append(f"quantile_fraction: must be in (0, 0.5], got {self.quantile_fraction}")
        if not 0 <= self.resample_probability <= 1:
            errs.append(f"resample_probability: must be in [0, 1], got {self.resample_probability}")
        return errs + too_large_counts(vars(self))


@dataclass(frozen=True)
class SearcherSpec:
    type: Literal["optuna_tpe", "random"] = "optuna_tpe"
    n_startup_trials: int = 4  # TPE: random trials before the model-based proposals start
    # TPE: model the parameters jointly (Optuna's multivariate TPE) rather than one by one
    multivariate: bool = False
    # TPE with trials running at once: treat running trials as bad so the next proposal looks elsewhere
    constant_liar: bool = False

    def check(self) -> list[str]:
        errs = [] if self.n_startup_trials >= 1 else [f"n_startup_trials: must be >= 1, got {self.n_startup_trials}"]
        return errs + too_large_counts({"n_startup_trials": self.n_startup_trials})


@dataclass(frozen=True)
class EvaluationSpec:
    every_epochs: int = 1  # validation Parzen estimate every K epochs (and at the last epoch)
    # Model samples for the validation estimate: the Table 1 protocol's own count. The Parzen figure depends on it,
    # not only its noise: at 2K samples six trained models ranked with Spearman 0.43 against the protocol's
    # validation figure, at 10K with 1.0 (RESULTS.md, likelihood).
    valid_samples: int = TABLE1_SAMPLES
    final_samples: int = TABLE1_SAMPLES  # model samples for the Table 1 protocol on the best trials
    top_k: int = 1  # how many best trials get the full Table 1 protocol

    def check(self) -> list[str]:
        return [f"{k}: must be >= 1, got {v}" for k, v in vars(self).items() if v < 1] + too_large_counts(vars(self))


@dataclass(frozen=True)
class BudgetSpec:
    num_samples: int = 8  # trials
    max_epochs: int = 20  # epochs per trial (ASHA's max_t)
    max_concurrent: int = 2

    def check(self) -> list[str]:
        return [f"{k}: must be >= 1, got {v}" for k, v in vars(self).items() if v < 1] + too_large_counts(vars(self))


@dataclass(frozen=True)
class DatasetSpec:
    """Which data the trials train on (aae_tune.data.load_dataset); ``--data-dir`` says where it is."""

    name: Literal["mnist", "svhn", "array"] = "mnist"  # array: a user .npz (e.g. the Toronto Face Database)
    use_extra: bool = False  # svhn: add extra_32x32.mat (531K images) to the unlabeled training set

    def options(self) -> dict[str, Any]:
        return {"use_extra": self.use_extra} if self.name == "svhn" else {}


@dataclass(frozen=True)
class SearchSpace:
    name: str
    description: str = ""
    experiment: dict[str, Any] = field(default_factory=dict)  # fixed ExperimentConfig fields
    params: dict[str, ParamSpec] = field(default_factory=dict)  # dotted ExperimentConfig key -> distribution
    metric: str = "valid_parzen_ll"
    mode: Literal["max", "min"] = "max"
    scheduler: SchedulerSpec = field(default_factory=SchedulerSpec)
    searcher: SearcherSpec = field(default_factory=SearcherSpec)
    evaluation: EvaluationSpec = field(default_factory=EvaluationSpec)
    budget: BudgetSpec = field(default_factory=BudgetSpec)
    smoke: dict[str, Any] = field(default_factory=dict)  # extra experiment overrides for --smoke
    dataset: DatasetSpec = field(default_factory=DatasetSpec)

    def check(self) -> list[str]:
        errs = []
        if not NAME_PATTERN.match(self.name) or ".." in self.name:
            errs.append(f"name: {self.name!r} must be letters, digits, '_', '-', '.' (no '/' or '..'), at most 100")
        grids = [k for k, p in self.params.items() if p.distribution == "grid"]
        if grids and self.searcher.type != "random":
            errs.append(f"params.{grids[0]}: a grid needs searcher.type: random (Optuna samples, it does not grid)")
        if not self.params and self.searcher.type != "random":  # Optuna refuses an empty space once Ray runs
            errs.append(f"searcher.type: {self.searcher.type} has nothing to search (every value is fixed); set "
                        "searcher.type: random (--set searcher.type=random) to train the fixed configuration")
        if self.scheduler.type == "pbt":
            errs += self._check_pbt()
        return errs

    def _check_pbt(self) -> list[str]:
        errs = []
        if self.searcher.type != "random":
            errs.append("scheduler.type: pbt draws its own population and refuses a search algorithm; set "
                        "searcher.type: random")
        if not self.pbt_mutations():
            fixed = ", ".join(ARCHITECTURE_FIELDS)
            errs.append(f"scheduler.type: pbt needs a searched value it can change mid-run (a rate, momentum, drop "
                        f"or regulariser); the model's shape ({fixed}, optim.optimizer) and grids stay fixed")
        return errs

    def pbt_mutations(self) -> dict[str, ParamSpec]:
        """The searched values PBT may change on a copied checkpoint: not the architecture (the weights' shapes)
        nor the optimizer kind (its state's layout), nor a grid (those are the user's fixed comparisons)."""
        return {key: spec for key, spec in self.params.items()
                if key.split(".")[0] not in ARCHITECTURE_FIELDS and key != "optim.optimizer"
                and spec.distribution != "grid"}

    def experiment_config(self, sampled: dict[str, Any] | None = None, smoke: bool = False) -> ExperimentConfig:
        """The fixed part + (decoded) sampled values -> a validated ExperimentConfig."""
        data = _merge(_merge({}, self.experiment), smoke_overrides(self) if smoke else {})
        for key, value in (sampled or {}).items():
            set_path(data, key, self.decode(key, value))
        return ExperimentConfig.from_dict(data, source=f"search space {self.name!r}")

    def decode(self, key: str, value: Any) -> Any:
        """The value a trial trains with, from what the searcher drew (a listed choice's text)."""
        spec = self.params.get(key)
        return decode_choice(spec.values, value) if spec is not None and spec.is_listed_choice() else value

    def encode(self, key: str, value: Any) -> Any:
        """What the searcher draws for a trial's value (read back from MLflow or an Optuna study)."""
        spec = self.params.get(key)
        return encode_choice(spec.values, value) if spec is not None and spec.is_listed_choice() else value

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)


def smoke_overrides(space: SearchSpace) -> dict[str, Any]:
    return _merge(_merge({}, SMOKE_OVERRIDES), space.smoke)


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """Recursive dict merge (extra wins), copying nested dicts."""
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = _merge(dict(base[key]), value)
        else:
            base[key] = _merge({}, value) if isinstance(value, dict) else value
    return base


SEARCH_SPACE_KEYS = {f.name for f in fields(SearchSpace)}
EXPERIMENT_KEYS = {f.name for f in fields(ExperimentConfig)}


def available_spaces() -> list[str]:
    return sorted(p.stem for p in SPACES_DIR.glob("*.yaml"))


def resolve_space_path(name_or_path: str) -> Path:
    """A shipped space name (``likelihood_mnist``) or a path to a YAML file."""
    path = Path(name_or_path)
    try:
        if path.suffix in (".yaml", ".yml") or path.exists():
            if not path.is_file():
                raise ConfigError([f"no such file {path}"], "--space")
            return path
        shipped = SPACES_DIR / f"{name_or_path}.yaml"
        known = shipped.is_file()
    except OSError as exc:  # e.g. a name longer than the filesystem allows
        raise ConfigError([f"{name_or_path[:80]!r}: neither a shipped space nor a readable file ({exc.strerror})"],
                          "--space") from None
    if not known:
        names = available_spaces()
        raise ConfigError(
            [f"unknown space {name_or_path!r}{suggest(name_or_path, names)}; available: {', '.join(names)}"],
            "--space",
        )
    return shipped


def _check_experiment(raw: dict[str, Any], problems: list[str]) -> bool:
    """The fixed experiment part alone, even when other parts of the file are broken. True if valid."""
    experiment = raw.get("experiment") or {}
    if not isinstance(experiment, dict):
        return False  # reported as a type error of the file
    _, found = collect(ExperimentConfig, experiment)
    problems.extend(f"experiment.{p}" for p in found)
    return not found


def _check_metric(space: SearchSpace, problems: list[str]) -> None:
    """The metric must be one the space's model reports, or every trial would fail once Tune looks for it."""
    reported = reported_metrics(space.experiment_config().score_kind)
    if space.metric not in reported:
        model = space.experiment.get("model", "likelihood")
        hint = suggest(space.metric, sorted(reported))
        problems.append(f"metric: {space.metric!r} is not reported by the {model} model{hint}; it reports "
                        f"{', '.join(sorted(reported))}")


def _check_finite_experiment(space: SearchSpace, problems: list[str]) -> None:
    """ExperimentConfig takes some infinite values (a prior std of .inf) that only fail inside a running trial."""
    problems.extend(f"experiment.{p} is not a finite number"
                    for p in non_finite_paths(space.experiment_config().to_dict()))


def _check_smoke(space: SearchSpace, problems: list[str]) -> None:
    """What --smoke trains (the experiment with the smoke overrides merged in, at every edge of every range) must
    be a valid config too, so that a typo under ``smoke:`` is reported without --smoke as well."""
    try:
        smoke = space.experiment_config(smoke=True)
    except ConfigError as exc:
        problems.extend(f"smoke: {p} (in the config --smoke trains: experiment + smoke overrides)"
                        for p in exc.problems)
        return
    normal = set(non_finite_paths(space.experiment_config().to_dict()))
    problems.extend(f"smoke: {p} is not a finite number" for p in non_finite_paths(smoke.to_dict()) if p not in normal)
    for key, spec in space.params.items():
        if spec.check() or any(p.startswith(f"params.{key} ") for p in problems):
            continue  # reported already
        for i, value in enumerate(spec.extremes()):
            try:
                space.experiment_config({key: spec.searched_values()[i] if spec.is_listed_choice() else value},
                                        smoke=True)
            except ConfigError as exc:
                problems.extend(f"params.{key} = {value!r} with --smoke: {p}" for p in exc.problems)
                break


def _check_params_against_config(space: SearchSpace, problems: list[str]) -> None:
    """Every searched key must name a config field, and every edge of its range must give a valid config."""
    for key, spec in space.params.items():
        if spec.check():
            continue  # already reported by the ParamSpec check
        for value in spec.extremes():
            data = _merge({}, space.experiment)
            set_path(data, key, value)
            try:
                ExperimentConfig.from_dict(data)
            except ConfigError as exc:
                problems.extend(f"params.{key} = {value!r}: {p}" for p in exc.problems)
                break


def apply_override(raw: dict[str, Any], key: str, value: Any) -> str | None:
    """``--set`` semantics: a dotted key into the file. Two conveniences: ``params.<searched key>.<field>``
    addresses a parameter whose key has dots itself, and a bare experiment field (``code_dim=4``) pins that field
    in ``experiment`` and stops searching it. Returns a problem message for an unknown field, else None."""
    head = key.split(".", 1)[0]
    if head not in SEARCH_SPACE_KEYS | EXPERIMENT_KEYS:
        known = sorted(SEARCH_SPACE_KEYS | EXPERIMENT_KEYS)
        return f"--set {key}: unknown field {head!r}{suggest(head, known)}; valid: {', '.join(known)}"
    params = raw.get("params") if isinstance(raw.get("params"), dict) else {}
    if head == "params" and "." in key:
        rest = key.split(".", 1)[1]
        # a whole parameter: --set 'params.code_dim={distribution: choice, values: [4, 8]}'
        if (rest in params or isinstance(value, dict)) and isinstance(raw.get("params"), dict):
            raw["params"][rest] = value
            return None
        for name in sorted(params, key=lambda k: len(str(k)), reverse=True):
            if rest.startswith(f"{name}.") and isinstance(params[name], dict):
                params[name][rest[len(name) + 1 :]] = value
                return None
    if head not in SEARCH_SPACE_KEYS:
        params.pop(key, None)
        if raw.get("experiment") is None:
            raw["experiment"] = {}  # an empty section
        if not isinstance(raw["experiment"], dict):
            return f"--set {key}: the file's experiment section is not a mapping, so {head!r} cannot be set in it"
        set_path(raw["experiment"], key, value)
        return None
    set_path(raw, key, value)
    return None


def read_space_file(name_or_path: str, seen: tuple[str, ...] = ()) -> tuple[dict[str, Any], str]:
    """The raw mapping of a space file, with ``extends: <space>`` resolved: the named space is read first and
    this file's keys are merged over it (mappings key by key; a searched param set to null is dropped)."""
    path = resolve_space_path(name_or_path)
    source = str(path)
    raw = read_yaml_file(path, source)  # bounded: a huge or alias-bombed file is one ConfigError, not gigabytes
    if not isinstance(raw, dict):
        raise ConfigError(["top level must be a mapping with keys name, experiment, params, ..."], source)
    parent = raw.pop("extends", None)
    if parent is None:
        return raw, source
    if not isinstance(parent, str) or str(path.resolve()) in seen:
        raise ConfigError([f"extends: {parent!r} must name another space, without cycles"], source)
    base, _ = read_space_file(parent, (*seen, str(path.resolve())))
    merged = _merge(base, raw)
    if isinstance(merged.get("params"), dict):  # anything else is reported as a type error by load_space
        merged["params"] = {k: v for k, v in merged["params"].items() if v is not None}
    return merged, source


def load_space(name_or_path: str, overrides: list[tuple[str, Any]] | None = None) -> SearchSpace:
    """Read, override (``--set`` pairs: dotted keys into the file) and validate a search space."""
    raw, source = read_space_file(name_or_path)
    problems = [p for key, value in overrides or [] if (p := apply_override(raw, key, value))]
    space, found = collect(SearchSpace, raw)
    problems += found
    if _check_experiment(raw, problems) and space is not None:
        _check_params_against_config(space, problems)
        _check_metric(space, problems)
        _check_finite_experiment(space, problems)
        _check_smoke(space, problems)
    if problems:
        raise ConfigError(problems, source)
    return space
