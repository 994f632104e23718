"""What bf16 would do to the Parzen figure: the Table 1 case of benchmarks/parzen.py (samples = the first 10,000
training images, sigma chosen on 1000 validation images by the fp32 protocol, the 10K test images) with the one GEMM
of the estimator, x . mu, computed in fp32 and in bf16; everything else in fp32/fp64.

    python benchmarks/parzen_bf16.py --data-dir /work/shared/data/mnist
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from aae_tune.data import load_mnist  # noqa: E402
from aae_tune.evaluate.parzen import parzen_log_likelihood  # noqa: E402


def test_log_likelihoods(x: torch.Tensor, mu: torch.Tensor, sigma: float, dtype: torch.dtype) -> torch.Tensor:
    """log p(x_i) (N,) under the Parzen window of samples mu (M, d), the cross term x . mu in ``dtype``."""
    mu_sq = mu.pow(2).sum(1)  # (M,)
    out = []
    for xb in x.split(1000):
        cross = (xb.to(dtype) @ mu.to(dtype).t()).float()  # (1000, M)
        d2 = xb.pow(2).sum(1, keepdim=True) - 2 * cross + mu_sq[None]
        norm = math.log(len(mu)) + x.shape[1] * math.log(sigma * math.sqrt(2 * math.pi))
        out.append(torch.logsumexp(-d2.double() / (2 * sigma**2), 1) - norm)
    return torch.cat(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=None)
    args = p.parse_args(argv)
    data = load_mnist(args.data_dir)
    protocol = parzen_log_likelihood(data.train_x[:10000], data.valid_x[:1000], data.test_x)
    mu, x = torch.tensor(data.train_x[:10000]), torch.tensor(data.test_x)
    fp32, bf16 = (test_log_likelihoods(x, mu, protocol.sigma, dtype) for dtype in (torch.float32, torch.bfloat16))
    diff = (bf16 - fp32).abs()
    print("\n".join([
        f"sigma {protocol.sigma:.4f} (fp32 protocol, on validation); protocol figure {protocol.mean:.3f} nats",
        f"fp32 GEMM: {fp32.mean():.3f} ± {fp32.std() / math.sqrt(len(x)):.3f} nats",
        f"bf16 GEMM: {bf16.mean():.3f} nats, {bf16.mean() - fp32.mean():+.3f} against fp32",
        f"per test image |bf16 - fp32|: mean {diff.mean():.3f}, max {diff.max():.3f} nats",
    ]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
