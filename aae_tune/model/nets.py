"""MLP building blocks and the three encoder kinds of Sec. 2.1.

- deterministic: z = f(x)
- gaussian: z = mu(x) + sigma(x) * eps, eps ~ N(0, I) (reparameterised, so gradients reach mu and sigma)
- universal approximator: z = f(x, eta), eta ~ N(0, I) fed as an extra input; q(z|x) is then any distribution
  the network can push N(0, I) through.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from aae_tune.experiments import EncoderKind


def init_normal_(module: nn.Module, std: float) -> None:
    """App. A: weights ~ N(0, std), biases 0, for every Linear layer in ``module``."""
    for layer in module.modules():
        if isinstance(layer, nn.Linear):
            nn.init.normal_(layer.weight, 0.0, std)
            nn.init.zeros_(layer.bias)


def dropout(x: torch.Tensor, p: float, generator: torch.Generator | None) -> torch.Tensor:
    """Zero each entry of x with probability p (mask drawn from ``generator``), scale the rest by 1 / (1 - p)."""
    keep = torch.rand(x.shape, generator=generator, device=x.device) >= p
    return x * keep / (1 - p)


class SeededDropout(nn.Module):
    """Dropout whose masks come from ``self.generator`` (the trainer's, set by ``AdversarialAutoencoder.use_generator``)
    rather than torch's global RNG, so a run restored from a checkpoint draws the same masks as one that never
    stopped. Without a generator it draws from the global RNG, like ``nn.Dropout``."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p
        self.generator: torch.Generator | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.generator) if self.training and self.p > 0 else x

    def extra_repr(self) -> str:
        return f"p={self.p}"


def hidden_stack(in_dim: int, hidden: Sequence[int], *, batch_norm: bool = False,
                 dropout: float = 0.0) -> list[nn.Module]:
    """[Linear (-> BatchNorm) -> ReLU (-> Dropout)] per hidden width: the body shared by every MLP here."""
    layers: list[nn.Module] = []
    width = in_dim
    for h in hidden:
        layers.append(nn.Linear(width, h))
        if batch_norm:
            layers.append(nn.BatchNorm1d(h))
        layers.append(nn.ReLU())
        if dropout > 0:
            layers.append(SeededDropout(dropout))
        width = h
    return layers


def mlp(
    in_dim: int,
    hidden: Sequence[int],
    out_dim: int,
    *,
    init_std: float = 0.01,
    out_activation: nn.Module | None = None,
    batch_norm: bool = False,
    out_batch_norm: bool = False,
    dropout: float = 0.0,
) -> nn.Sequential:
    """in_dim -> [Linear (-> BatchNorm) -> ReLU (-> Dropout)] * len(hidden) -> Linear (-> BatchNorm)
    (-> out_activation). ``out_batch_norm`` normalises the output layer too (App. A.2.2, A.3)."""
    layers = hidden_stack(in_dim, hidden, batch_norm=batch_norm, dropout=dropout)
    layers.append(nn.Linear(hidden[-1] if hidden else in_dim, out_dim))
    if out_batch_norm:
        layers.append(nn.BatchNorm1d(out_dim))
    if out_activation is not None:
        layers.append(out_activation)
    net = nn.Sequential(*layers)
    init_normal_(net, init_std)
    return net


class CategoricalEncoder(nn.Module):
    """Sec. 5-7: one trunk, two heads. ``forward(x)`` -> (logits of q(y|x) (B, K), style z of q(z|x) (B, d))."""

    def __init__(
        self, in_dim: int, hidden: Sequence[int], num_classes: int, code_dim: int, *, init_std: float = 0.01,
        batch_norm: bool = False, dropout: float = 0.0,
    ):
        super().__init__()
        self.trunk = nn.Sequential(*hidden_stack(in_dim, hidden, batch_norm=batch_norm, dropout=dropout))
        width = hidden[-1] if hidden else in_dim
        self.y_head = nn.Linear(width, num_classes)  # softmax applied by the model
        self.z_head = nn.Linear(width, code_dim)  # linear style code
        # App. A.2.2 / A.3: batch norm on the q(y|x) and q(z|x) output layers too, with the trunk's
        self.y_norm = nn.BatchNorm1d(num_classes) if batch_norm else nn.Identity()
        self.z_norm = nn.BatchNorm1d(code_dim) if batch_norm else nn.Identity()
        init_normal_(self, init_std)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.trunk(x)  # (B, hidden[-1])
        return self.y_norm(self.y_head(h)), self.z_norm(self.z_head(h))

    def classifier_parameters(self) -> list[nn.Parameter]:
        """What the semi-supervised classification phase updates: the trunk and the q(y|x) head."""
        return [*self.trunk.parameters(), *self.y_head.parameters(), *self.y_norm.parameters()]


class Encoder(nn.Module):
    """q(z|x) of any of the three kinds; ``forward(x, generator)`` draws one code per row of x (B, in_dim)."""

    def __init__(
        self,
        kind: EncoderKind,
        in_dim: int,
        hidden: Sequence[int],
        code_dim: int,
        *,
        noise_dim: int = 100,
        init_std: float = 0.01,
        batch_norm: bool = False,
        dropout: float = 0.0,
    ):
        super().__init__()
        self.kind, self.code_dim, self.noise_dim = kind, code_dim, noise_dim
        extra_in = noise_dim if kind == "universal" else 0
        out_dim = 2 * code_dim if kind == "gaussian" else code_dim  # gaussian: (mu, log sigma^2)
        # batch_norm covers the code layer too (App. A.3: "all encoder layers")
        self.net = mlp(in_dim + extra_in, hidden, out_dim, init_std=init_std, batch_norm=batch_norm,
                       out_batch_norm=batch_norm, dropout=dropout)

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """(B, in_dim) -> (B, code_dim) sampled codes."""
        if self.kind == "universal":
            eta = torch.randn(x.shape[0], self.noise_dim, generator=generator, device=x.device, dtype=x.dtype)
            return self.net(torch.cat([x, eta], dim=1))
        out = self.net(x)
        if self.kind == "deterministic":
            return out
        mu, logvar = out.chunk(2, dim=1)
        logvar = logvar.clamp(-30.0, 20.0)  # exp(0.5 * logvar) must not overflow to inf early in training
        eps = torch.randn(mu.shape, generator=generator, device=x.device, dtype=x.dtype)
        return mu + (0.5 * logvar).exp() * eps

    def mean_code(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """A deterministic representative code for plots, metrics and the exported model: mu for gaussian,
        f(x) for deterministic, f(x, eta=0) (the noise mode) for universal."""
        if self.kind == "gaussian":
            return self.net(x).chunk(2, dim=1)[0]
        if self.kind == "universal":
            eta = torch.zeros_like(x[:, :1]).expand(-1, self.noise_dim)  # shape-polymorphic: exportable
            return self.net(torch.cat([x, eta], dim=1))
        return self.net(x)
