"""First two moments and shapes of every prior, against values derived independently of the samplers; the prior
registry (PRIOR_SPECS) read alike by the config check and the model."""

import inspect
import math
from dataclasses import fields
from typing import get_args

import numpy as np
import pytest
import torch

from aae_tune.config import PRIOR_PARAMS, ExperimentConfig, PriorConfig
from aae_tune.errors import ConfigError
from aae_tune.experiments import PRIOR_SPECS, PriorKind
from aae_tune.model.priors import (
    SAMPLERS,
    CategoricalPrior,
    GaussianPrior,
    MixturePrior,
    SwissRollPrior,
    build_prior,
)

N = 200_000


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_gaussian_moments_and_reproducibility():
    s = GaussianPrior(dim=8, std=5.0).sample(N, gen())
    assert s.z.shape == (N, 8) and s.z.dtype == torch.float32 and s.component is None
    z = s.z.double()
    assert z.mean(0).abs().max() < 4 * 5.0 / math.sqrt(N)
    np.testing.assert_allclose(z.std(0).numpy(), 5.0, rtol=0.01)
    cov = torch.cov(z.T).numpy()
    np.testing.assert_allclose(cov - np.diag(np.diag(cov)), 0.0, atol=0.25)
    assert torch.equal(GaussianPrior(8, 5.0).sample(5, gen(1)).z, GaussianPrior(8, 5.0).sample(5, gen(1)).z)


def test_mixture_per_component_moments():
    prior = MixturePrior(num_components=10, radius=2.0, radial_std=0.5, tangential_std=0.05)
    s = prior.sample(N, gen())
    assert s.z.shape == (N, 2) and s.component.shape == (N,)
    counts = torch.bincount(s.component, minlength=10).numpy()
    np.testing.assert_allclose(counts / N, 0.1, atol=0.005)
    for k in (0, 3, 7):
        zk = s.z[s.component == k].double().numpy()
        angle = 2 * math.pi * k / 10
        radial = np.array([math.cos(angle), math.sin(angle)])
        tangential = np.array([-math.sin(angle), math.cos(angle)])
        np.testing.assert_allclose(zk.mean(0), 2.0 * radial, atol=0.02)
        # project on the component's own axes: std 0.5 along the radius, 0.05 across it, uncorrelated
        proj = (zk - zk.mean(0)) @ np.stack([radial, tangential], 1)
        np.testing.assert_allclose(proj.std(0), [0.5, 0.05], rtol=0.03)
        assert abs(np.corrcoef(proj.T)[0, 1]) < 0.03
        np.testing.assert_allclose(np.cov(zk.T), prior.covariances()[k].double().numpy(), atol=0.01)


def test_mixture_conditioned_on_given_components():
    labels = torch.full((1000,), 4)
    s = MixturePrior().sample(1000, gen(), component=labels)
    assert torch.equal(s.component, labels)


def test_swiss_roll_moments_match_quadrature():
    K, scale, turns, noise = 10, 3.0, 2.0, 0.05
    s = SwissRollPrior(K, scale, turns, noise).sample(N, gen())
    assert s.z.shape == (N, 2) and s.position.shape == (N,)
    for k in (0, 5, 9):
        mask = s.component == k
        u, z = s.position[mask].double().numpy(), s.z[mask].double().numpy()
        assert u.min() >= k / K and u.max() < (k + 1) / K
        # E over u ~ U[k/K, (k+1)/K) of the roll point, by midpoint quadrature (the noise has mean 0)
        grid = (k + (np.arange(20_000) + 0.5) / 20_000) / K
        r, t = scale * np.sqrt(grid), 2 * math.pi * turns * np.sqrt(grid)
        expected_mean = np.array([(r * np.cos(t)).mean(), (r * np.sin(t)).mean()])
        expected_sq = (r**2).mean() + 2 * noise**2  # E||z||^2 = E r^2 + E||noise||^2
        se = z.std(0) / math.sqrt(len(z))
        assert np.all(np.abs(z.mean(0) - expected_mean) < 5 * se + 1e-3)
        np.testing.assert_allclose((z**2).sum(1).mean(), expected_sq, rtol=0.01)


def test_categorical_is_one_hot_with_multinomial_covariance():
    s = CategoricalPrior(10).sample(N, gen())
    assert s.z.shape == (N, 10)
    assert torch.all(s.z.sum(1) == 1) and set(s.z.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(s.z.argmax(1), s.component)
    z = s.z.double().numpy()
    np.testing.assert_allclose(z.mean(0), 0.1, atol=0.004)
    p = np.full(10, 0.1)
    np.testing.assert_allclose(np.cov(z.T), np.diag(p) - np.outer(p, p), atol=0.004)


@pytest.mark.parametrize("kind,dim", [("gaussian", 8), ("mixture", 2), ("swiss_roll", 2), ("categorical", 10)])
def test_build_prior_from_config(kind, dim):
    prior = build_prior(PriorConfig(kind=kind), code_dim=dim)
    assert prior.dim == dim
    assert prior.sample(7, gen()).z.shape == (7, dim)


# The prior registry: every kind is declared once (aae_tune.experiments.PRIOR_SPECS, torch-free) and read by both
# the config check and build_prior.


def fitting_code_dim(kind: str) -> int:
    dim = PRIOR_SPECS[kind].dim
    return 8 if dim == "any" else PriorConfig().num_components if dim == "components" else dim


def test_config_and_model_know_the_same_prior_kinds():
    assert set(PRIOR_SPECS) == set(get_args(PriorKind)) == set(SAMPLERS)
    assert set(PRIOR_PARAMS) == {f.name for f in fields(PriorConfig)} - {"kind"}


@pytest.mark.parametrize("kind", sorted(PRIOR_SPECS))
def test_every_declared_kind_constructs_and_samples(kind):
    dim = fitting_code_dim(kind)
    prior = build_prior(PriorConfig(kind=kind), code_dim=dim)
    s = prior.sample(5, gen())
    assert prior.dim == dim and s.z.shape == (5, dim)
    spec = PRIOR_SPECS[kind]
    assert (s.component is not None) == spec.has_components == (prior.num_components > 0)
    if spec.categorical:
        assert torch.all(s.z.sum(1) == 1)


@pytest.mark.parametrize("kind", sorted(PRIOR_SPECS))
def test_the_sampler_takes_the_declared_parameters_in_their_order(kind):
    """build_prior passes the declared PriorConfig fields positionally: the sampler's own defaults, argument by
    argument, are the config's defaults of those fields (distinct values, so a swapped order shows)."""
    spec = PRIOR_SPECS[kind]
    args = list(inspect.signature(SAMPLERS[kind]).parameters.values())[1 if spec.dim == "any" else 0:]
    assert [a.default for a in args] == [getattr(PriorConfig(), name) for name in spec.params]


@pytest.mark.parametrize("kind", sorted(PRIOR_SPECS))
@pytest.mark.parametrize("code_dim", [1, 2, 3, 8, 10])
def test_the_config_check_and_the_model_agree_on_the_code_dimension(kind, code_dim):
    cfg = ExperimentConfig(code_dim=code_dim, prior=PriorConfig(kind=kind))  # likelihood: every prior kind
    refused = [e for e in cfg.check() if e.startswith("code_dim")]
    try:
        build_prior(cfg.prior, code_dim)
        built = []
    except ConfigError as exc:
        built = exc.problems
    assert refused == built and len(refused) <= 1


@pytest.mark.parametrize("kind", [k for k, spec in PRIOR_SPECS.items() if spec.dim == 2])
def test_a_2d_prior_with_another_code_dim_is_one_clear_error(kind):
    message = f"code_dim: the {kind} prior is 2-D, so code_dim must be 2, got 8"
    with pytest.raises(ConfigError) as err:
        ExperimentConfig.from_dict({"prior": {"kind": kind}, "code_dim": 8})
    assert err.value.problems == [message]
    with pytest.raises(ConfigError) as err:
        build_prior(PriorConfig(kind=kind), code_dim=8)
    assert err.value.problems == [message]


@pytest.mark.parametrize("name, bound", sorted(PRIOR_PARAMS.items()))
def test_each_declared_parameter_is_checked_against_its_range(name, bound):
    edge = {"> 0": 0, ">= 0": -0.01, ">= 1": 0}[bound]
    assert PriorConfig(**{name: edge}).check() == [f"{name}: must be {bound}, got {edge}"]
    assert PriorConfig(**{name: float("nan")}).check() == [f"{name}: must be {bound}, got nan"]
