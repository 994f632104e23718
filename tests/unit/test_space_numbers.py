"""A space file's numbers are checked as strictly as Ray Tune and Optuna check them once the search has started:
what the pre-flight accepts, they accept; what they would refuse (or sample nonsense from), it refuses first."""

import datetime
import math
import warnings

import optuna
import pytest
from ray.tune.search.optuna import OptunaSearch

from aae_tune.errors import ConfigError
from aae_tune.search.driver import tune_domain
from aae_tune.search.space import BudgetSpec, EvaluationSpec, ParamSpec, SchedulerSpec, SearcherSpec, load_space

INF, NAN = math.inf, math.nan

ACCEPTED = [
    ParamSpec("uniform", -1e300, 1e300), ParamSpec("loguniform", 1e-300, 1e300), ParamSpec("quniform", 0, 1, 0.25),
    ParamSpec("quniform", 0.3, 0.9, 0.1), ParamSpec("qloguniform", 1, 100, 1), ParamSpec("randint", -(2**62), 2**62),
    ParamSpec("choice", values=(None, True, 3, 0.5, "adam")), ParamSpec("choice", values=([10, 20], {"kind": "a"})),
]
REFUSED = {
    "infinite high": (ParamSpec("uniform", 0, INF), "high: inf is not a finite number"),
    "NaN low": (ParamSpec("loguniform", NAN, 1), "low: nan is not a finite number"),
    "NaN step": (ParamSpec("quniform", 0, 1, NAN), "q: nan is not a finite number"),
    "range overflows": (ParamSpec("uniform", -1e308, 1e308), "high - low overflows to infinity"),
    "bounds off the step": (ParamSpec("quniform", 0.1, 1, 0.25), "multiples of q = 0.25"),
    "step wider than range": (ParamSpec("quniform", 0, 1, 5), "the step 5 is wider than the range"),
    "randint beyond int64": (ParamSpec("randint", 0, 2.0**70), "within numpy's int64"),
    "infinite choice": (ParamSpec("choice", values=(1, INF)), "values[1]: inf is not a finite number"),
    "NaN inside a listed choice": (ParamSpec("grid", values=([1, NAN],)), "values[0][1]: nan is not a finite"),
    "date choice": (ParamSpec("choice", values=(datetime.date(2026, 1, 1), 2)), "(date) cannot be searched"),
}


def optuna_draws(spec: ParamSpec) -> object:
    """What the TPE searcher does with the parameter: Ray's conversion to an Optuna distribution, then a draw."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Optuna's notes on adjusted ranges are not failures
        distributions = OptunaSearch.convert_search_space({"x": tune_domain(spec)})
        return optuna.create_study().ask(distributions).params["x"]


@pytest.mark.parametrize("spec", ACCEPTED, ids=lambda s: f"{s.distribution}-{s.low}-{s.high}-{s.q}-{s.values}")
def test_what_the_check_accepts_ray_and_optuna_sample(spec):
    assert spec.check() == []
    domain = tune_domain(spec)
    value = domain.sample()
    if spec.distribution not in ("choice", "grid"):
        assert spec.low <= value <= spec.high
        assert spec.low <= optuna_draws(spec) <= spec.high
    else:
        assert optuna_draws(spec) in spec.searched_values()


@pytest.mark.parametrize("case", REFUSED)
def test_what_ray_or_optuna_would_refuse_is_refused_first(case):
    spec, expected = REFUSED[case]
    problems = spec.check()
    assert any(expected in p for p in problems), problems


def test_ray_refuses_what_the_step_check_refuses():
    with pytest.raises(ValueError, match="not divisible by quantization factor"):
        tune_domain(ParamSpec("quniform", 0.1, 1, 0.25))


@pytest.mark.parametrize("spec, expected", [
    (SchedulerSpec(reduction_factor=INF), "reduction_factor: must be > 1 and at most 100"),
    (SchedulerSpec(reduction_factor=NAN), "reduction_factor: must be > 1"),
    (SchedulerSpec(grace_period=2**70), "grace_period: 1180591620717411303424 is beyond"),
    (SearcherSpec(n_startup_trials=2**64), "n_startup_trials: 18446744073709551616 is beyond"),
    (BudgetSpec(num_samples=2**63), "num_samples: 9223372036854775808 is beyond"),
    (EvaluationSpec(valid_samples=2**63), "valid_samples: 9223372036854775808 is beyond"),
])
def test_section_numbers_are_bounded(spec, expected):
    assert any(expected in p for p in spec.check()), spec.check()


def load_problems(tmp_path, text: str) -> str:
    path = tmp_path / "space.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_space(str(path))
    return str(info.value)


def test_infinite_experiment_values_are_refused(tmp_path):
    msg = load_problems(tmp_path, "name: x\nexperiment: {prior: {std: .inf}}\nparams:\n"
                                  "  code_dim: {distribution: choice, values: [2, 4]}\n")
    assert "experiment.prior.std: inf is not a finite number" in msg


@pytest.mark.parametrize(("smoke", "problem"), [
    ("{net: {hiden: [10]}}", "smoke: net.hiden: unknown key (did you mean 'hidden'?)"),
    ("{optim: {adversarial: {momentum: 1.5}}}", "smoke: optim.adversarial.momentum: must be in [0, 1), got 1.5"),
])
def test_a_bad_smoke_section_is_reported_without_smoke(tmp_path, smoke, problem):
    msg = load_problems(tmp_path, f"name: x\nsmoke: {smoke}\nparams:\n"
                                  "  code_dim: {distribution: choice, values: [2, 4]}\n")
    assert problem in msg


def test_a_range_edge_invalid_only_with_smoke_is_reported(tmp_path):
    # bce is fine with the default sigmoid decoder, not with the linear one the smoke overrides ask for
    msg = load_problems(tmp_path, "name: x\nsmoke: {net: {output: linear}}\nparams:\n"
                                  "  recon_cost: {distribution: choice, values: [squared, bce]}\n")
    assert "params.recon_cost = 'bce' with --smoke: recon_cost: bce needs a sigmoid decoder output" in msg
