"""Likelihood metrics of a trained model, with the data roles fixed so nothing is ever selected on test data.

- ``table1_parzen``: the paper's Table 1 protocol. sigma is chosen on the first 1000 validation images, the
  figure is the mean log-likelihood of the test images at that sigma.
- ``validation_parzen``: what a search may optimise. sigma is chosen on validation images 1000-1999 and the
  figure is the mean log-likelihood of validation images 0-999; the test set is not touched.
"""

from __future__ import annotations

import torch

from aae_tune.aae import AdversarialAutoencoder
from aae_tune.parzen import ParzenResult, parzen_log_likelihood
from aae_tune.train import SplitData

SIGMA_SELECTION_POINTS = 1000  # Table 1: sigma is chosen on 1000 validation images


@torch.no_grad()
def draw_samples(model: AdversarialAutoencoder, n: int, seed: int, chunk: int = 10_000) -> torch.Tensor:
    """(n, data_dim) float32 model samples on the CPU, reproducible for a given seed. The prior is drawn from a
    CPU generator, so a model gives the same samples on CPU and GPU."""
    generator = torch.Generator().manual_seed(seed)
    was_training = model.training
    model.eval()
    parts = [model.sample(min(chunk, n - i), generator).float().cpu() for i in range(0, n, chunk)]
    model.train(was_training)
    return torch.cat(parts)


def table1_parzen(
    model: AdversarialAutoencoder, data: SplitData, n_samples: int = 10_000, seed: int = 0
) -> ParzenResult:
    """Test log-likelihood (mean, stderr) with sigma chosen on validation: the figure the paper reports."""
    samples = draw_samples(model, n_samples, seed)
    valid = data.valid_x[:SIGMA_SELECTION_POINTS]
    return parzen_log_likelihood(samples, valid, data.test_x)  # type: ignore[attr-defined]


def validation_parzen(
    model: AdversarialAutoencoder, data: SplitData, n_samples: int = 2_000, seed: int = 0, n_points: int = 1000
) -> ParzenResult:
    """Validation-only estimate: sigma chosen on valid[n:2n], scored on valid[0:n]. Safe to optimise."""
    if len(data.valid_x) < 2 * n_points:
        n_points = len(data.valid_x) // 2  # small (embedded) splits: use halves of what there is
    samples = draw_samples(model, n_samples, seed)
    return parzen_log_likelihood(samples, data.valid_x[n_points : 2 * n_points], data.valid_x[:n_points])
