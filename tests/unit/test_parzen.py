"""Parzen-window evaluator: closed forms, a float64 reference, streaming/merging, validation, real MNIST."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.special import logsumexp

from aae_tune.evaluate.parzen import (
    ParzenAccumulator,
    default_sigmas,
    parzen_log_likelihood,
    parzen_log_likelihood_stream,
)


def reference_log_likelihoods(samples: np.ndarray, points: np.ndarray, sigmas: np.ndarray) -> np.ndarray:
    """Independent float64 implementation: explicit squared distances + scipy logsumexp, (S, N)."""
    mu = np.asarray(samples, dtype=np.float64)  # (n, d)
    x = np.asarray(points, dtype=np.float64)  # (N, d)
    d2 = ((x[:, None, :] - mu[None, :, :]) ** 2).sum(-1)  # (N, n), no GEMM trick
    out = []
    for s in sigmas:
        log_norm = math.log(len(mu)) + x.shape[1] * math.log(s * math.sqrt(2 * math.pi))
        out.append(logsumexp(-d2 / (2 * s * s), axis=1) - log_norm)
    return np.stack(out)


def gaussian_log_density(x: np.ndarray, mu: np.ndarray, sigma: float) -> np.ndarray:
    d = x.shape[1]
    sq = ((x.astype(np.float64) - mu.astype(np.float64)) ** 2).sum(1)
    return -sq / (2 * sigma**2) - 0.5 * d * math.log(2 * math.pi * sigma**2)


@pytest.fixture(scope="module")
def small():
    """Image-like data in [0, 1]: samples (300, 20), valid (50, 20), test (80, 20)."""
    rng = np.random.default_rng(0)
    centers = rng.random((5, 20))

    def draw(n: int) -> np.ndarray:
        x = centers[rng.integers(0, 5, n)] + 0.15 * rng.standard_normal((n, 20))
        return np.clip(x, 0, 1).astype(np.float32)

    return draw(300), draw(50), draw(80)


# ------------------------------------------------------------------------------------------ closed forms
def test_identical_samples_give_the_gaussian_density():
    rng = np.random.default_rng(1)
    mu = rng.random(12).astype(np.float32)
    samples = np.tile(mu, (7, 1))  # every kernel at mu: the mixture is one Gaussian
    points = (mu + 0.2 * rng.standard_normal((40, 12))).astype(np.float32)
    sigmas = default_sigmas()
    acc = ParzenAccumulator(points, sigmas)
    acc.add(samples[:3])
    acc.add(samples[3:])
    ll = acc.log_likelihoods()
    assert ll.shape == (10, 40) and ll.dtype == np.float64
    for k, s in enumerate(sigmas):
        np.testing.assert_allclose(ll[k], gaussian_log_density(points, mu, s), rtol=0, atol=1e-4)

    res = parzen_log_likelihood(samples, points[:20], points[20:], sigmas)
    expected = gaussian_log_density(points[20:], mu, res.sigma)
    np.testing.assert_allclose(res.test_log_likelihoods, expected, rtol=0, atol=1e-4)


def test_accumulator_matches_float64_reference_across_blocks(small):
    samples, valid, test = small
    sigmas = default_sigmas()
    ref = reference_log_likelihoods(samples, test, sigmas)
    # Tiny blocks so the running max and the rescaling cross many block boundaries.
    acc = ParzenAccumulator(test, sigmas, point_block=16, sample_block=32)
    for i in range(0, len(samples), 70):
        acc.add(samples[i : i + 70])
    np.testing.assert_allclose(acc.log_likelihoods(), ref, rtol=0, atol=1e-4)


def test_running_max_survives_a_far_first_chunk(small):
    samples, _, test = small
    # Absorbed first, its max is then dwarfed by the near chunk's: the rescaling factor underflows to 0.
    far = samples[:50] + 4.0
    sigmas = np.array([0.1, 0.3, 1.0])
    ref = reference_log_likelihoods(np.concatenate([far, samples]), test, sigmas)
    acc = ParzenAccumulator(test, sigmas, sample_block=64)
    acc.add(far)
    acc.add(samples)
    np.testing.assert_allclose(acc.log_likelihoods(), ref, rtol=0, atol=1e-4)


def test_protocol_matches_reference_and_picks_the_argmax(small):
    samples, valid, test = small
    res = parzen_log_likelihood(samples, valid, test, sample_chunk=64)
    sigmas = default_sigmas()
    np.testing.assert_array_equal(res.sigmas, sigmas)
    ref_valid = reference_log_likelihoods(samples, valid, sigmas).mean(1)
    np.testing.assert_allclose(res.valid_by_sigma, ref_valid, atol=1e-4)
    assert res.sigma == sigmas[int(np.argmax(res.valid_by_sigma))]
    assert res.sigma == sigmas[int(np.argmax(ref_valid))]
    ref_test = reference_log_likelihoods(samples, test, [res.sigma])[0]
    np.testing.assert_allclose(res.test_log_likelihoods, ref_test, atol=1e-4)
    assert res.mean == pytest.approx(ref_test.mean(), abs=1e-4)
    assert res.stderr == pytest.approx(ref_test.std() / math.sqrt(len(ref_test)), rel=1e-4)
    assert res.n_samples == 300 and res.test_log_likelihoods.shape == (80,)


def test_torch_inputs_and_custom_grid(small):
    samples, valid, test = small
    grid = np.array([0.5, 0.2, 0.08])  # unsorted on purpose
    a = parzen_log_likelihood(samples, valid, test, grid)
    t_samples, t_valid, t_test = (torch.from_numpy(a) for a in (samples, valid, test))
    b = parzen_log_likelihood(t_samples, t_valid.double(), t_test, grid, device="cpu")
    assert a.sigma == b.sigma
    np.testing.assert_allclose(a.test_log_likelihoods, b.test_log_likelihoods, atol=1e-5)


# ---------------------------------------------------------------------------------- stream / merge agree
def _close(a: np.ndarray, b: np.ndarray) -> None:
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-3)


def test_stream_in_memory_and_merged_shards_agree(small):
    samples, valid, test = small
    base = parzen_log_likelihood(samples, valid, test)

    def chunks():  # re-creatable stream: the same samples every call
        rng = np.random.default_rng(7)
        i = 0
        while i < len(samples):
            k = int(rng.integers(1, 90))
            yield samples[i : i + k]
            i += k

    for source in (chunks, [samples[:100], samples[100:250], samples[250:]], samples):
        res = parzen_log_likelihood_stream(source, valid, test)
        assert res.sigma == base.sigma and res.n_samples == 300
        _close(res.valid_by_sigma, base.valid_by_sigma)
        _close(res.test_log_likelihoods, base.test_log_likelihoods)

    # Shards as separate workers would build them, merged in both the object and the numpy-state form.
    sigmas = default_sigmas()
    shards = [samples[:90], samples[90:91], samples[91:]]
    accs = []
    for shard in shards:
        acc = ParzenAccumulator(valid, sigmas)
        acc.add(shard)
        accs.append(acc)
    merged = ParzenAccumulator(valid, sigmas)  # empty: merging into it must copy
    for acc in reversed(accs):
        merged.merge(acc)
    via_state = ParzenAccumulator.from_state(valid, accs[0].state())
    for acc in accs[1:]:
        via_state.merge_state(acc.state())
    via_state.merge(ParzenAccumulator(valid, sigmas))  # empty shard: no-op
    whole = ParzenAccumulator(valid, sigmas)
    whole.add(samples)
    assert merged.count == via_state.count == 300
    _close(merged.log_likelihoods(), whole.log_likelihoods())
    _close(via_state.log_likelihoods(), whole.log_likelihoods())
    _close(merged.log_likelihoods().mean(1), base.valid_by_sigma)


# ----------------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"samples": np.zeros(20, np.float32)}, "shape"),
        ({"samples": np.zeros((2, 3, 20), np.float32)}, "shape"),
        ({"valid": np.zeros((5, 19), np.float32)}, "mismatched d"),
        ({"test": np.zeros((0, 20), np.float32)}, "empty"),
        ({"samples": np.zeros((10, 0), np.float32)}, "empty"),
        ({"samples": np.full((3, 20), np.nan, np.float32)}, "non-finite"),
        ({"valid": np.full((3, 20), np.inf)}, "non-finite"),
        ({"test": np.full((3, 20), 1e300)}, "non-finite"),
        ({"sigmas": [0.1, 0.0]}, "positive"),
        ({"sigmas": [-0.2]}, "positive"),
        ({"sigmas": [np.nan]}, "positive"),
        ({"sigmas": []}, "non-empty"),
    ],
)
def test_invalid_inputs_raise_value_error(small, kwargs, message):
    samples, valid, test = small
    args = {"samples": samples, "valid": valid, "test": test, "sigmas": None} | kwargs
    with pytest.raises(ValueError, match=message):
        parzen_log_likelihood(args["samples"], args["valid"], args["test"], args["sigmas"])


def test_stream_and_merge_misuse_raise(small):
    samples, valid, test = small
    with pytest.raises(ValueError, match="one-shot"):
        parzen_log_likelihood_stream((c for c in [samples]), valid, test)
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="same samples"):  # unseeded: pass 2 sees different samples
        parzen_log_likelihood_stream(lambda: [rng.random((50, 20), dtype=np.float32)], valid, test)
    with pytest.raises(ValueError, match="no samples"):
        parzen_log_likelihood_stream(list, valid, test)
    with pytest.raises(ValueError, match="mismatched d"):
        parzen_log_likelihood_stream([samples[:, :10]], valid, test)
    acc = ParzenAccumulator(valid, [0.1, 0.2])
    with pytest.raises(ValueError, match="no samples"):
        acc.log_likelihoods()
    with pytest.raises(ValueError, match="sigma grids differ"):
        acc.merge(ParzenAccumulator(valid, [0.1, 0.3]))
    with pytest.raises(ValueError, match="different points"):
        acc.merge(ParzenAccumulator(valid + 0.5, [0.1, 0.2]))


# -------------------------------------------------------------------------------------------- real MNIST
def test_real_mnist_table1_protocol(mnist):
    """10K training images as 'samples' (Theis et al. report 243 nats); figures checked by a float64 numpy
    reference: sigma 0.16681, mean 241.1929, stderr 2.1303."""
    samples, valid, test = mnist.train_x[:10000], mnist.valid_x[:1000], mnist.test_x
    assert test.shape == (10000, 784)
    res = parzen_log_likelihood(samples, valid, test)
    assert res.sigma == pytest.approx(0.1668, abs=1e-3)
    assert res.mean == pytest.approx(241.19, abs=0.05)
    assert res.stderr == pytest.approx(2.13, abs=0.01)
    assert int(np.argmax(res.valid_by_sigma)) == 2 and res.n_samples == 10000

    def chunks():  # uneven chunks, as a sampler would yield them
        for i in range(0, 10000, 3333):
            yield samples[i : i + 3333]

    streamed = parzen_log_likelihood_stream(chunks, valid, test)
    assert streamed.sigma == res.sigma
    assert abs(streamed.mean - res.mean) < 1e-3
    np.testing.assert_allclose(streamed.test_log_likelihoods, res.test_log_likelihoods, atol=1e-3)


@pytest.mark.parametrize(("n_shards", "workers", "tasks"), [(1000, 2, 63), (1000, 64, 256), (10, 2, 8), (3, 8, 3),
                                                         (1, 1, 1)])
def test_shard_ranges_cover_the_stream_in_small_balanced_tasks(n_shards, workers, tasks):
    """10M samples = 1000 shards: tasks of at most 16 shards (the progress bar moves every ~40 s), at least 4 per
    worker when there are enough shards, contiguous and covering every shard once."""
    from aae_tune.evaluate.parallel import MAX_SHARDS_PER_TASK, shard_ranges

    ranges = shard_ranges(n_shards, workers)
    assert ranges[0][0] == 0 and ranges[-1][1] == n_shards
    assert all(hi > lo for lo, hi in ranges) and all(a[1] == b[0] for a, b in zip(ranges, ranges[1:], strict=False))
    assert max(hi - lo for lo, hi in ranges) <= MAX_SHARDS_PER_TASK
    assert len(ranges) == tasks
