"""``aae-tune`` command line: ``aae-tune train ...`` trains one experiment config and scores it (Table 1);
``aae-tune spaces`` lists the shipped search spaces; search / evaluate / sample / cluster are delegated.

Config problems are reported all at once, before any data is read or any model built (exit code 2).
"""

from __future__ import annotations

import argparse
import copy
import importlib
import json
import sys
import time
from pathlib import Path
from typing import Any

from aae_tune.config import SMOKE_OVERRIDES, load_experiment_config
from aae_tune.errors import CheckpointError, ConfigError, DataError, TrainingDiverged, fail

SMOKE_PARZEN_SAMPLES = 1000


def add_train_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train one AAE config and report the paper's figure for it")
    p.add_argument("--config", help="experiment config YAML (keys of aae_tune.config.ExperimentConfig)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field, e.g. --set code_dim=8 --set optim.reconstruction.lr=0.01")
    p.add_argument("--epochs", type=int, help="epochs to train (default: the config's)")
    p.add_argument("--seed", type=int, help="seed for init, data order, noise and samples")
    p.add_argument("--data-dir", help="folder with the MNIST IDX files (default: AAE_TUNE_DATA_DIR, cache, download)")
    p.add_argument("--device", default="auto", help="auto (CUDA if visible), cpu or cuda[:N]")
    p.add_argument("--out", default="aae_runs/train", help="checkpoint + metrics folder")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out")
    p.add_argument("--parzen-samples", type=int, default=10_000, help="model samples for the Table 1 estimate")
    p.add_argument("--smoke", action="store_true", help="tiny nets, 1 epoch, 1000 samples: an end-to-end check")


def run_train(args: argparse.Namespace) -> int:
    extra = copy.deepcopy(SMOKE_OVERRIDES) if args.smoke else {}
    for key in ("epochs", "seed"):
        if getattr(args, key) is not None:
            extra[key] = getattr(args, key)
    cfg = load_experiment_config(args.config, args.overrides, extra)
    n_samples = SMOKE_PARZEN_SAMPLES if args.smoke else args.parzen_samples
    if n_samples < 1:
        raise ConfigError([f"--parzen-samples must be >= 1, got {n_samples}"], "command line")

    # Imported late: config errors above must not wait for torch to load.
    from aae_tune.data import load_mnist
    from aae_tune.evaluate.scores import describe_test_scores, test_scores, validation_scores
    from aae_tune.train import train

    data = load_mnist(args.data_dir)
    print(f"data: {data.source}: train {len(data.train_x)}, valid {len(data.valid_x)}, test {len(data.test_x)}")
    out = Path(args.out)

    def report(epoch: int, m: dict[str, float], _trainer: Any) -> None:
        print(f"epoch {epoch:4d}/{cfg.epochs}  recon {m['recon_loss']:8.3f}  valid recon {m['valid_recon_loss']:8.3f}"
              f"  D loss {m['disc_loss']:.3f}  D acc {m['disc_accuracy']:.3f}  G loss {m['gen_loss']:.3f}"
              f"  {m['epoch_time_s']:.1f}s", flush=True)

    start = time.perf_counter()
    trainer = train(cfg, data, device=args.device, callback=report, checkpoint_dir=out, resume=args.resume)
    scores = {**validation_scores(trainer.model, data, seed=cfg.seed),
              **test_scores(trainer.model, data, parzen_samples=n_samples, seed=cfg.seed)}
    summary = {**scores, "epochs": trainer.epoch, "seconds": time.perf_counter() - start, "data": data.source,
               "config": cfg.to_dict()}
    (out / "metrics.json").write_text(json.dumps(summary, indent=2))
    print("\n".join(describe_test_scores(scores)) + f"\ncheckpoint and metrics.json in {out}")
    return 0


def run_spaces(_args: argparse.Namespace) -> int:
    """The shipped search spaces with their one-line descriptions (torch-free: reads the YAML files only)."""
    from aae_tune.search.space import SPACES_DIR, available_spaces, load_space

    names = available_spaces()
    width = max(map(len, names))
    for name in names:
        space = load_space(name)
        print(f"{name:<{width}}  {space.description}  [{space.metric}, {space.mode}]")
    print(f"\n{len(names)} spaces in {SPACES_DIR}; run one with: aae-tune search --space NAME "
          "(or --space path/to/own.yaml)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aae-tune", description="Adversarial autoencoders (Makhzani et al., 2015): train one config and score it "
        "(aae-tune train), list the shipped search spaces (aae-tune spaces), or search, evaluate, sample and run a "
        "local cluster (each has its own --help).")
    sub = parser.add_subparsers(dest="command", required=True)
    add_train_parser(sub)
    sub.add_parser("spaces", help="list the shipped search spaces")
    for name in DELEGATED:
        sub.add_parser(name, help=f"see python -m aae_tune.{name} --help", add_help=False)
    return parser


# Subcommands that own their argument parsing: ``aae-tune search ...`` == ``python -m aae_tune.search ...``.
DELEGATED = {"search": "aae_tune.search.cli", "evaluate": "aae_tune.evaluate.cli", "sample": "aae_tune.sample",
             "cluster": "aae_tune.cluster.cli"}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in DELEGATED:
        return importlib.import_module(DELEGATED[argv[0]]).main(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        return {"train": run_train, "spaces": run_spaces}[args.command](args)
    except (ConfigError, DataError, CheckpointError) as exc:
        return fail(str(exc))
    except TrainingDiverged as exc:
        return fail(f"training diverged: {exc}", code=3)


if __name__ == "__main__":
    sys.exit(main())
