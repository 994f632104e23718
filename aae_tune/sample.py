"""Draw samples from a trained model and save them as a PNG grid.

    python -m aae_tune.sample --model-uri URI --n 100 --out grid.png [--seed 0] [--tracking-uri URI]

URI forms (the same as ``python -m aae_tune.evaluate``): ``models:/name/version``, ``runs:/<run_id>/path``, any other
MLflow artifact URI, or a local model / checkpoint directory (see ``aae_tune.model.io``).
"""

from __future__ import annotations

import argparse
import sys

from aae_tune.errors import fail


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m aae_tune.sample", description="Save a PNG grid of model samples.")
    p.add_argument("--model-uri", required=True, help="models:/name/version, runs:/<run_id>/path, or a local dir")
    p.add_argument("--n", type=int, default=100, help="number of samples (default 100: a 10x10 grid)")
    p.add_argument("--out", required=True, help="output PNG path")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tracking-uri", default=None, help="MLflow tracking (and registry) URI for models:/ runs:/")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.n < 1:
        return fail(f"--n must be >= 1, got {args.n}")
    if args.seed < 0:
        return fail(f"--seed must be >= 0, got {args.seed}")
    if not args.out.lower().endswith(".png"):
        return fail(f"--out must be a .png path, got {args.out}")
    # Imported after the argument checks: a typo fails before torch loads.
    from aae_tune.model.io import load_model_from_uri

    try:
        model = load_model_from_uri(args.model_uri, tracking_uri=args.tracking_uri)
    except ValueError as exc:  # ModelURIError / CheckpointError: the message is the whole story
        return fail(str(exc))

    from aae_tune.figures.sets import samples_png  # matplotlib: only once there is something to draw

    print(samples_png(model, args.out, n=args.n, seed=args.seed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
