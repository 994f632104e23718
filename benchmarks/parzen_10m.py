"""The Ray-parallel Parzen protocol at the paper's 10-million-sample scale: wall time against its GEMM floor, the
peak memory of every process involved, and the speed-up of 2 Ray workers over 1.

    # Table 1 at 10M samples on a trained likelihood model (a local Ray, 2 workers of one thread each)
    python benchmarks/parzen_10m.py --model-uri models:/aae-likelihood_mnist/1 --tracking-uri sqlite:///mlflow.db
    # 1 worker against 2 on the local multi-node cluster (python -m aae_tune.cluster up)
    python benchmarks/parzen_10m.py --model-uri DIR --num-samples 200000 --workers 1 2 --address 127.0.0.1:PORT

What it runs is ``aae_tune.evaluate.parallel.parallel_parzen_run``, the code behind ``python -m aae_tune.evaluate``
(progress bar with ETA on stderr). Before the run it measures, with one
torch thread like each Ray task, the floor: the matrix multiplies of one shard alone (the decoder drawing it, the
Parzen GEMMs against the 1000 validation points and against the 10K test points, recorded by
gemm_floor.GemmRecorder and replayed), times shards, divided by workers. Memory: every 5 s (reading smaps costs
CPU: every 0.5 s took a quarter of a core) the proportional set size (PSS: shared pages split between the
processes that map them; plus RSS, which counts them in every process) of this process, its descendants (a local
Ray) and, with ``--address``, every process of the local cluster started by ``python -m aae_tune.cluster up``.
With ``--workers 1 2`` it also measures the ceiling the cores themselves put on that speed-up: one shard's GEMMs
replayed in one one-thread process alone, then in two at once.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np
import ray
import torch
from gemm_floor import GemmRecorder, concurrent_replay_seconds, replay_seconds

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from aae_tune.cluster.local import ClusterState, default_state_dir, marked_pids  # noqa: E402
from aae_tune.cluster.ray_session import start_ray  # noqa: E402
from aae_tune.data import load_mnist  # noqa: E402
from aae_tune.evaluate.parallel import DEFAULT_SHARD, generate_shard, parallel_parzen_run  # noqa: E402
from aae_tune.evaluate.parzen import ParzenAccumulator, default_sigmas  # noqa: E402
from aae_tune.model.io import load_model_from_uri  # noqa: E402

TARGET_OVER_FLOOR, TARGET_MEMORY_GB, TARGET_SPEEDUP = 1.3, 4.0, 1.8


# ---------------------------------------------------------------------------------------------- memory
def descendants(pid: int) -> set[int]:
    """pid and every process below it, from /proc/*/stat (field 4 is the parent)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = set(), [pid]
    while todo:
        p = todo.pop()
        found.add(p)
        todo += children.get(p, [])
    return found


def memory_kb(pid: int) -> tuple[int, int]:
    """(PSS, RSS) of one process in kB, from /proc/<pid>/smaps_rollup; (0, 0) once it is gone."""
    values = {}
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("Pss", "Rss"):
                values[key] = int(rest.split()[0])
    except OSError:
        return 0, 0
    return values.get("Pss", 0), values.get("Rss", 0)


class MemoryWatch(threading.Thread):
    """Peak of the summed PSS and RSS of the processes ``pids()`` names, sampled every ``every`` seconds."""

    def __init__(self, pids, every: float = 5.0) -> None:
        super().__init__(daemon=True)
        self.pids, self.every = pids, every
        self.peak_pss_gb = self.peak_rss_gb = 0.0
        self.processes = 0
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.wait(self.every):
            pids = self.pids()
            pss, rss = (sum(col) / 2**20 for col in zip(*(memory_kb(p) for p in pids), strict=True))
            if pss > self.peak_pss_gb:
                self.peak_pss_gb, self.processes = pss, len(pids)
            self.peak_rss_gb = max(self.peak_rss_gb, rss)

    def stop(self) -> None:
        self._done.set()
        self.join()


def watched_pids(address: str | None):
    marker = None
    if address:
        state = ClusterState.load(default_state_dir())
        marker = state.marker if state is not None else None
    return lambda: sorted(descendants(os.getpid()) | set(marked_pids(marker) if marker else []))


# ----------------------------------------------------------------------------------------------- floor
def shard_floor_seconds(model, valid: np.ndarray, test: np.ndarray, shard_size: int) -> tuple[dict[str, float], list]:
    """One thread: seconds of the matrix multiplies of one shard: drawing it, scoring it on valid (every sigma,
    one GEMM per block) and on test; and those multiplies (the draw twice), as one list."""
    torch.set_num_threads(1)
    with GemmRecorder() as draw:
        shard = generate_shard(model, 0, 0, shard_size)
    floors = {"draw (x2 passes)": 2 * replay_seconds(draw.gemms, repeats=3)}
    gemms = 2 * draw.gemms
    for name, points, sigmas in (("valid GEMM", valid, default_sigmas()), ("test GEMM", test, [1.0])):
        with GemmRecorder() as score:
            ParzenAccumulator(points, sigmas).add(shard)
        floors[name] = replay_seconds(score.gemms, repeats=3)
        gemms += score.gemms
    return floors, gemms


def two_process_ceiling(gemms: list) -> float:
    """The speed-up two one-thread processes can reach on this machine's cores: one shard's multiplies replayed in
    one process alone, then in two at once (2 x alone / the slower of the two)."""
    alone = concurrent_replay_seconds(gemms, processes=1)[0]
    together = concurrent_replay_seconds(gemms, processes=2)
    print(f"one shard's GEMMs, one process alone: {alone:.3f} s; two at once: "
          f"{', '.join(f'{t:.3f}' for t in together)} s", flush=True)
    return 2 * alone / max(together)


def run(model, valid, test, n_samples: int, workers: int, shard_size: int, address: str | None) -> dict:
    watch = MemoryWatch(watched_pids(address))
    watch.start()
    start = time.perf_counter()
    out = parallel_parzen_run(model, valid, test, n_samples=n_samples, seed=0, workers=workers,
                              shard_size=shard_size, progress=True)
    seconds = time.perf_counter() - start
    watch.stop()
    return {"seconds": seconds, "result": out.result, "nodes": len(out.nodes), "pss": watch.peak_pss_gb,
            "rss": watch.peak_rss_gb, "processes": watch.processes}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model-uri", required=True)
    p.add_argument("--tracking-uri", default=None)
    p.add_argument("--num-samples", type=int, default=10_000_000)
    p.add_argument("--workers", type=int, nargs="+", default=[2], help="one run per count, in this order")
    p.add_argument("--shard-size", type=int, default=DEFAULT_SHARD)
    p.add_argument("--address", default=None, help="a running Ray cluster (default: start a local one)")
    p.add_argument("--data-dir", default=None)
    args = p.parse_args(argv)
    model = load_model_from_uri(args.model_uri, tracking_uri=args.tracking_uri, device="cpu")
    data = load_mnist(args.data_dir)
    valid, test = data.valid_x[:1000], data.test_x
    floors, gemms = shard_floor_seconds(model, valid, test, args.shard_size)
    ceiling = two_process_ceiling(gemms) if {1, 2} <= set(args.workers) else None
    shards = math.ceil(args.num_samples / args.shard_size)
    per_shard = sum(floors.values())
    print(f"floor per shard of {args.shard_size} (1 thread): " +
          ", ".join(f"{k} {v:.3f} s" for k, v in floors.items()) + f"; x {shards} shards", flush=True)
    start_ray(args.address)
    runs = {}
    try:
        for workers in args.workers:
            runs[workers] = r = run(model, valid, test, args.num_samples, workers, args.shard_size, args.address)
            floor = per_shard * shards / workers
            res = r["result"]
            print(f"\nworkers {workers}: {r['seconds']:.1f} s, GEMM floor {floor:.1f} s, "
                  f"**{r['seconds'] / floor:.2f}x floor** (target <= {TARGET_OVER_FLOOR}); nodes used {r['nodes']}")
            print(f"  peak memory of {r['processes']} processes: PSS {r['pss']:.2f} GB (target <= "
                  f"{TARGET_MEMORY_GB}), RSS sum {r['rss']:.2f} GB")
            print(f"  test LL {res.mean:.2f} ± {res.stderr:.2f} nats at sigma {res.sigma:.4f} "
                  f"({res.n_samples} samples)", flush=True)
    finally:
        ray.shutdown()
    if 1 in runs and 2 in runs:
        print(f"\nspeed-up of 2 workers over 1: **{runs[1]['seconds'] / runs[2]['seconds']:.2f}x** "
              f"(target >= {TARGET_SPEEDUP}); the cores' own ceiling, the same GEMMs in 2 processes: {ceiling:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
