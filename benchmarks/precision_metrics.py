"""Does bf16 change the paper's metrics? The same space, seeds and epochs trained in fp32 and in bf16, side by side.

For each space: a trial's own config (the space's defaults, the given seed, ``--epochs``), trained on the real 50K
training images with the trainer the search uses, then scored with the space's validation metric (the
likelihood space's validation Parzen estimate, the semi-supervised spaces' validation error). Prints per seed both
figures and the seconds per epoch, then per precision mean ± std over the seeds: the seed-to-seed spread a
difference between fp32 and bf16 must stay within. Validation figures only.

    python benchmarks/precision_metrics.py --spaces likelihood_mnist semisupervised_mnist_100 --seeds 0 1 2 \\
        --epochs 4 --data-dir /work/shared/data/mnist
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from aae_tune.data import load_dataset  # noqa: E402
from aae_tune.evaluate.scores import validation_scores  # noqa: E402
from aae_tune.search.space import load_space  # noqa: E402
from aae_tune.train import Trainer  # noqa: E402


def trained_score(space_name: str, data, seed: int, epochs: int, precision: str) -> tuple[float, float]:
    """(the space's validation metric after ``epochs``, seconds per training epoch)."""
    space = load_space(space_name)
    cfg = space.experiment_config().replace(seed=seed, epochs=epochs, precision=precision)
    trainer = Trainer(cfg, data)
    start = time.perf_counter()
    for _ in range(epochs):
        trainer.train_epoch()
    seconds = (time.perf_counter() - start) / epochs
    scores = validation_scores(trainer.model, data, seed=seed, parzen_samples=space.evaluation.valid_samples)
    scores |= trainer.validation_recon_loss()
    return scores[space.metric], seconds


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--spaces", nargs="+", default=["likelihood_mnist", "semisupervised_mnist_100"])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--data-dir", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, {args.epochs} epochs, seeds {args.seeds}")
    rows = []
    for name in args.spaces:
        space = load_space(name)
        data = load_dataset(space.dataset.name, args.data_dir, **space.dataset.options())
        figures: dict[str, list[float]] = {"fp32": [], "bf16": []}
        for seed in args.seeds:
            for precision in figures:  # interleaved: background load hits both alike
                value, seconds = trained_score(name, data, seed, args.epochs, precision)
                figures[precision].append(value)
                print(f"{name} seed {seed} {precision}: {space.metric} {value:.3f} ({seconds:.1f} s/epoch)",
                      flush=True)
        rows.append((name, space.metric, figures))
    print(f"\n| space | metric after {args.epochs} epochs | fp32 (mean ± std) | bf16 (mean ± std) | bf16 - fp32 |")
    print("|---|---|---:|---:|---:|")
    for name, metric, figures in rows:
        cells = [f"{statistics.mean(v):.2f} ± {statistics.stdev(v) if len(v) > 1 else 0:.2f}"
                 for v in figures.values()]
        delta = statistics.mean(figures["bf16"]) - statistics.mean(figures["fp32"])
        print(f"| {name} | {metric} | {cells[0]} | {cells[1]} | {delta:+.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
