"""Parzen-window log-likelihood of test images under a generative model's samples.

Protocol of Goodfellow et al. (2014), used for Table 1 of the Adversarial Autoencoders paper: put an
isotropic Gaussian kernel of width sigma on every model sample mu_j (n, d) and score a point x by

    log p(x) = logmeanexp_j(-||x - mu_j||^2 / (2 sigma^2)) - d * log(sigma * sqrt(2 pi)).

sigma is picked from ``np.logspace(-1, 0, 10)`` by the mean log-likelihood of validation images (callers
pass the first 1000), then the test images are scored at that sigma only: mean and stderr = std / sqrt(N).

Speed: the only heavy work is the pairwise dot products, so each (point block, sample block) pair costs ONE
float32 GEMM shared by every sigma, and the log-sum-exp is carried across blocks in float64 as a running
row max plus per-sigma rescaled sums. That makes the state mergeable: ``ParzenAccumulator`` can be built
per sample shard and merged. Sharding sketch (e.g. Ray tasks, each with its own slice of the samples):

    pass 1: tasks return ParzenAccumulator(valid, sigmas) fed their shard -> .state(); the driver merges them
            (ParzenAccumulator.from_state / merge_state) and calls select_sigma(acc.log_likelihoods(), sigmas);
    pass 2: the same with ParzenAccumulator(test, [sigma]); make_result(...) packages the ParzenResult.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

ArrayLike = np.ndarray | torch.Tensor

# Block sizes of the GEMM: big enough for MKL to run near peak, small enough that the (P, K) float32 score
# block (8 MB) stays in L3 for the exp passes that follow. Memory is bounded by these, not by n or N.
POINT_BLOCK = 2048
SAMPLE_BLOCK = 1024
# Exponents are clamped here before exp: below ~-87 float32 exp goes denormal and takes a 10-30x slower path,
# and most terms at small sigma sit far below. A clamped term adds e^-80 = 1.8e-35 to a sum >= 1 (it holds the
# max term): even 1e7 samples shift log p by < 1e-27.
_EXP_FLOOR = -80.0


def default_sigmas() -> np.ndarray:
    """The paper's sigma grid, (10,) float64 from 0.1 to 1."""
    return np.logspace(-1, 0, 10)


@dataclass(frozen=True)
class ParzenResult:
    mean: float  # mean test log-likelihood (nats) at the chosen sigma
    stderr: float  # std(ddof=0) / sqrt(N_test)
    sigma: float  # chosen on validation
    sigmas: np.ndarray  # the grid, (S,)
    valid_by_sigma: np.ndarray  # mean validation log-likelihood per sigma, (S,)
    n_samples: int
    test_log_likelihoods: np.ndarray  # per test point, (N_test,) float64


def _resolve_device(device: str | torch.device | None, like: object) -> torch.device:
    if device is not None:
        return torch.device(device)
    return like.device if isinstance(like, torch.Tensor) else torch.device("cpu")


def _check_array(
    name: str, x: object, *, dim: int | None, device: torch.device, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Validate a 2-D (n, d) array; return it as a ``dtype`` tensor on ``device`` (no copy if possible)."""
    if not isinstance(x, torch.Tensor):
        x = np.asarray(x)
        if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer) or x.dtype == bool):
            raise ValueError(f"{name} must be a real numeric array, got dtype {x.dtype}")
    if x.ndim != 2:
        raise ValueError(f"{name} must have shape (n, d), got {x.ndim} dimension(s) {tuple(x.shape)}")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"{name} is empty: shape {tuple(x.shape)}")
    if dim is not None and x.shape[1] != dim:
        raise ValueError(f"{name} has dimension {x.shape[1]}, expected {dim} (mismatched d)")
    with warnings.catch_warnings():
        # Read-only numpy arrays (np.frombuffer, memory maps) are fine: inputs are never written to.
        warnings.filterwarnings("ignore", message=".*not writable.*")
        t = torch.as_tensor(x).to(device=device, dtype=dtype)
    # After the cast so float64 values that overflow float32 are caught too. A sum is cheap and non-finite if
    # any element is; only then (or on float32 overflow of the sum itself) run the exact elementwise check.
    if not bool(torch.isfinite(t.sum())) and not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} contains non-finite values (NaN/inf, or too large for {dtype})")
    return t


def checksum(x: torch.Tensor) -> float:
    """Sum of all values of (n, d) x: float32 row sums, then float64 (chunking-independent to ~1e-7)."""
    return float(x.sum(1).double().sum())


def check_sigmas(sigmas: ArrayLike | Iterable[float] | None) -> np.ndarray:
    if sigmas is None:
        return default_sigmas()
    if isinstance(sigmas, torch.Tensor):
        sigmas = sigmas.detach().cpu().numpy()
    s = np.asarray(sigmas, dtype=np.float64)
    if s.ndim != 1 or s.size == 0:
        raise ValueError(f"sigmas must be a non-empty 1-D grid, got shape {s.shape}")
    if not np.all(np.isfinite(s)) or np.any(s <= 0):
        raise ValueError(f"sigmas must be finite and positive, got {s}")
    return s


class ParzenAccumulator:
    """Streaming, mergeable Parzen log-likelihoods of fixed ``points`` (N, d) at every sigma of a grid (S,).

    Feed sample chunks with ``add``; shards built elsewhere (other processes, Ray tasks) combine exactly via
    ``merge`` or the numpy form ``state()`` / ``merge_state`` / ``from_state``. Internally, with x and mu
    centred on the mean of the points (distances are translation invariant; smaller magnitudes -> less
    float32 cancellation), c = 1/min(sigma)^2 and r_k = min(sigma)^2 / sigma_k^2 <= 1 (so the float32
    rounding of H is never amplified):

        -||x_i - mu_j||^2 / (2 sigma_k^2) = r_k (H_ij - c ||x_i||^2 / 2),  H_ij = c (x_i.mu_j - ||mu_j||^2/2)

    H is one float32 addmm for all sigmas. Since r_k > 0 its row max M_i (a running max, float64) serves every
    sigma: sums[k, i] = sum_j exp(r_k (H_ij - M_i)) in float64, rescaled by exp(r_k (M_old - M_new)).
    """

    def __init__(
        self,
        points: ArrayLike,
        sigmas: ArrayLike | Iterable[float] | None,
        *,
        device: str | torch.device | None = None,
        point_block: int = POINT_BLOCK,
        sample_block: int = SAMPLE_BLOCK,
    ) -> None:
        if point_block < 1 or sample_block < 1:
            raise ValueError("point_block and sample_block must be positive")
        self.sigmas = check_sigmas(sigmas)  # (S,) float64
        self.device = _resolve_device(device, points)
        x = _check_array("points", points, dim=None, device=self.device)  # (N, d) float32
        self.n_points, self.dim = (int(v) for v in x.shape)
        self.point_block, self.sample_block = int(point_block), int(sample_block)

        a = 1.0 / self.sigmas**2  # (S,) kernel precisions
        self._scale = float(a.max())  # c: folded into the points so the smallest sigma needs no multiply
        self._ratios = (a / self._scale).tolist()  # r_k, (S,) python floats for the hot loop
        # (S, 1) float64 column for the vectorised rescaling
        self._ratios_t = torch.tensor(self._ratios, dtype=torch.float64, device=self.device)[:, None]
        # float32 reductions (float64-dtype ones are ~10x slower in torch; this also runs once per shard). Any
        # centre works: rounding to a 2^-10 grid makes it identical on every worker whatever the thread count.
        self._center = torch.round(x.mean(0) * 1024.0) / 1024.0  # (d,)
        xc = x - self._center  # (N, d) float32
        self._half_sq_norm = 0.5 * xc.square().sum(1).double()  # (N,) float64, ||x||^2 / 2
        self._points = xc.mul_(self._scale)  # (N, d) = c * x, in place
        # Fingerprint of the points so states from different point sets are never merged.
        self._checksum = np.array([checksum(x), float(self._half_sq_norm.sum())])

        S = len(self._ratios)
        self._max = torch.full((self.n_points,), -math.inf, dtype=torch.float64, device=self.device)  # M (N,)
        self._sums = torch.zeros((S, self.n_points), dtype=torch.float64, device=self.device)  # (S, N)
        self.count = 0  # samples absorbed
        self.sample_sum = 0.0  # float64 sum of all sample values: two passes check they saw the same data
        self._buffers: tuple[torch.Tensor, torch.Tensor] | None = None  # flat float32 (P*K,) x2, lazily

    def add(self, samples_chunk: ArrayLike) -> None:
        """Absorb model samples (k, d); any k (split internally into blocks of ``sample_block``)."""
        mu = _check_array("samples", samples_chunk, dim=self.dim, device=self.device)  # (k, d) float32
        self.sample_sum += checksum(mu)
        P, K = self.point_block, self.sample_block
        for k0 in range(0, mu.shape[0], K):
            mu_b = mu[k0 : k0 + K] - self._center  # (Kb, d) centred copy
            bias = mu_b.square().sum(1).mul_(-0.5 * self._scale)  # (Kb,) = -c ||mu||^2 / 2
            mu_t = mu_b.t()  # (d, Kb) view: MKL takes the transpose flag, no copy
            for p0 in range(0, self.n_points, P):
                x = self._points[p0 : p0 + P]  # (Pb, d)
                h, scratch = self._views(x.shape[0], mu_b.shape[0])
                torch.addmm(bias, x, mu_t, out=h)  # (Pb, Kb) = H block, the one GEMM
                self._absorb(h, scratch, p0)
        self.count += int(mu.shape[0])

    def _views(self, p: int, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Two contiguous (p, k) float32 views of preallocated buffers (no allocation per block)."""
        if self._buffers is None:
            n = min(self.point_block, self.n_points) * self.sample_block
            self._buffers = tuple(torch.empty(n, dtype=torch.float32, device=self.device) for _ in range(2))
        return self._buffers[0][: p * k].view(p, k), self._buffers[1][: p * k].view(p, k)

    def _absorb(self, h: torch.Tensor, scratch: torch.Tensor, p0: int) -> None:
        """Fold an H block (Pb, Kb) into the running max / sums of points p0:p0+Pb. Destroys h."""
        sl = slice(p0, p0 + h.shape[0])
        m_old = self._max[sl]  # (Pb,) float64
        # M only ever holds float32 values (block maxima), so the float32 cast below is exact and h - M <= 0.
        m_new = torch.maximum(m_old, h.amax(1).double())
        h.sub_(m_new.float()[:, None])
        sums = self._sums[:, sl]  # (S, Pb) view
        sums.mul_(torch.exp(self._ratios_t * (m_old - m_new)))  # rescale old sums; first block: 0 * 0
        last = len(self._ratios) - 1
        for k, r in enumerate(self._ratios):
            # The last sigma works in place on h; the others go through scratch so h survives.
            e = h if k == last else scratch
            if r == 1.0:
                torch.clamp_min(h, _EXP_FLOOR, out=e)
            else:
                torch.mul(h, r, out=e).clamp_min_(_EXP_FLOOR)
            sums[k].add_(e.exp_().sum(1))  # float32 block sum (<= Kb terms in [0, 1]), accumulated in float64
        self._max[sl] = m_new

    def log_likelihoods(self) -> np.ndarray:
        """log p(x) of every point at every sigma, (S, N_points) float64."""
        if self.count == 0:
            raise ValueError("no samples have been added")
        shift = self._max - self._scale * self._half_sq_norm  # (N,) = max_j of c * (-||x - mu_j||^2 / 2)
        log_norm = math.log(self.count) + self.dim * np.log(self.sigmas * math.sqrt(2 * math.pi))  # (S,)
        ll = self._ratios_t * shift[None, :] + torch.log(self._sums)  # (S, N)
        return ll.cpu().numpy() - log_norm[:, None]

    def state(self) -> dict[str, np.ndarray]:
        """Everything needed to merge this shard elsewhere, as numpy arrays (small: (S+1) x N float64)."""
        return {
            "max": self._max.cpu().numpy().copy(),
            "sums": self._sums.cpu().numpy().copy(),
            "count": np.array(self.count, dtype=np.int64),
            "sample_sum": np.array(self.sample_sum, dtype=np.float64),
            "sigmas": self.sigmas.copy(),
            "checksum": self._checksum.copy(),
        }

    @classmethod
    def from_state(
        cls, points: ArrayLike, state: dict[str, np.ndarray], *, device: str | torch.device | None = None
    ) -> ParzenAccumulator:
        """Rebuild an accumulator from ``state()`` and the same ``points`` it was built on."""
        acc = cls(points, state["sigmas"], device=device)
        acc.merge_state(state)
        return acc

    def merge(self, other: ParzenAccumulator) -> None:
        """Add another shard's samples (same points and sigmas) as if they had been fed here."""
        self.merge_state(other.state())

    def merge_state(self, state: dict[str, np.ndarray]) -> None:
        """``merge`` from the numpy form returned by ``state()``."""
        sig = np.asarray(state["sigmas"], dtype=np.float64)
        if sig.shape != self.sigmas.shape or not np.array_equal(sig, self.sigmas):
            raise ValueError(f"cannot merge: sigma grids differ ({sig} vs {self.sigmas})")
        max_o = torch.as_tensor(np.asarray(state["max"]), dtype=torch.float64, device=self.device)
        sums_o = torch.as_tensor(np.asarray(state["sums"]), dtype=torch.float64, device=self.device)
        if max_o.shape != self._max.shape or sums_o.shape != self._sums.shape:
            raise ValueError("cannot merge: states cover a different number of points")
        if not np.allclose(state["checksum"], self._checksum, rtol=1e-6, atol=1e-6):
            raise ValueError("cannot merge: states were built on different points")
        count = int(state["count"])
        if count == 0:
            return
        self.sample_sum += float(state["sample_sum"])
        if self.count == 0:
            self._max.copy_(max_o)
            self._sums.copy_(sums_o)
        else:
            m_new = torch.maximum(self._max, max_o)
            self._sums.mul_(torch.exp(self._ratios_t * (self._max - m_new)))
            self._sums.add_(sums_o * torch.exp(self._ratios_t * (max_o - m_new)))
            self._max.copy_(m_new)
        self.count += count


def select_sigma(valid_log_likelihoods: np.ndarray, sigmas: np.ndarray) -> tuple[int, np.ndarray]:
    """Index of the sigma with the best mean validation log-likelihood, and those means (S,)."""
    valid_by_sigma = np.asarray(valid_log_likelihoods, dtype=np.float64).mean(axis=1)
    return int(np.argmax(valid_by_sigma)), valid_by_sigma


def make_result(
    sigmas: np.ndarray, valid_by_sigma: np.ndarray, best: int, test_ll: np.ndarray, n_samples: int
) -> ParzenResult:
    """Package the test log-likelihoods (N_test,) at sigmas[best] into a ``ParzenResult``."""
    test_ll = np.asarray(test_ll, dtype=np.float64)
    return ParzenResult(
        mean=float(test_ll.mean()),
        stderr=float(test_ll.std() / math.sqrt(test_ll.size)),
        sigma=float(sigmas[best]),
        sigmas=np.asarray(sigmas, dtype=np.float64),
        valid_by_sigma=valid_by_sigma,
        n_samples=int(n_samples),
        test_log_likelihoods=test_ll,
    )


def _run_protocol(
    make_chunks: Callable[[], Iterable[ArrayLike]],
    valid: torch.Tensor,
    test: torch.Tensor,
    sigmas: np.ndarray,
    block: int = SAMPLE_BLOCK,
) -> ParzenResult:
    # Pass 1: 1000-ish validation points at all S sigmas. Pass 2: test points at the chosen sigma only.
    acc_v = ParzenAccumulator(valid, sigmas, sample_block=block)  # device: that of the tensors
    for chunk in make_chunks():
        acc_v.add(chunk)
    if acc_v.count == 0:
        raise ValueError("no samples were given")
    best, valid_by_sigma = select_sigma(acc_v.log_likelihoods(), sigmas)

    acc_t = ParzenAccumulator(test, sigmas[best : best + 1], sample_block=block)
    for chunk in make_chunks():
        acc_t.add(chunk)
    same_sum = math.isclose(acc_t.sample_sum, acc_v.sample_sum, rel_tol=1e-6, abs_tol=1e-3)
    if acc_t.count != acc_v.count or not same_sum:
        raise ValueError(
            "the sample chunks differed between the two passes (validation, then test): make_chunks() must "
            "yield the same samples every call, e.g. from a freshly seeded generator"
        )
    return make_result(sigmas, valid_by_sigma, best, acc_t.log_likelihoods()[0], acc_v.count)


def parzen_log_likelihood(
    samples: ArrayLike,
    valid: ArrayLike,
    test: ArrayLike,
    sigmas: ArrayLike | Iterable[float] | None = None,
    *,
    device: str | torch.device | None = None,
    sample_chunk: int | None = None,
) -> ParzenResult:
    """Full protocol on in-memory arrays: samples (n, d), valid (N_v, d), test (N_t, d); numpy or torch.

    ``sigmas`` defaults to ``np.logspace(-1, 0, 10)``; ``sample_chunk`` is the GEMM block along the samples.
    """
    sig = check_sigmas(sigmas)
    dev = _resolve_device(device, samples)
    mu = _check_array("samples", samples, dim=None, device=dev)  # (n, d) float32
    v = _check_array("valid", valid, dim=mu.shape[1], device=dev)
    t = _check_array("test", test, dim=mu.shape[1], device=dev)
    return _run_protocol(lambda: (mu,), v, t, sig, sample_chunk or SAMPLE_BLOCK)


def parzen_log_likelihood_stream(
    make_chunks: Callable[[], Iterable[ArrayLike]] | Iterable[ArrayLike],
    valid: ArrayLike,
    test: ArrayLike,
    sigmas: ArrayLike | Iterable[float] | None = None,
    *,
    device: str | torch.device | None = None,
) -> ParzenResult:
    """Full protocol over samples too many to hold at once (e.g. 10 million), given as chunks (k, d).

    ``make_chunks`` is called TWICE (pass 1 scores validation at every sigma, pass 2 the test set at the
    chosen sigma) and must yield the very same samples both times, e.g. ``lambda: sampler(seed=0)`` that
    re-seeds its generator on each call; a mismatch in count or checksum raises ValueError. A re-iterable
    such as a list of arrays works too; a one-shot iterator or generator object is rejected (it cannot be
    replayed). Memory: one chunk plus fixed-size GEMM blocks, whatever the total number of samples.
    """
    sig = check_sigmas(sigmas)
    dev = _resolve_device(device, valid)
    v = _check_array("valid", valid, dim=None, device=dev)
    t = _check_array("test", test, dim=v.shape[1], device=dev)
    if isinstance(make_chunks, np.ndarray | torch.Tensor):
        make_chunks = [make_chunks]  # one in-memory chunk
    if isinstance(make_chunks, Iterator):
        raise ValueError(
            "make_chunks is a one-shot iterator/generator; pass a function returning a fresh one "
            "(it is called twice) or a list of chunks"
        )
    if not callable(make_chunks) and not isinstance(make_chunks, Iterable):
        raise ValueError(f"make_chunks must be callable or re-iterable, got {type(make_chunks).__name__}")
    chunks = make_chunks
    factory = chunks if callable(chunks) else lambda: chunks
    return _run_protocol(factory, v, t, sig)
