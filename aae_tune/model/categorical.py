"""The AAEs with a categorical code next to the style code: semi-supervised classification (Sec. 5),
unsupervised clustering (Sec. 6) and dimensionality reduction with cluster heads (Sec. 7).

The encoder's trunk has two heads: q(y|x), a softmax over K classes, and q(z|x), a linear style code. Two
adversaries match them to a categorical and a Gaussian prior. Phases per mini-batch (train.py runs them):

1. reconstruction: encoder + decoder reconstruct x from (y, z) (plus the cluster-head distance penalty, Sec. 7)
2. discriminator: D_y and D_z learn to tell prior samples from codes
3. generator: the encoder fools both
4. classification (only with labels): cross-entropy of q(y|x) on a labeled mini-batch
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from aae_tune.model.aae import AdversarialAutoencoder, Batch, Metrics, Phase, discriminator_bce, generator_bce
from aae_tune.model.nets import CategoricalEncoder, mlp
from aae_tune.model.priors import CategoricalPrior


class CategoricalAAE(AdversarialAutoencoder):
    """Semi-supervised (with labels) and clustering (without) AAE. ``self.discriminator`` is D_z."""

    encoder: CategoricalEncoder

    def __init__(self, cfg, data_dim: int = 784):
        super().__init__(cfg, data_dim)
        self.discriminator_y = mlp(cfg.num_classes, cfg.net.disc_hidden, 1, init_std=cfg.net.init_std)
        self.prior_y = CategoricalPrior(cfg.num_classes)

    def build_encoder(self) -> nn.Module:
        cfg = self.cfg
        return CategoricalEncoder(self.data_dim, cfg.net.hidden, cfg.num_classes, cfg.code_dim,
                                  init_std=cfg.net.init_std, batch_norm=cfg.net.batch_norm != "none",
                                  dropout=cfg.hidden_dropout)

    def decoder_in_dim(self) -> int:
        return self.cfg.num_classes + self.cfg.code_dim

    def representation(self, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """What the decoder reads: (B, K) class probabilities and (B, code_dim) style -> (B, K + code_dim)."""
        return torch.cat([y, z], 1)

    def encode_parts(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, data_dim) -> q(y|x) (B, K) probabilities and style z (B, code_dim)."""
        logits, z = self.encoder(x)
        return logits.softmax(1), z

    # ---- phases -------------------------------------------------------------------------------------
    def reconstruction_parameters(self) -> list[nn.Parameter]:
        return [*self.encoder.parameters(), *self.decoder.parameters()]

    def phases(self) -> list[Phase]:
        enc, discs = self.encoder, [self.discriminator, self.discriminator_y]
        phases = [
            Phase("reconstruction", "reconstruction", self.reconstruction_parameters, self.reconstruction_loss),
            Phase("discriminator", "adversarial", lambda: [p for d in discs for p in d.parameters()],
                  self.discriminator_loss),
            Phase("generator", "adversarial", lambda: list(enc.parameters()), self.generator_loss),
        ]
        if self.cfg.uses_labels:
            phases.append(Phase("classification", "classification", enc.classifier_parameters,
                                self.classification_loss))
        return phases

    def reconstruction_loss(self, batch: Batch, generator: torch.Generator) -> tuple[torch.Tensor, Metrics]:
        y, z = self.encode_parts(self.corrupt(batch.x, generator))
        loss = self.reconstruction_cost(self.decoder(self.representation(y, z)), batch.x)  # x_hat: (B, data_dim)
        return loss, {"recon_loss": loss.detach()}

    def regularization_encode(self, x: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        return self.encode_parts(x)

    def discriminator_loss(self, batch: Batch, generator: torch.Generator) -> tuple[torch.Tensor, Metrics]:
        n = batch.x.shape[0]
        y, z = (t.detach() for t in self.regularization_codes(batch, generator, last_use=False))
        loss_z, acc_z = discriminator_bce(self.discriminator, self.prior.sample(n, generator).z, z)
        loss_y, acc_y = discriminator_bce(self.discriminator_y, self.prior_y.sample(n, generator).z, y)
        loss = loss_z + loss_y
        return loss, {"disc_loss": loss.detach(), "disc_accuracy": acc_z, "disc_y_accuracy": acc_y}

    def generator_loss(self, batch: Batch, generator: torch.Generator) -> tuple[torch.Tensor, Metrics]:
        y, z = self.regularization_codes(batch, generator, last_use=True)
        loss = generator_bce(self.discriminator(z)) + generator_bce(self.discriminator_y(y))
        return loss, {"gen_loss": loss.detach()}

    def classification_loss(self, batch: Batch, generator: torch.Generator) -> tuple[torch.Tensor, Metrics]:
        logits, _ = self.encoder(self.corrupt(batch.labeled_x, generator))
        loss = F.cross_entropy(logits.float(), batch.labeled_y)  # fp32 under bf16 autocast
        return loss, {"class_loss": loss.detach()}

    # ---- inference ----------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, data_dim) -> (B, data_dim) reconstructions (the exported model)."""
        return self.decoder(self.representation(*self.encode_parts(x)))

    @torch.no_grad()
    def encode(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """The code the figures plot: the style z (B, code_dim)."""
        return self.encode_parts(x)[1]

    @torch.no_grad()
    def reconstruct(self, x, generator=None, y=None) -> torch.Tensor:
        return self.forward(x)

    @torch.no_grad()
    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """(B, data_dim) -> q(y|x) (B, K)."""
        return self.encode_parts(x)[0]

    @torch.no_grad()
    def decode_styled(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Style z (B, code_dim) with the one-hot class y (B,): Fig. 8's style x class grid, Fig. 9's heads."""
        return self.decoder(self.representation(F.one_hot(y, self.cfg.num_classes).to(z.dtype), z))

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        y = self.prior_y.sample(n, generator).z
        z = self.prior.sample(n, generator).z
        device = next(self.parameters()).device
        return self.decoder(self.representation(y.to(device), z.to(device)))


class DimRedAAE(CategoricalAAE):
    """Sec. 7, Fig. 10-11: the representation is W_C y + z, both of dimension code_dim (2 or 10); the rows of W_C
    are cluster heads, learned with a penalty on every pair closer than eta (or fixed to scale * I)."""

    def __init__(self, cfg, data_dim: int = 784):
        super().__init__(cfg, data_dim)
        heads = cfg.cluster_heads
        k, d = cfg.num_classes, cfg.code_dim
        if heads.kind == "fixed":
            self.register_buffer("heads", heads.scale * torch.eye(k, d))
        else:
            self.heads = nn.Parameter(heads.scale * torch.randn(k, d))  # seeded by the model's init seed

    def decoder_in_dim(self) -> int:
        return self.cfg.code_dim

    def representation(self, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return y @ self.heads + z  # (B, K) @ (K, d) + (B, d) -> (B, d)

    def reconstruction_parameters(self) -> list[nn.Parameter]:
        learned = [self.heads] if isinstance(self.heads, nn.Parameter) else []
        return super().reconstruction_parameters() + learned

    def head_penalty(self) -> torch.Tensor:
        """sum over pairs i < j of relu(eta - ||w_i - w_j||): pushes heads apart only while closer than eta."""
        cfg = self.cfg.cluster_heads
        k = self.heads.shape[0]
        i, j = torch.triu_indices(k, k, offset=1, device=self.heads.device)
        distance = (self.heads[i] - self.heads[j]).pow(2).sum(1).add(1e-12).sqrt()
        return F.relu(cfg.threshold - distance).sum()

    def reconstruction_loss(self, batch: Batch, generator: torch.Generator) -> tuple[torch.Tensor, Metrics]:
        loss, metrics = super().reconstruction_loss(batch, generator)
        if isinstance(self.heads, nn.Parameter) and self.cfg.cluster_heads.penalty > 0:
            penalty = self.head_penalty()
            loss = loss + self.cfg.cluster_heads.penalty * penalty
            metrics["head_penalty"] = penalty.detach()
        return loss, metrics

    @torch.no_grad()
    def encode(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """The low-dimensional embedding W_C q(y|x) + z (B, code_dim) of Fig. 11."""
        return self.representation(*self.encode_parts(x))
