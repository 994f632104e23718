"""Seconds per epoch of every shipped space at its defaults, against the matrix-multiply rate of its own shapes.

For each space (real MNIST, 50K training images; SVHN spaces are skipped unless their data is found):

* **step**: seconds per mini-batch of the trainer's own loop (``Trainer.train_epoch`` on the first
  ``--steps`` x batch_size training images, timed after a warm-up pass of the same size; the epoch's own
  validation reconstruction error is timed apart and subtracted);
* **floor**: the same step's matrix multiplies alone. A ``TorchDispatchMode`` records every ``mm`` / ``addmm`` of
  one step (shapes, strides, dtype, so transposed backward operands are replayed as they are); the benchmark replays
  that list on fresh tensors. ``floor / step`` is the fraction of the machine's matrix rate the loop achieves;
* **epoch**: step x batches per epoch + the validation scoring a trial does per epoch (the space's
  ``validation_scores`` divided by its ``every_epochs``, plus the epoch's validation reconstruction error);
* **GFLOP/epoch**: 2·m·n·k summed over the recorded multiplies, times batches per epoch;
* what separates step from floor: **GEMMs in the loop** (the same multiplies' time inside one profiled epoch,
  ``torch.profiler`` self time) and **optimizer updates** (the step's ``optimizer.step()`` calls alone, re-applying
  the last gradients).

Step, floor and updates are timed in ``--rounds`` interleaved rounds and their medians reported: this machine's
speed drifts by up to ~20 % between minutes, and interleaving makes the drift hit all three alike.

``--precision fp32 bf16`` measures both, side by side, each against the floor of its own dtype, and prints the
bf16 speed-up per space.

    python benchmarks/epoch_throughput.py --data-dir /work/shared/data/mnist
    python benchmarks/epoch_throughput.py --spaces likelihood_mnist clustering_mnist_16 --precision fp32 bf16
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from gemm_floor import GemmRecorder, prepared, replay_seconds_of

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from aae_tune.data import load_dataset  # noqa: E402
from aae_tune.data.splits import DataSplits  # noqa: E402
from aae_tune.errors import DataError  # noqa: E402
from aae_tune.evaluate.scores import validation_scores  # noqa: E402
from aae_tune.search.space import available_spaces, load_space  # noqa: E402
from aae_tune.train import Trainer  # noqa: E402

TARGET_FRACTION = 0.80
EPOCH_IMAGES = 50_000


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


@dataclass(frozen=True)
class Measurement:
    space: str
    precision: str
    step_s: float
    floor_s: float
    optim_s: float  # the step's optimizer updates alone
    gemm_loop_s: float  # the step's multiplies as timed inside the loop (profiler)
    gflop_per_step: float
    eval_s: float  # validation scoring per epoch (epoch's recon error + the space's score / every_epochs)
    batches: int

    @property
    def epoch_s(self) -> float:
        return self.step_s * self.batches + self.eval_s

    @property
    def fraction(self) -> float:
        return self.floor_s / self.step_s


def gemm_seconds(fn) -> float:
    """Seconds the multiplies of ``fn()`` take where they run (``torch.profiler``'s self time of mm / addmm): the
    same GEMMs as the floor's, but in the loop's cache and thread state."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        fn()
    return sum(e.self_cpu_time_total for e in prof.key_averages() if e.key in ("aten::mm", "aten::addmm")) / 1e6


def measure(name: str, data: DataSplits, precision: str, steps: int, rounds: int) -> Measurement:
    space = load_space(name)
    cfg = space.experiment_config().replace(precision=precision)
    bs = cfg.batch_size
    part = data.head(steps * bs)
    trainer = Trainer(cfg, part)
    trainer.train_epoch()  # warm-up: allocator, kernels, lazily built state
    recorder = GemmRecorder()
    with recorder:
        Trainer(cfg, data.head(bs)).train_epoch()  # one step (and its epoch-end validation error)
    step_gemms = recorder.gemms
    with GemmRecorder() as scoring:
        trainer.validation_recon_loss()
    step_gemms = step_gemms[: len(step_gemms) - len(scoring.gemms)]  # the step's multiplies only
    operands = prepared(step_gemms)
    # The step's optimizer updates alone (they re-apply the last gradients): memory-bound work the GEMM floor
    # leaves out. Each round times the loop, then the floor, then the updates, so that the machine's drift
    # (a shared host: +-20 % between minutes) hits all three alike; the medians over rounds are reported.
    optimizers = list(trainer.optimizers.values())
    eval_s, step_s, floor_s, optim_s = [], [], [], []
    for _ in range(rounds):
        eval_s.append(timed(trainer.evaluate))
        step_s.append((timed(trainer.train_epoch) - eval_s[-1]) / steps)
        floor_s.append(replay_seconds_of(operands, repeats=max(5, steps // 2)))
        optim_s.append(statistics.median(timed(lambda: [o.step() for o in optimizers]) for _ in range(10)))
    gemm_loop_s = (gemm_seconds(trainer.train_epoch) - gemm_seconds(trainer.evaluate)) / steps
    every = space.evaluation.every_epochs
    score_s = timed(lambda: validation_scores(trainer.model, data, seed=0,
                                              parzen_samples=space.evaluation.valid_samples))
    return Measurement(name, precision, statistics.median(step_s), statistics.median(floor_s),
                       statistics.median(optim_s), gemm_loop_s, sum(g.flops for g in step_gemms) / 1e9,
                       statistics.median(eval_s) + score_s / every, EPOCH_IMAGES // bs)


def print_table(rows: list[Measurement]) -> None:
    print("\n| space | precision | s/epoch | step ms | GFLOP/epoch | GFLOP/s | matmul floor ms | floor/step "
          "| GEMMs in the loop ms | optimizer updates ms | (floor + updates)/step | validation s/epoch (share) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        flag = "" if r.fraction >= TARGET_FRACTION else " (below 0.80)"
        print(f"| {r.space} | {r.precision} | {r.epoch_s:.1f} | {1e3 * r.step_s:.1f} | "
              f"{r.gflop_per_step * r.batches:.0f} | {r.gflop_per_step / r.step_s:.0f} | {1e3 * r.floor_s:.1f} | "
              f"**{r.fraction:.2f}**{flag} | {1e3 * r.gemm_loop_s:.1f} | {1e3 * r.optim_s:.1f} | "
              f"{(r.floor_s + r.optim_s) / r.step_s:.2f} | "
              f"{r.eval_s:.2f} ({r.eval_s / r.epoch_s:.1%}) |")
    by_space: dict[str, dict[str, Measurement]] = {}
    for r in rows:
        by_space.setdefault(r.space, {})[r.precision] = r
    pairs = {s: m for s, m in by_space.items() if {"fp32", "bf16"} <= set(m)}
    if pairs:
        print("\n| space | fp32 s/epoch | bf16 s/epoch | bf16 speed-up |")
        print("|---|---:|---:|---:|")
        for space, m in pairs.items():
            print(f"| {space} | {m['fp32'].epoch_s:.1f} | {m['bf16'].epoch_s:.1f} | "
                  f"**{m['fp32'].epoch_s / m['bf16'].epoch_s:.2f}x** |")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--spaces", nargs="+", default=None, help="shipped space names (default: all)")
    p.add_argument("--precision", nargs="+", default=["fp32"], choices=["fp32", "bf16"])
    p.add_argument("--steps", type=int, default=40, help="timed mini-batches per space and precision")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds of loop, floor and updates (medians)")
    p.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads (a trial's CPUs)")
    p.add_argument("--data-dir", default=None, help="MNIST IDX folder (default: $AAE_TUNE_DATA_DIR, cache, ...)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, {args.steps} timed steps per space and precision")
    datasets: dict[str, DataSplits] = {}
    rows = []
    for name in args.spaces or available_spaces():
        dataset = load_space(name).dataset
        try:
            if dataset.name not in datasets:
                datasets[dataset.name] = load_dataset(dataset.name, args.data_dir if dataset.name == "mnist"
                                                      else None, **dataset.options())
        except DataError as exc:
            print(f"{name}: skipped ({str(exc).splitlines()[0]})", flush=True)
            continue
        for precision in args.precision:
            rows.append(measure(name, datasets[dataset.name], precision, args.steps, args.rounds))
            r = rows[-1]
            print(f"{name} {precision}: {r.epoch_s:.1f} s/epoch, floor/step {r.fraction:.2f}", flush=True)
    print_table(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
