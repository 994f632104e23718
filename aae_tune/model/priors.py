"""Priors p(z) of the paper as samplers: the AAE needs only samples of p(z), never its density.

Each ``sample`` returns a ``PriorSample``: the codes (n, dim) and, for the structured priors, the component each
sample came from (for the label-conditioned discriminator of Sec. 2.3) and, for the swiss roll, the position along
the roll in [0, 1). All randomness comes from the ``torch.Generator`` passed in, so runs are reproducible.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from aae_tune.config import PriorConfig
from aae_tune.errors import ConfigError
from aae_tune.experiments import PRIOR_SPECS


@dataclass(frozen=True)
class PriorSample:
    z: torch.Tensor  # (n, dim) float32
    component: torch.Tensor | None = None  # (n,) int64: mixture component / roll segment / category
    position: torch.Tensor | None = None  # (n,) float32 in [0, 1): swiss roll only


class Prior:
    """Base class: ``dim`` code dimensions, ``num_components`` labels it can be conditioned on (0 = none)."""

    dim: int
    num_components: int = 0

    def sample(
        self, n: int, generator: torch.Generator | None = None, component: torch.Tensor | None = None
    ) -> PriorSample:
        raise NotImplementedError

    def assign(self, z: torch.Tensor) -> torch.Tensor:
        """(n, dim) codes -> (n,) the component each code fits best (structured priors only)."""
        raise NotImplementedError(f"{type(self).__name__} has no components to assign codes to")

    def _components(self, n: int, generator: torch.Generator | None, component: torch.Tensor | None) -> torch.Tensor:
        """Uniform component indices (n,), or the given ones (for label-conditioned sampling)."""
        device = generator.device if generator is not None else None
        if component is not None:
            return component.to(device=device, dtype=torch.long)
        return torch.randint(self.num_components, (n,), generator=generator, device=device)


class GaussianPrior(Prior):
    """N(0, std^2 I) in ``dim`` dimensions (Sec. 3, the likelihood experiment)."""

    def __init__(self, dim: int, std: float = 1.0):
        self.dim, self.std = dim, std

    def sample(self, n, generator=None, component=None) -> PriorSample:
        device = generator.device if generator is not None else None
        return PriorSample(self.std * torch.randn(n, self.dim, generator=generator, device=device))


class MixturePrior(Prior):
    """K elongated 2-D Gaussians arranged as petals around the origin (Fig. 3, 4a).

    Component k has mean radius * (cos a_k, sin a_k), a_k = 2*pi*k/K, and covariance R_k diag(s_r^2, s_t^2) R_k^T:
    radial_std along the radius, tangential_std across it.
    """

    dim = 2

    def __init__(
        self, num_components: int = 10, radius: float = 2.0, radial_std: float = 0.5, tangential_std: float = 0.05
    ):
        self.num_components = num_components
        self.radius, self.radial_std, self.tangential_std = radius, radial_std, tangential_std

    def angles(self) -> torch.Tensor:
        return 2 * math.pi * torch.arange(self.num_components, dtype=torch.float32) / self.num_components

    def means(self) -> torch.Tensor:
        """(K, 2) component means."""
        a = self.angles()
        return self.radius * torch.stack([a.cos(), a.sin()], dim=1)

    def covariances(self) -> torch.Tensor:
        """(K, 2, 2) component covariances."""
        a = self.angles()
        rot = torch.stack([torch.stack([a.cos(), -a.sin()], -1), torch.stack([a.sin(), a.cos()], -1)], -2)
        diag = torch.diag(torch.tensor([self.radial_std**2, self.tangential_std**2]))
        return rot @ diag @ rot.transpose(1, 2)

    def sample(self, n, generator=None, component=None) -> PriorSample:
        k = self._components(n, generator, component)
        eps = torch.randn(n, 2, generator=generator, device=k.device)
        local = eps * torch.tensor([self.radial_std, self.tangential_std], device=k.device)  # (n, 2) unrotated
        a = self.angles().to(k.device)[k]
        cos, sin = a.cos(), a.sin()
        rotated = torch.stack([cos * local[:, 0] - sin * local[:, 1], sin * local[:, 0] + cos * local[:, 1]], 1)
        z = rotated + self.radius * torch.stack([cos, sin], 1)
        return PriorSample(z, component=k)

    def assign(self, z: torch.Tensor) -> torch.Tensor:
        """The component of highest density at each code (equal weights, so the largest log N(z; m_k, C_k))."""
        diff = z.float().cpu()[:, None, :] - self.means()[None]  # (n, K, 2)
        precision = torch.linalg.inv(self.covariances())  # (K, 2, 2)
        mahalanobis = torch.einsum("nki,kij,nkj->nk", diff, precision, diff)
        # every component has the same determinant (rotations of one covariance), so it drops out
        return mahalanobis.argmin(1)


class SwissRollPrior(Prior):
    """A 2-D swiss roll split into K equal segments, one per label (Fig. 4c-d).

    Position u ~ U[k/K, (k+1)/K) along the roll; the point is r(u) (cos t(u), sin t(u)) with r = scale*sqrt(u),
    t = 2*pi*turns*sqrt(u) (sqrt spreads points evenly along the arc), plus N(0, noise^2 I): a Gaussian centred
    on the roll, conditional on the position.
    """

    dim = 2

    def __init__(self, num_components: int = 10, scale: float = 3.0, turns: float = 2.0, noise: float = 0.05):
        self.num_components, self.scale, self.turns, self.noise = num_components, scale, turns, noise

    def point(self, u: torch.Tensor) -> torch.Tensor:
        """(n, 2) noise-free point on the roll at positions u (n,)."""
        s = u.sqrt()
        r, t = self.scale * s, 2 * math.pi * self.turns * s
        return torch.stack([r * t.cos(), r * t.sin()], 1)

    def sample(self, n, generator=None, component=None) -> PriorSample:
        k = self._components(n, generator, component)
        u = (k.float() + torch.rand(n, generator=generator, device=k.device)) / self.num_components
        z = self.point(u) + self.noise * torch.randn(n, 2, generator=generator, device=k.device)
        return PriorSample(z, component=k, position=u)

    def assign(self, z: torch.Tensor, resolution: int = 4000) -> torch.Tensor:
        """The segment of the roll point nearest to each code (the roll sampled at ``resolution`` positions)."""
        u = (torch.arange(resolution, dtype=torch.float32) + 0.5) / resolution
        nearest = torch.cdist(z.float().cpu(), self.point(u)).argmin(1)  # (n,) index into u
        return (u[nearest] * self.num_components).long().clamp_max(self.num_components - 1)


class CategoricalPrior(Prior):
    """One-hot vectors of a uniform categorical over K classes (Sec. 5-6, the q(y|x) adversary)."""

    def __init__(self, num_components: int = 10):
        self.num_components = self.dim = num_components

    def sample(self, n, generator=None, component=None) -> PriorSample:
        k = self._components(n, generator, component)
        return PriorSample(torch.nn.functional.one_hot(k, self.num_components).float(), component=k)


# One sampler per kind declared in aae_tune.experiments.PRIOR_SPECS: it takes the code dimension first when its
# declaration says "any", then the declared PriorConfig fields in their declared order.
SAMPLERS: dict[str, Callable[..., Prior]] = {
    "gaussian": GaussianPrior,
    "mixture": MixturePrior,
    "swiss_roll": SwissRollPrior,
    "categorical": CategoricalPrior,
}
assert set(SAMPLERS) == set(PRIOR_SPECS), "every declared prior kind needs a sampler, and every sampler a declaration"


def build_prior(cfg: PriorConfig, code_dim: int) -> Prior:
    """The prior an experiment config asks for, as its kind's declaration (``PRIOR_SPECS``) says to build it."""
    if cfg.kind not in PRIOR_SPECS:  # the config's Literal refuses it first; a PriorConfig built directly may not
        raise ValueError(f"unknown prior kind {cfg.kind!r}; known: {', '.join(PRIOR_SPECS)}")
    spec = PRIOR_SPECS[cfg.kind]
    # config validation refuses a mismatch first; a config built without it must not train against a prior of
    # another dimension than its codes
    if problem := cfg.code_dim_problem(code_dim):
        raise ConfigError([problem], "prior")
    leading = (code_dim,) if spec.dim == "any" else ()
    return SAMPLERS[cfg.kind](*leading, *(getattr(cfg, name) for name in spec.params))
