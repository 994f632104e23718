"""First two moments and shapes of every prior, against values derived independently of the samplers."""

import math

import numpy as np
import pytest
import torch

from aae_tune.config import PriorConfig
from aae_tune.model.priors import CategoricalPrior, GaussianPrior, MixturePrior, SwissRollPrior, build_prior

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
