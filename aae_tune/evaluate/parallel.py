"""Table 1 Parzen evaluation of a trained model, parallel over a Ray cluster (``python -m aae_tune.evaluate``).

Protocol (Goodfellow et al. 2014, as in the AAE paper): N model samples, sigma picked from ``default_sigmas()`` by
the mean log-likelihood of the first 1000 validation images, then mean +- stderr of the 10K test images at it.

Scaling: samples are never materialised on the driver. The sample stream is cut into shards of ``shard_size``;
shard i is drawn from a generator seeded with ``seed * 1_000_003 + i``, so the stream does not depend on how many
workers there are. Each Ray task regenerates its contiguous range of shards, folds them into a
``ParzenAccumulator`` over its chunk of points and returns the small mergeable state ((S+1) x points float64);
the driver merges them in shard order (a stable log-sum-exp). ``workers`` tasks run at once, whatever the size of
the cluster. Memory per task: one shard plus the GEMM blocks; on the driver: the data and the states (at 10M
samples ~63 of ~160 kB per pass). The worker count only changes how float32 blocks are grouped: ~1e-7 nats.

Ray workers must be able to import ``aae_tune``: automatic for a local start from the repository; on a remote
cluster install the package on every node.
"""

from __future__ import annotations

import itertools
import math
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import ray
import torch

from aae_tune.evaluate.parzen import (
    ParzenAccumulator,
    ParzenResult,
    check_sigmas,
    make_result,
    parzen_log_likelihood_stream,
    select_sigma,
)
from aae_tune.evaluate.parzen import checksum as chunk_checksum
from aae_tune.model.aae import AdversarialAutoencoder
from aae_tune.model.inference import evaluating
from aae_tune.model.io import load_model_files, resolve_device, save_model_files

SEED_STRIDE = 1_000_003  # prime > any realistic shard count: (seed, shard) pairs never share a stream seed
DEFAULT_SHARD = 10_000
# Below this many points per task, splitting points costs more (every task regenerates its shards) than it gains.
MIN_POINTS_PER_TASK = 128
# Shard ranges per worker: more, smaller tasks than workers balance uneven nodes and let the progress bar move.
TASKS_PER_WORKER = 4
# At most this many shards per task: at 10M samples, 4 tasks per worker meant 125 shards, about 5 minutes per test-
# pass task on one thread, so the bar (which moves when a task returns) stood still for minutes. 16 shards is about
# 40 s; the cost per task (model bytes, a (S+1) x points state) is milliseconds.
MAX_SHARDS_PER_TASK = 16


# ------------------------------------------------------------------------------------------------ the stream
def shard_seed(seed: int, shard_index: int) -> int:
    return seed * SEED_STRIDE + shard_index


def generate_shard(model: AdversarialAutoencoder, seed: int, shard_index: int, size: int) -> torch.Tensor:
    """Shard ``shard_index`` of the sample stream: (size, data_dim) on the model's device.

    The prior is drawn from a CPU generator, so the codes are identical on any device and process; the model is
    run in eval mode (batch-norm running statistics: a sample must not depend on the shard it is in).
    """
    generator = torch.Generator().manual_seed(shard_seed(seed, shard_index))
    with evaluating(model):
        return model.sample(size, generator)


def _stream(
    model: AdversarialAutoencoder, seed: int, n_samples: int, shard_size: int, lo: int, hi: int
) -> Iterator[torch.Tensor]:
    """Shards [lo, hi) of the stream, one (<= shard_size, d) tensor at a time (only the last shard is short)."""
    for i in range(lo, hi):
        yield generate_shard(model, seed, i, min(shard_size, n_samples - i * shard_size))


def _split(n: int, parts: int) -> list[tuple[int, int]]:
    """``parts`` contiguous, near-equal [lo, hi) ranges covering range(n) (parts <= n)."""
    edges = [round(k * n / parts) for k in range(parts + 1)]
    return list(zip(edges[:-1], edges[1:], strict=True))


# -------------------------------------------------------------------------------------------- single process
def single_process_parzen(
    model: AdversarialAutoencoder,
    valid: np.ndarray | torch.Tensor,
    test: np.ndarray | torch.Tensor,
    *,
    n_samples: int,
    seed: int,
    shard_size: int = DEFAULT_SHARD,
    sigmas: np.ndarray | None = None,
) -> ParzenResult:
    """The reference: the same shard stream fed to ``parzen_log_likelihood_stream`` in this process."""
    _check_counts(n_samples, shard_size, 1)
    n_shards = math.ceil(n_samples / shard_size)
    stream = lambda: _stream(model, seed, n_samples, shard_size, 0, n_shards)  # noqa: E731 - replayed per pass
    return parzen_log_likelihood_stream(stream, valid, test, sigmas)


# ----------------------------------------------------------------------------------------------------- Ray
def _model_files(model: AdversarialAutoencoder) -> dict[str, bytes]:
    """The model as the bytes of config.json + model_state.pt: tasks rebuild it with a weights-only load."""
    with tempfile.TemporaryDirectory(prefix="aae_eval_") as tmp:
        return {path.name: path.read_bytes() for path in save_model_files(model, tmp)}


def _model_from_files(files: dict[str, bytes], device: str) -> AdversarialAutoencoder:
    with tempfile.TemporaryDirectory(prefix="aae_eval_") as tmp:
        for name, blob in files.items():
            (Path(tmp) / Path(name).name).write_bytes(blob)
        return load_model_files(tmp, device)


def task_gpu_fraction(cluster_gpus: float, workers: int) -> float:
    """GPU share per Parzen task: 0 without GPUs, else the cluster's GPUs split over the tasks (<= 1 each).

    Ray accepts 4 decimals of a resource, so the share is floored to 1e-4 (and never rounds down to 0).
    """
    if cluster_gpus <= 0:
        return 0.0
    return max(1e-4, math.floor(min(1.0, cluster_gpus / max(1, workers)) * 1e4) / 1e4)


def task_device() -> torch.device:
    """The device of a Parzen task: CUDA iff Ray gave it a GPU (Ray sets CUDA_VISIBLE_DEVICES per task)."""
    device = resolve_device(None)  # the trials' rule too: one GPU/CPU decision for the whole package
    if device.type == "cpu":
        torch.set_num_threads(1)  # one task per CPU: oversubscribed BLAS threads only slow everyone down
    return device


@ray.remote
def _score_task(
    files: dict[str, bytes], points: np.ndarray, p_lo: int, p_hi: int, sigmas: np.ndarray,
    seed: int, n_samples: int, shard_size: int, s_lo: int, s_hi: int,
) -> dict:
    """Shards [s_lo, s_hi) scored against points[p_lo:p_hi] at every sigma -> mergeable accumulator state."""
    device = task_device()
    model = _model_from_files(files, device)
    # The object-store array is read-only shared memory: copy just this task's chunk, (p_hi - p_lo, d).
    x = torch.tensor(points[p_lo:p_hi], dtype=torch.float32, device=device)
    acc = ParzenAccumulator(x, sigmas)  # device follows x
    count, checksum = 0, 0.0
    for chunk in _stream(model, seed, n_samples, shard_size, s_lo, s_hi):  # chunk: (shard, d), dropped after add
        acc.add(chunk)
        count += chunk.shape[0]
        checksum += chunk_checksum(chunk)
    node = ray.get_runtime_context().get_node_id()  # placement is visible: which nodes did the work
    return {"state": acc.state(), "count": count, "checksum": checksum, "node_id": node}


def _check_counts(n_samples: int, shard_size: int, workers: int) -> None:
    for name, value in (("n_samples", n_samples), ("shard_size", shard_size), ("workers", workers)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")


def _as_points(name: str, x: np.ndarray | torch.Tensor, dim: int) -> np.ndarray:
    arr = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] != dim:
        raise ValueError(f"{name} must have shape (n >= 1, {dim}), got {arr.shape}")
    return np.ascontiguousarray(arr, dtype=np.float32)


def shard_ranges(n_shards: int, workers: int) -> list[tuple[int, int]]:
    """The [lo, hi) shard ranges of one pass's tasks: at least TASKS_PER_WORKER per worker (balance), none longer
    than MAX_SHARDS_PER_TASK (a moving progress bar), never more ranges than shards."""
    n_ranges = max(TASKS_PER_WORKER * workers, math.ceil(n_shards / MAX_SHARDS_PER_TASK))
    return _split(n_shards, min(n_ranges, n_shards))


def _at_most(limit: int, specs: list[tuple], submit: Any, on_done: Any) -> list[dict]:
    """``submit(*spec)``'s results for every spec, in spec order, with at most ``limit`` tasks in flight: ``workers``
    is how many tasks run at once, whatever the size of the cluster. Each result (a small accumulator state) is
    passed to ``on_done`` as it arrives."""
    results: list[dict] = [{}] * len(specs)
    in_flight: dict[ray.ObjectRef, int] = {}
    queued = iter(enumerate(specs))
    for index, spec in itertools.islice(queued, limit):
        in_flight[submit(*spec)] = index
    while in_flight:
        (ref,), _ = ray.wait(list(in_flight), num_returns=1)
        index = in_flight.pop(ref)
        results[index] = ray.get(ref)
        on_done(results[index])
        for next_index, spec in itertools.islice(queued, 1):
            in_flight[submit(*spec)] = next_index
    return results


def _run_pass(
    files_ref: ray.ObjectRef, points: np.ndarray, points_ref: ray.ObjectRef, sigmas: np.ndarray, seed: int,
    n_samples: int, shard_size: int, workers: int, num_gpus: float, bar: Any,
) -> tuple[np.ndarray, int, float, list[str]]:
    """One pass: log-likelihoods (S, N) of all points, the number and checksum of the samples seen, and the node
    id of every task.

    Tasks = shard ranges x point chunks, at least ``TASKS_PER_WORKER * workers`` of them and none with more than
    ``MAX_SHARDS_PER_TASK`` shards: shard ranges first (no duplicated generation), point chunks only when there are
    fewer shards than workers. ``bar`` counts the samples scored (a tqdm bar).
    """
    ranges = shard_ranges(math.ceil(n_samples / shard_size), workers)
    n_chunks = max(1, min(math.ceil(workers / len(ranges)), len(points) // MIN_POINTS_PER_TASK))
    chunks = _split(len(points), n_chunks)
    task = _score_task.options(num_cpus=1, num_gpus=num_gpus)
    specs = [(p_lo, p_hi, s_lo, s_hi) for p_lo, p_hi in chunks for s_lo, s_hi in ranges]
    outs = _at_most(
        workers, specs,
        lambda p_lo, p_hi, s_lo, s_hi: task.remote(files_ref, points_ref, p_lo, p_hi, sigmas, seed, n_samples,
                                                   shard_size, s_lo, s_hi),
        on_done=lambda out: bar.update(out["count"] / len(chunks)),
    )
    ll, count, checksum, nodes = [], 0, 0.0, []
    for k, (p_lo, p_hi) in enumerate(chunks):
        merged: ParzenAccumulator | None = None
        chunk_count, chunk_sum = 0, 0.0
        for out in outs[k * len(ranges) : (k + 1) * len(ranges)]:  # in shard order: deterministic
            state = {key: np.array(value) for key, value in out["state"].items()}  # writable copies, (S+1) x N
            part = ParzenAccumulator.from_state(points[p_lo:p_hi], state)
            if merged is None:
                merged = part
            else:
                merged.merge(part)
            chunk_count += out["count"]
            chunk_sum += out["checksum"]
            nodes.append(out["node_id"])
        ll.append(merged.log_likelihoods())  # (S, p_hi - p_lo)
        if k == 0:
            count, checksum = chunk_count, chunk_sum
        elif chunk_count != count or not math.isclose(chunk_sum, checksum, rel_tol=1e-6, abs_tol=1e-3):
            raise RuntimeError("point chunks saw different samples: sample generation is not deterministic")
    return np.concatenate(ll, axis=1), count, checksum, nodes


@dataclass(frozen=True)
class ParallelParzenRun:
    """A ``parallel_parzen`` result plus where its tasks ran."""

    result: ParzenResult
    task_nodes: list[str]  # Ray node id of every task, both passes, in submission order

    @property
    def nodes(self) -> list[str]:
        """Distinct node ids, sorted."""
        return sorted(set(self.task_nodes))


def parallel_parzen(
    model: AdversarialAutoencoder, valid: np.ndarray | torch.Tensor, test: np.ndarray | torch.Tensor, **options: Any
) -> ParzenResult:
    """The Parzen protocol over a running Ray cluster; equals ``single_process_parzen`` up to float32 rounding.

    valid (N_v, d) picks sigma (pass 1, every sigma), test (N_t, d) is scored at it (pass 2). ``workers``
    defaults to the cluster's CPU count; each task takes 1 CPU and, if the cluster has GPUs, a GPU fraction.
    ``options`` are those of ``parallel_parzen_run`` (n_samples, seed, workers, shard_size, sigmas), which does the
    same and also says which Ray nodes ran the tasks.
    """
    return parallel_parzen_run(model, valid, test, **options).result


def parallel_parzen_run(
    model: AdversarialAutoencoder,
    valid: np.ndarray | torch.Tensor,
    test: np.ndarray | torch.Tensor,
    *,
    n_samples: int = 10_000,
    seed: int = 0,
    workers: int | None = None,
    shard_size: int = DEFAULT_SHARD,
    sigmas: np.ndarray | None = None,
    progress: bool = False,
) -> ParallelParzenRun:
    """``parallel_parzen`` plus the node id of every task (see ``ParallelParzenRun``). ``progress``: a bar with an
    ETA on stderr, counting the samples scored in both passes."""
    from tqdm.auto import tqdm

    if not ray.is_initialized():
        raise RuntimeError("parallel_parzen needs a running Ray: call ray.init(...) first (or use the CLI)")
    resources = ray.cluster_resources()
    workers = max(1, int(resources.get("CPU", 1))) if workers is None else workers
    _check_counts(n_samples, shard_size, workers)
    sig = check_sigmas(sigmas)
    v = _as_points("valid", valid, model.data_dim)
    t = _as_points("test", test, model.data_dim)
    num_gpus = task_gpu_fraction(float(resources.get("GPU", 0)), workers)

    files_ref, valid_ref, test_ref = ray.put(_model_files(model)), ray.put(v), ray.put(t)  # once; tasks map them
    bar = tqdm(total=2 * n_samples, unit="sample", unit_scale=True, desc="Parzen (sigma on valid, then test)",
               disable=not progress, mininterval=1.0)
    stream = {"seed": seed, "n_samples": n_samples, "shard_size": shard_size, "workers": workers, "num_gpus": num_gpus,
              "bar": bar}
    try:
        valid_ll, count_v, sum_v, nodes_v = _run_pass(files_ref, v, valid_ref, sig, **stream)
        best, valid_by_sigma = select_sigma(valid_ll, sig)
        test_ll, count_t, sum_t, nodes_t = _run_pass(files_ref, t, test_ref, sig[best : best + 1], **stream)
    finally:
        bar.close()
        del files_ref, valid_ref, test_ref  # release the object-store copies
    if count_v != n_samples or count_t != n_samples or not math.isclose(sum_v, sum_t, rel_tol=1e-6, abs_tol=1e-3):
        raise RuntimeError("the two passes saw different samples: sample generation is not deterministic")
    result = make_result(sig, valid_by_sigma, best, test_ll[0], n_samples)
    return ParallelParzenRun(result=result, task_nodes=nodes_v + nodes_t)
