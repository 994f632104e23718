"""Benchmark the Parzen evaluator against its GEMM floor and a float64 numpy reference.

Case (Table 1 protocol on real MNIST): samples = train[0:10000], valid = valid[0:1000], test = official 10K.

    python benchmarks/parzen.py                      # data from $AAE_TUNE_DATA_DIR (aae_tune.data.load_mnist)
    python benchmarks/parzen.py --data-dir /work/shared/data/mnist

Times (a) ``parzen_log_likelihood`` (median of N after a warm-up), (b) a plain float64 numpy/scipy reference
(one run), (c) the GEMM floor: one fp32 ``torch.mm`` (1000 + 10000, 784) @ (784, 10000), median of N.
(a) and (c) are interleaved so that background load hits both alike.
"""

from __future__ import annotations

import argparse
import gzip
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy.special import logsumexp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from aae_tune.evaluate.parzen import SAMPLE_BLOCK, default_sigmas, parzen_log_likelihood  # noqa: E402

TARGET_PROTOCOL_OVER_GEMM = 1.25
TARGET_NUMPY_OVER_PROTOCOL = 4.0


def _read_idx_images(path: Path) -> np.ndarray:
    """Fallback reader for an official IDX image file (.gz or raw) -> (n, 784) float32 in [0, 1]."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        raw = fh.read()
    n = int.from_bytes(raw[4:8], "big")
    return np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(n, 784).astype(np.float32) / 255.0


def load_case(data_dir: str | None) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """(samples (10000, 784), valid (1000, 784), test (10000, 784), source)."""
    try:
        from aae_tune.data import load_mnist
    except ImportError:
        load_mnist = None
    if load_mnist is not None:
        # No embedded 5k fallback: the figures are only meaningful on the full 60K + 10K.
        splits = load_mnist(data_dir, allow_embedded=False)
        if len(splits.test_x) != 10000:
            got = f"{len(splits.test_x)} test images from {splits.source}"
            raise SystemExit(f"need the full MNIST, got {got}")
        return splits.train_x[:10000], splits.valid_x[:1000], splits.test_x, str(splits.source)
    if not data_dir:
        raise SystemExit("aae_tune.data is unavailable: pass --data-dir with the four IDX files")
    folder = Path(data_dir)

    def find(stem: str) -> Path:
        return next(p for p in (folder / f"{stem}.gz", folder / stem) if p.exists())

    train = _read_idx_images(find("train-images-idx3-ubyte"))
    test = _read_idx_images(find("t10k-images-idx3-ubyte"))
    return train[:10000], train[50000:51000], test, f"IDX files in {folder}"


def numpy_reference(samples: np.ndarray, valid: np.ndarray, test: np.ndarray) -> tuple[float, float, float]:
    """Same protocol in float64 numpy/scipy: squared distances by GEMM per point block, then logsumexp."""
    mu = samples.astype(np.float64)  # (n, d)
    mu_sq = (mu * mu).sum(1)  # (n,)
    n, d = mu.shape
    sigmas = default_sigmas()

    def sq_dist(x: np.ndarray) -> np.ndarray:  # (P, n), clipped: rounding can make tiny distances negative
        x = x.astype(np.float64)
        return np.maximum((x * x).sum(1)[:, None] + mu_sq[None, :] - 2.0 * x @ mu.T, 0.0)

    def log_p(d2: np.ndarray, s: float) -> np.ndarray:
        return logsumexp(-d2 / (2 * s * s), axis=1) - math.log(n) - d * math.log(s * math.sqrt(2 * math.pi))

    d2_valid = sq_dist(valid)
    best = float(sigmas[int(np.argmax([log_p(d2_valid, s).mean() for s in sigmas]))])
    test_ll = np.concatenate([log_p(sq_dist(test[i : i + 1000]), best) for i in range(0, len(test), 1000)])
    return best, float(test_ll.mean()), float(test_ll.std() / math.sqrt(len(test_ll)))


def main(argv: list[str] | None = None) -> None:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--data-dir", default=None, help="MNIST IDX folder (else $AAE_TUNE_DATA_DIR)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sample-chunk", type=int, default=SAMPLE_BLOCK, help="GEMM block along the samples")
    parser.add_argument("--skip-numpy", action="store_true", help="skip the slow float64 reference")
    args = parser.parse_args(argv)

    samples, valid, test, source = load_case(args.data_dir)
    print(f"data: {source}; torch {torch.__version__}, {torch.get_num_threads()} threads")

    # GEMM floor operands: every point (valid + test) against every sample, one fp32 matmul.
    points = torch.from_numpy(np.concatenate([valid, test]))  # (11000, 784)
    samples_t = torch.from_numpy(np.ascontiguousarray(samples)).t()  # (784, 10000) transposed view
    flops = 2.0 * points.shape[0] * points.shape[1] * samples_t.shape[1]

    def run_protocol():
        return parzen_log_likelihood(samples, valid, test, sample_chunk=args.sample_chunk)

    result = run_protocol()  # warm-up (allocations, MKL init)
    torch.mm(points, samples_t)
    t_protocol, t_gemm = [], []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        result = run_protocol()
        t_protocol.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        torch.mm(points, samples_t)
        t_gemm.append(time.perf_counter() - t0)
    protocol_s, gemm_s = statistics.median(t_protocol), statistics.median(t_gemm)

    numpy_s = ref = None
    if not args.skip_numpy:
        t0 = time.perf_counter()
        ref = numpy_reference(samples, valid, test)
        numpy_s = time.perf_counter() - t0

    print()
    print(f"{'what':<44}{'seconds':>9}  notes")
    runs = ", ".join(f"{t:.3f}" for t in t_protocol)
    print(f"{'(a) parzen_log_likelihood (median)':<44}{protocol_s:>9.3f}  runs {runs}")
    print(f"{'(c) GEMM floor torch.mm fp32 (median)':<44}{gemm_s:>9.3f}  {flops / gemm_s / 1e9:.1f} GFLOP/s")
    if numpy_s is not None:
        print(f"{'(b) float64 numpy reference (1 run)':<44}{numpy_s:>9.3f}")
    print()
    ratio = protocol_s / gemm_s
    ok = "OK" if ratio <= TARGET_PROTOCOL_OVER_GEMM else "MISSED"
    print(f"protocol / GEMM  = {ratio:.3f}   (target <= {TARGET_PROTOCOL_OVER_GEMM}: {ok})")
    if numpy_s is not None:
        speedup = numpy_s / protocol_s
        ok = "OK" if speedup >= TARGET_NUMPY_OVER_PROTOCOL else "MISSED"
        print(f"numpy / protocol = {speedup:.2f}   (target >= {TARGET_NUMPY_OVER_PROTOCOL}: {ok})")
    print()
    print(f"protocol: sigma {result.sigma:.4f}  LL {result.mean:.4f} +- {result.stderr:.4f}")
    if ref is not None:
        sigma, mean, stderr = ref
        diff = abs(mean - result.mean)
        print(f"numpy:    sigma {sigma:.4f}  LL {mean:.4f} +- {stderr:.4f}   |diff| {diff:.2e} nats")


if __name__ == "__main__":
    main()
