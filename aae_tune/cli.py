"""``aae-tune`` command line: ``aae-tune train ...`` trains one experiment config and scores it (Table 1).

Config problems are reported all at once, before any data is read or any model built (exit code 2).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from aae_tune.config import SMOKE_OVERRIDES, ExperimentConfig
from aae_tune.schema import ConfigError, set_path

SMOKE_PARZEN_SAMPLES = 1000


def parse_overrides(pairs: list[str]) -> list[tuple[str, Any]]:
    """``key.sub=value`` strings -> (dotted key, YAML-parsed value); malformed pairs raise ConfigError."""
    out, problems = [], []
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            problems.append(f"--set {pair!r}: expected key=value, e.g. --set optim.reconstruction.lr=0.01")
            continue
        try:
            out.append((key.strip(), yaml.safe_load(raw)))
        except yaml.YAMLError as exc:
            problems.append(f"--set {pair!r}: value is not valid YAML ({exc.__class__.__name__})")
    if problems:
        raise ConfigError(problems, "command line")
    return out


def load_experiment_config(
    path: str | None, overrides: list[str], extra: dict[str, Any] | None = None
) -> ExperimentConfig:
    """YAML file (optional) + built-in extras + ``--set`` overrides, validated in one go."""
    data: dict[str, Any] = {}
    source = "defaults"
    if path:
        source = path
        try:
            loaded = yaml.safe_load(Path(path).read_text())
        except OSError as exc:
            raise ConfigError([f"cannot read {path}: {exc.strerror}"], path) from exc
        except yaml.YAMLError as exc:
            raise ConfigError([f"not valid YAML: {exc}"], path) from exc
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError([f"top level must be a mapping of config keys, got {type(loaded).__name__}"], path)
        data = loaded or {}
    for key, value in (extra or {}).items():
        data[key] = value if not isinstance(value, dict) else {**data.get(key, {}), **value}
    for key, value in parse_overrides(overrides):
        set_path(data, key, value)
    return ExperimentConfig.from_dict(data, source=f"{source} (with overrides)" if overrides else source)


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
    scores, line = final_scores(trainer.model, data, n_samples, cfg.seed)
    summary = {**scores, "epochs": trainer.epoch, "seconds": time.perf_counter() - start, "data": data.source,
               "config": cfg.to_dict()}
    (out / "metrics.json").write_text(json.dumps(summary, indent=2))
    print(f"{line}\ncheckpoint and metrics.json in {out}")
    return 0


def final_scores(model: Any, data: Any, n_samples: int, seed: int) -> tuple[dict[str, Any], str]:
    """The paper's figure for a trained model: Table 1's Parzen estimate for the likelihood model, the
    experiment's validation and test metrics (aae_tune.scores) for the others."""
    from aae_tune.metrics import table1_parzen
    from aae_tune.scores import score_kind, test_scores, validation_scores

    if score_kind(model.cfg) != "parzen":
        scores = {**validation_scores(model, data, seed=seed), **test_scores(model, data)}
        return scores, "  ".join(f"{k} {v:.4g}" for k, v in scores.items())
    result = table1_parzen(model, data, n_samples=n_samples, seed=seed)
    scores = {"parzen_test_ll": result.mean, "parzen_test_se": result.stderr, "parzen_sigma": result.sigma,
              "parzen_samples": n_samples}
    return scores, (f"Parzen log-likelihood (test, {n_samples} samples, sigma {result.sigma:.4f} chosen on "
                    f"validation): {result.mean:.2f} ± {result.stderr:.2f}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aae-tune", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    add_train_parser(sub)
    for name, module in DELEGATED.items():
        sub.add_parser(name, help=f"see python -m {module} --help", add_help=False)
    return parser


# Subcommands that own their argument parsing: ``aae-tune search ...`` == ``python -m aae_tune.search ...``.
DELEGATED = {"search": "aae_tune.search", "evaluate": "aae_tune.evaluate", "sample": "aae_tune.sample"}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in DELEGATED:
        import importlib

        return importlib.import_module(DELEGATED[argv[0]]).main(argv[1:])
    args = build_parser().parse_args(argv)
    from aae_tune.data import DataError
    from aae_tune.errors import CheckpointError, TrainingDiverged, fail

    try:
        return {"train": run_train}[args.command](args)
    except (ConfigError, DataError, CheckpointError) as exc:
        return fail(str(exc))
    except TrainingDiverged as exc:
        return fail(f"training diverged: {exc}", code=3)


if __name__ == "__main__":
    sys.exit(main())
