"""``python -m aae_tune.evaluate``: Table 1 Parzen evaluation of a trained model, parallel over a Ray cluster.

    python -m aae_tune.evaluate --model-uri URI [--num-samples 10000] [--workers W] [--seed 0] [--data-dir DIR]
                                [--address ADDR] [--tracking-uri URI] [--shard-size N]

The protocol and how it is spread over Ray tasks: ``aae_tune.evaluate.parallel``. Ray workers must be able to
import ``aae_tune``: automatic for a local start; on a remote cluster install the package on every node.
"""

from __future__ import annotations

import argparse
import sys
import time

import ray

from aae_tune.cluster.ray_session import start_ray
from aae_tune.data import load_mnist
from aae_tune.errors import fail
from aae_tune.evaluate.parallel import DEFAULT_SHARD, parallel_parzen
from aae_tune.model.io import load_model_from_uri


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m aae_tune.evaluate", description=__doc__.splitlines()[0])
    p.add_argument("--model-uri", required=True, help="models:/name/version, runs:/<run_id>/path, or a local dir")
    p.add_argument("--num-samples", type=int, default=10_000, help="model samples N (paper: 10000)")
    p.add_argument("--workers", type=int, default=None,
                   help="tasks running at once, one CPU each (default: CPUs in the cluster)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sample stream")
    p.add_argument("--data-dir", default=None, help="folder with the MNIST IDX files (default: see load_mnist)")
    p.add_argument("--address", default=None, help="Ray cluster to join (default: start a local one)")
    p.add_argument("--tracking-uri", default=None, help="MLflow tracking (and registry) URI for models:/ runs:/")
    p.add_argument("--shard-size", type=int, default=DEFAULT_SHARD, help="samples generated per shard")
    p.add_argument("--valid-points", type=int, default=1000, help="validation images for sigma (paper: 1000)")
    p.add_argument("--test-points", type=int, default=None, help="test image cap for quick checks (default: all)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Every input check before Ray starts: a bad call fails in a second with one line.
    for flag, value in (("--num-samples", args.num_samples), ("--shard-size", args.shard_size),
                        ("--workers", args.workers), ("--valid-points", args.valid_points),
                        ("--test-points", args.test_points)):
        if value is not None and value < 1:
            return fail(f"{flag} must be >= 1, got {value}")
    if args.seed < 0:
        return fail(f"--seed must be >= 0, got {args.seed}")
    try:
        model = load_model_from_uri(args.model_uri, tracking_uri=args.tracking_uri, device="cpu")
        data = load_mnist(args.data_dir)  # DataError is a ValueError too
    except ValueError as exc:
        return fail(str(exc))
    valid, test = data.valid_x[: args.valid_points], data.test_x[: args.test_points]

    try:
        start_ray(args.address)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        return fail(f"cannot {'connect to Ray at ' + args.address if args.address else 'start Ray'}: {exc}")
    try:
        workers = args.workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
        start = time.perf_counter()
        result = parallel_parzen(model, valid, test, n_samples=args.num_samples, seed=args.seed, workers=workers,
                                 shard_size=args.shard_size, progress=True)
        seconds = time.perf_counter() - start
    finally:
        ray.shutdown()

    print(f"model: {args.model_uri}")
    print(f"samples: {result.n_samples} (seed {args.seed}, shards of {args.shard_size}), workers: {workers}")
    print(f"validation points: {len(valid)}, test points: {len(test)}")
    print("sigma     mean valid LL")
    for s, ll in zip(result.sigmas, result.valid_by_sigma, strict=True):
        print(f"{s:.4f}  {ll:12.2f}{'  <- chosen' if s == result.sigma else ''}")
    print(f"sigma: {result.sigma:.4f}")
    print(f"test LL: {result.mean:.2f} ± {result.stderr:.2f} nats")
    print(f"seconds: {seconds:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
