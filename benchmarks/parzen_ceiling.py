"""Where a likelihood model's Table 1 figure is lost, and which per-epoch estimate ranks models like the protocol.

    python benchmarks/parzen_ceiling.py --tracking-uri sqlite:////work/bench_runs_i11/mlflow.db \
        --model-uri models:/aae-likelihood_mnist/2 models:/aae-likelihood_mnist/7 --data-dir /work/shared/data/mnist
    # which per-epoch estimate ranks trained models like the protocol's own validation figure
    python benchmarks/parzen_ceiling.py --tracking-uri ... --model-uri URI URI URI ... --estimate-samples 2000 10000

Per model, the Table 1 protocol (sigma on the first 1000 validation images, all test images scored) applied to
three sets of ``--n`` images: the model's samples (its figure), its reconstructions of the first ``--n`` training
images (what its samples would score if q(z) matched the prior exactly: the decoder's ceiling) and those training
images themselves (the data's own score). With ``--estimate-samples``, also the per-epoch validation estimate
(``validation_parzen``: sigma on valid[1000:2000], valid[0:1000] scored) at each count, mean and std over
``--estimate-seeds`` sample seeds, and with 3 or more models the Spearman correlation of each count's estimate with
the protocol's validation figure (10K samples, valid[0:1000] at the chosen sigma). Validation and training images
choose nothing here; the test figures are reported only.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from aae_tune.data import load_mnist  # noqa: E402
from aae_tune.evaluate.parzen import parzen_log_likelihood  # noqa: E402
from aae_tune.evaluate.scores import SIGMA_SELECTION_POINTS, validation_parzen  # noqa: E402
from aae_tune.model.inference import draw_samples, model_outputs  # noqa: E402
from aae_tune.model.io import load_model_from_uri  # noqa: E402


def ceiling_row(model, data, n: int, seed: int) -> dict[str, float]:
    """The protocol on the model's samples, its reconstructions of n training images and those images."""
    valid, test, train = data.valid_x[:SIGMA_SELECTION_POINTS], data.test_x, data.train_x[:n]
    recon = model_outputs(model, train, "reconstruct")  # the encoder's mean code: no randomness
    sets = {"samples": draw_samples(model, n, seed), "reconstructions": recon, "training images": train}
    results = {name: parzen_log_likelihood(np.asarray(x, np.float32), valid, test) for name, x in sets.items()}
    row = {name: r.mean for name, r in results.items()}
    row["protocol valid"] = float(results["samples"].valid_by_sigma.max())
    return row


def estimate(model, data, n_samples: int, seeds: int) -> tuple[float, float]:
    values = [validation_parzen(model, data, n_samples=n_samples, seed=s).mean for s in range(seeds)]
    return float(np.mean(values)), float(np.std(values, ddof=1)) if seeds > 1 else 0.0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model-uri", nargs="+", required=True, help="model directories or MLflow model URIs")
    p.add_argument("--tracking-uri", default=None)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--n", type=int, default=10_000, help="images per set (Table 1: 10000 samples)")
    p.add_argument("--estimate-samples", type=int, nargs="*", default=[], metavar="N")
    p.add_argument("--estimate-seeds", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    data = load_mnist(args.data_dir)

    print("| model | protocol's validation figure | test: samples | test: reconstructions of training images | "
          "test: training images |" + "".join(f" estimate, {n} samples |" for n in args.estimate_samples))
    print("|---" * (5 + len(args.estimate_samples)) + "|")
    refs, estimates = [], {n: [] for n in args.estimate_samples}
    for uri in args.model_uri:  # one model in memory at a time
        model = load_model_from_uri(uri, args.tracking_uri, device="cpu")
        row = ceiling_row(model, data, args.n, args.seed)
        refs.append(row["protocol valid"])
        cells = []
        for n in args.estimate_samples:
            mean, std = estimate(model, data, n, args.estimate_seeds)
            estimates[n].append(mean)
            cells.append(f" {mean:.2f} ± {std:.2f} |")
        print(f"| {uri} | {row['protocol valid']:.2f} | {row['samples']:.2f} | {row['reconstructions']:.2f} | "
              f"{row['training images']:.2f} |" + "".join(cells), flush=True)
    if len(args.model_uri) >= 3:
        for n, values in estimates.items():
            print(f"Spearman of the {n}-sample estimate with the protocol's validation figure: "
                  f"{spearmanr(refs, values)[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
