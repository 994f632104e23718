"""Running a trained model over data without training it: eval mode (restored afterwards, even on an error),
no gradients, chunks on the model's device, numpy or float32 CPU tensors out. Every score, figure and sampler uses
these, so batch-norm statistics and dropout are handled the same way everywhere."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import torch
from torch import nn

from aae_tune.model.aae import AdversarialAutoencoder


@contextlib.contextmanager
def evaluating(model: nn.Module) -> Iterator[nn.Module]:
    """``model`` in eval mode with gradients off for the block; its previous mode comes back afterwards."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield model
    finally:
        model.train(was_training)


def model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def model_outputs(model: AdversarialAutoencoder, x: np.ndarray, method: str, chunk: int = 5000) -> np.ndarray:
    """``model.<method>(x)`` over chunks of x (N, D) in eval mode, on the model's device; numpy on the host."""
    device, fn = model_device(model), getattr(model, method)
    with evaluating(model):
        parts = [fn(torch.as_tensor(np.asarray(x[i : i + chunk]), dtype=torch.float32, device=device)).float().cpu()
                 for i in range(0, len(x), chunk)]
    return torch.cat(parts).numpy()


def recon_loss(model: AdversarialAutoencoder, x: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor,
               chunk: int = 5000) -> float:
    """Mean Euclidean reconstruction cost ||x - dec(enc(x))||^2 per image of x (N, D), labels y (N,), with no input
    corruption: the trainer's validation figure and the supervised model's test figure."""
    device, total = model_device(model), 0.0
    with evaluating(model):
        for i in range(0, len(x), chunk):
            xs = torch.as_tensor(x[i : i + chunk], dtype=torch.float32, device=device)
            ys = torch.as_tensor(y[i : i + chunk], dtype=torch.long, device=device)
            total += float((model.reconstruct(xs, None, ys) - xs).pow(2).sum())
    return total / max(len(x), 1)


def draw_samples(model: AdversarialAutoencoder, n: int, seed: int, chunk: int = 10_000) -> torch.Tensor:
    """(n, data_dim) float32 model samples on the CPU, reproducible for a given seed. The prior is drawn from a
    CPU generator, so a model gives the same samples on CPU and GPU."""
    generator = torch.Generator().manual_seed(seed)
    with evaluating(model):
        parts = [model.sample(min(chunk, n - i), generator).float().cpu() for i in range(0, n, chunk)]
    return torch.cat(parts)
