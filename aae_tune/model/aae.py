"""The adversarial autoencoder as a set of training *phases* over one model.

Each mini-batch runs ``model.phases()`` in order; a phase names the optimizer group whose learning-rate schedule
it uses, the parameters it updates and its loss. The likelihood AAE (Sec. 2-3) has three:

1. reconstruction: encoder + decoder minimise the Euclidean cost ||x - dec(enc(x))||^2
2. discriminator: D learns to tell prior samples (label 1) from codes (label 0)
3. generator: the encoder learns to make D call its codes prior samples

Steps 2 and 3 (the paper's regularization phase) judge the same codes: one encoder forward per mini-batch serves
both (``regularization_codes``).

Variants of the paper (label-conditioned discriminator, supervised, semi-supervised, clustering, dimensionality
reduction; variants.py and categorical.py) subclass this model and override hooks (``discriminator_input``,
``prior_sample``, ``decoder_in_dim``) or ``phases()``; the loop in aae_tune/train.py is shared by all of them, and
registry.py maps each ``ExperimentConfig.model`` name to its class.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from aae_tune.config import ExperimentConfig
from aae_tune.model.nets import Encoder, SeededDropout, dropout, mlp
from aae_tune.model.priors import build_prior

Metrics = dict[str, torch.Tensor]  # detached scalars; summed over the epoch without a host sync per batch


@dataclass(frozen=True)
class Batch:
    x: torch.Tensor  # (B, data_dim) float32: pixels in [0, 1], or standardised per dimension (SVHN)
    y: torch.Tensor | None = None  # (B,) int64 labels; -1 where the label is hidden (semi-supervised set-ups)
    # Semi-supervised classification phase: a mini-batch drawn from the labeled subset (L, data_dim), (L,).
    labeled_x: torch.Tensor | None = None
    labeled_y: torch.Tensor | None = None
    # What one phase computed for the next ones of the same mini-batch (see ``regularization_codes``).
    shared: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


def discriminator_bce(
    discriminator: nn.Module, real: torch.Tensor, fake: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """D's loss (prior samples real (B, d) -> 1, codes fake (B, d) -> 0) and its accuracy. One forward of the
    stacked (2B, d) batch: one gradient per weight, where two forwards would leave two to sum (D has no
    batch-dependent layer). The loss is fp32 under bf16 autocast."""
    n = real.shape[0]
    logits = discriminator(torch.cat([real, fake])).float()  # (2B, 1)
    logit_real, logit_fake = logits[:n], logits[n:]
    loss = F.binary_cross_entropy_with_logits(logit_real, torch.ones_like(logit_real)) + \
        F.binary_cross_entropy_with_logits(logit_fake, torch.zeros_like(logit_fake))
    acc = 0.5 * ((logit_real > 0).float().mean() + (logit_fake < 0).float().mean())
    return loss, acc.detach()


def generator_bce(logit: torch.Tensor) -> torch.Tensor:
    """Non-saturating generator loss: maximise log D(code) rather than minimise log(1 - D(code))."""
    logit = logit.float()  # an fp32 cost under bf16 autocast
    return F.binary_cross_entropy_with_logits(logit, torch.ones_like(logit))


@dataclass(frozen=True)
class Phase:
    name: str
    group: str  # optimizer/schedule group in OptimConfig: "reconstruction" or "adversarial"
    parameters: Callable[[], list[nn.Parameter]]  # what this phase's optimizer steps
    loss: Callable[[Batch, torch.Generator], tuple[torch.Tensor, Metrics]]


class AdversarialAutoencoder(nn.Module):
    """The likelihood AAE: deterministic / Gaussian / universal encoder, decoder, code discriminator, prior."""

    def __init__(self, cfg: ExperimentConfig, data_dim: int = 784):
        super().__init__()
        self.cfg, self.data_dim = cfg, data_dim
        net = cfg.net
        self.encoder = self.build_encoder()
        out = nn.Sigmoid() if net.output == "sigmoid" else None
        whole = net.batch_norm == "autoencoder"  # App. A.2.2: batch norm in the decoder, output layer included
        self.decoder = mlp(self.decoder_in_dim(), tuple(reversed(net.hidden)), data_dim, init_std=net.init_std,
                           out_activation=out, batch_norm=whole, out_batch_norm=whole, dropout=cfg.hidden_dropout)
        self.discriminator = mlp(self.discriminator_in_dim(), net.disc_hidden, 1, init_std=net.init_std)
        self.prior = build_prior(cfg.prior, cfg.code_dim)

    def use_generator(self, generator: torch.Generator) -> None:
        """Draw hidden-layer dropout masks from ``generator`` (the trainer's): every random draw of training then
        comes from the one generator a checkpoint saves."""
        for module in self.modules():
            if isinstance(module, SeededDropout):
                module.generator = generator

    # ---- hooks for variants -------------------------------------------------------------------------
    def build_encoder(self) -> nn.Module:
        cfg = self.cfg
        return Encoder(cfg.encoder, self.data_dim, cfg.net.hidden, cfg.code_dim, noise_dim=cfg.noise_dim,
                       init_std=cfg.net.init_std, batch_norm=cfg.net.batch_norm != "none", dropout=cfg.hidden_dropout)

    def decoder_in_dim(self) -> int:
        return self.cfg.code_dim

    def discriminator_in_dim(self) -> int:
        return self.cfg.code_dim

    def discriminator_input(self, z: torch.Tensor, batch: Batch, is_prior: bool) -> torch.Tensor:
        """What D sees for codes z (B, code_dim); label-conditioned variants append a one-hot here."""
        return z

    def decode(self, code: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """(B, code_dim) -> (B, data_dim); variants whose decoder also takes the label y (B,) override this."""
        return self.decoder(code)

    def prior_sample(self, batch: Batch, generator: torch.Generator) -> torch.Tensor:
        """(B, code_dim) positive examples for D; label-conditioned variants draw each from its label's part."""
        return self.prior.sample(batch.x.shape[0], generator).z

    def phases(self) -> list[Phase]:
        enc, dec, disc = self.encoder, self.decoder, self.discriminator
        return [
            Phase("reconstruction", "reconstruction", lambda: [*enc.parameters(), *dec.parameters()],
                  self.reconstruction_loss),
            Phase("discriminator", "adversarial", lambda: list(disc.parameters()), self.discriminator_loss),
            Phase("generator", "adversarial", lambda: list(enc.parameters()), self.generator_loss),
        ]

    # ---- losses -------------------------------------------------------------------------------------
    def corrupt(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Training-time input noise and input dropout (App. A options); identity when both are off."""
        cfg = self.cfg
        if cfg.input_noise_std > 0:
            x = x + cfg.input_noise_std * torch.randn(x.shape, generator=generator, device=x.device)
        return dropout(x, cfg.input_dropout, generator) if cfg.input_dropout > 0 else x

    def reconstruction_loss(self, batch: Batch, generator: torch.Generator) -> tuple[torch.Tensor, Metrics]:
        z = self.encoder(self.corrupt(batch.x, generator), generator)  # (B, code_dim)
        loss = self.reconstruction_cost(self.decode(z, batch.y), batch.x)
        return loss, {"recon_loss": loss.detach()}

    def reconstruction_cost(self, x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The config's cost per example (see ``ExperimentConfig.recon_cost``) of x_hat (B, D) against the clean x,
        mean over the batch."""
        with torch.autocast(x.device.type, enabled=False):  # the cost in fp32 when the forward ran in bf16
            return self._reconstruction_cost(x_hat.float(), x)

    def _reconstruction_cost(self, x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        kind = self.cfg.recon_cost
        if kind == "bce":
            # F.binary_cross_entropy, whose backward stays finite where a sigmoid saturates to exactly 0 or 1 (a
            # hand-written log(x_hat).clamp_min(-100) gives 0 * inf = NaN gradients there, killing Adam runs in
            # epoch 1). F refuses NaN inputs with a RuntimeError, so NaNs are masked for F and added back as NaN:
            # a diverging run must reach the trainer's non-finite check as a non-finite loss.
            finite = x_hat.nan_to_num(nan=0.5).clamp(0, 1)
            cost = F.binary_cross_entropy(finite, x, reduction="none").sum(1).mean()
            return cost + 0 * x_hat.sum()  # NaN / inf in x_hat -> NaN cost
        cost = (x_hat - x).pow(2).sum(1).mean()
        return 0.5 * cost if kind == "half_squared" else cost

    def regularization_codes(self, batch: Batch, generator: torch.Generator, *, last_use: bool) -> Any:
        """The encoder's output for the corrupted batch, computed once per mini-batch for the regularization phase,
        with its graph: the discriminator step reads it detached, then the generator step (``last_use``: it is
        dropped after) backpropagates through it. Only D changes between those two steps, so a second encoder
        forward would repeat the first exactly (4.5-7.3 % of a step's matrix work, by space). Phases that step the
        encoder must not run between them (the order of ``phases()``)."""
        codes = batch.shared.pop("codes", None) if last_use else batch.shared.get("codes")
        if codes is None:
            codes = self.regularization_encode(self.corrupt(batch.x, generator), generator)
            if not last_use:
                batch.shared["codes"] = codes
        return codes

    def regularization_encode(self, x: torch.Tensor, generator: torch.Generator) -> Any:
        """(B, data_dim) corrupted inputs -> what the adversarial networks judge: codes z (B, code_dim) here."""
        return self.encoder(x, generator)

    def discriminator_loss(self, batch: Batch, generator: torch.Generator) -> tuple[torch.Tensor, Metrics]:
        fake = self.regularization_codes(batch, generator, last_use=False).detach()  # (B, code_dim), q(z)
        real = self.prior_sample(batch, generator)  # (B, code_dim), p(z)
        loss, acc = discriminator_bce(self.discriminator, self.discriminator_input(real, batch, is_prior=True),
                                      self.discriminator_input(fake, batch, is_prior=False))
        return loss, {"disc_loss": loss.detach(), "disc_accuracy": acc}

    def generator_loss(self, batch: Batch, generator: torch.Generator) -> tuple[torch.Tensor, Metrics]:
        z = self.regularization_codes(batch, generator, last_use=True)
        loss = generator_bce(self.discriminator(self.discriminator_input(z, batch, is_prior=False)))
        return loss, {"gen_loss": loss.detach()}

    # ---- inference ----------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, data_dim) -> (B, data_dim) reconstructions: what the exported (MLflow) model computes."""
        return self.decoder(self.encoder.mean_code(x))

    def export_example(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The input ``forward`` takes for images x (B, data_dim) with labels y (B,): x itself here."""
        return x

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """(n, data_dim) images decoded from prior samples: the generative model p(x) = int p(x|z) p(z) dz."""
        z = self.prior.sample(n, generator).z.to(next(self.parameters()).device)
        return self.decode(z)

    @torch.no_grad()
    def encode(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """(B, data_dim) -> (B, code_dim) representative codes (no input corruption)."""
        return self.encoder.mean_code(x, generator)

    @torch.no_grad()
    def reconstruct(
        self, x: torch.Tensor, generator: torch.Generator | None = None, y: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(B, data_dim) -> (B, data_dim); ``y`` (B,) is used by the variants whose decoder takes the label."""
        return self.decode(self.encode(x, generator), y)

