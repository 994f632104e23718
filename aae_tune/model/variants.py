"""Variants of the AAE that keep one code vector: the label-conditioned discriminator (Sec. 2.3) and the
supervised style/content model (Sec. 4). Both reuse the base model's three phases and only override hooks."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from aae_tune.model.aae import AdversarialAutoencoder, Batch


class ConditionedAAE(AdversarialAutoencoder):
    """Sec. 2.3, Fig. 3-4: D sees the code and a one-hot of its label over K + 1 classes, the extra class meaning
    "unlabeled". A labeled example's positive sample comes from its label's component of the mixture (or segment
    of the swiss roll); an unlabeled example's from the whole prior. Codes of each digit are so pushed into their
    own component, and unlabeled codes anywhere on the prior."""

    def discriminator_in_dim(self) -> int:
        return self.cfg.code_dim + self.cfg.num_classes + 1

    def label_one_hot(self, batch: Batch) -> torch.Tensor:
        """(B, K + 1): the label, or class K for an unlabeled example (y = -1)."""
        k = self.cfg.num_classes
        y = torch.where(batch.y >= 0, batch.y, torch.full_like(batch.y, k))
        return F.one_hot(y, k + 1).float()

    def discriminator_input(self, z: torch.Tensor, batch: Batch, is_prior: bool) -> torch.Tensor:
        return torch.cat([z, self.label_one_hot(batch)], 1)  # (B, code_dim + K + 1)

    def prior_sample(self, batch: Batch, generator: torch.Generator) -> torch.Tensor:
        n = batch.x.shape[0]
        anywhere = torch.randint(self.cfg.num_classes, (n,), generator=generator, device=generator.device)
        component = torch.where(batch.y >= 0, batch.y, anywhere)
        return self.prior.sample(n, generator, component=component).z

    @torch.no_grad()
    def assign(self, x: torch.Tensor) -> torch.Tensor:
        """(B, data_dim) -> (B,) the prior component each image's code falls into (compare with its label)."""
        return self.prior.assign(self.encode(x)).to(x.device)


class SupervisedAAE(AdversarialAutoencoder):
    """Sec. 4, Fig. 6-7: the decoder gets the one-hot label next to the code, so the code (matched to a Gaussian)
    only has to hold the style. Every training label is used."""

    def decoder_in_dim(self) -> int:
        return self.cfg.code_dim + self.cfg.num_classes

    def decode(self, code: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if y is None:
            raise ValueError("the supervised model's decoder needs the labels y")
        return self.decoder(torch.cat([code, F.one_hot(y, self.cfg.num_classes).to(code.dtype)], 1))

    def forward(self, xy: torch.Tensor) -> torch.Tensor:
        """(B, data_dim + K): image then one-hot label -> (B, data_dim) reconstruction (the exported model)."""
        x, onehot = xy[:, : self.data_dim], xy[:, self.data_dim :]
        return self.decoder(torch.cat([self.encoder.mean_code(x), onehot], 1))

    def export_example(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, F.one_hot(y.long(), self.cfg.num_classes).to(x.dtype)], 1)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Prior styles with uniformly drawn labels."""
        z = self.prior.sample(n, generator).z
        y = torch.randint(self.cfg.num_classes, (n,), generator=generator, device=z.device)
        device = next(self.parameters()).device
        return self.decode(z.to(device), y.to(device))

    @torch.no_grad()
    def decode_styled(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Style z (B, code_dim) rendered as label y (B,): the style x label grids of Fig. 7."""
        return self.decode(z, y)
