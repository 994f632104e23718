"""One reduced-budget real job per MNIST experiment of the paper, through the product, writing RESULTS.md.

Each job is a one-trial search of a shipped space at its defaults (App. A networks, the space's fixed config:
``--set params={}`` turns the search off, FIFO keeps the trial to its full budget) on real MNIST, run as

    python -m aae_tune.search --space SPACE --num-samples 1 --max-epochs E --seed S --cpus-per-trial 2 \\
        --set 'params={}' --set searcher.type=random --set scheduler.type=fifo --top-k 1 ...

so the figures and the model land in MLflow like any search's. The test figure is the one finalize.py reports for
the trial's best validation checkpoint (test data is never used to choose). After every job the results so far
are rewritten to RESULTS.md (paper figure, ours, epochs, wall time, command, seed).

    python benchmarks/paper_results.py                      # every job, in the order below (about 2 hours)
    python benchmarks/paper_results.py --only supervised_mnist --epochs 2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from aae_tune.store import mlflow_client

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Job:
    space: str
    epochs: int
    metric: str  # the test metric finalize.py logs on the best trial
    paper: str  # the paper's figure for the same metric
    note: str = ""


JOBS = [
    Job("semisupervised_mnist_100", 50, "test_error", "3.40 % after 50 epochs (1.90 % fully trained)",
        "the paper's epoch-50 figure; its epoch-1 figure is 16.50 %"),
    Job("likelihood_mnist", 20, "test_parzen_ll", "340 ± 2 nats (10K samples)",
        "a public reproduction reports 345 ± 1.94 after 200 epochs with hidden-layer dropout 0.2 (Adam, BCE, "
        "1200-unit layers), 232 without"),
    Job("prior_mixture_mnist", 5, "test_component_accuracy", "qualitative (Fig. 4a)"),
    Job("swiss_roll_mnist", 5, "test_component_accuracy", "qualitative (Fig. 4c)"),
    Job("supervised_mnist", 5, "test_recon_loss", "qualitative (Fig. 7)"),
    Job("semisupervised_mnist_1000", 4, "test_error", "1.60 %"),
    Job("semisupervised_mnist_all", 4, "test_error", "0.85 %"),
    Job("dimred_mnist_2d_100", 4, "test_error", "6.08 %"),
    Job("dimred_mnist_2d_1000", 4, "test_error", "4.20 %"),
    Job("dimred_mnist_10d_100", 4, "test_error", "3.90 %"),
    Job("dimred_mnist_2d_unsup_20", 4, "test_cluster_error", "13.95 % (Fig. 11c)"),
    Job("clustering_mnist_16", 2, "test_cluster_error", "9.55 %"),
    Job("clustering_mnist_30", 2, "test_cluster_error", "4.10 %"),
]


def command(job: Job, epochs: int, seed: int, out: Path) -> list[str]:
    return [
        sys.executable, "-m", "aae_tune.search", "--space", job.space, "--num-samples", "1",
        "--max-epochs", str(epochs), "--seed", str(seed), "--cpus-per-trial", "2", "--top-k", "1",
        "--set", "params={}", "--set", "searcher.type=random", "--set", "scheduler.type=fifo",
        "--name", f"{job.space}-e{epochs}-s{seed}-{time.strftime('%Y%m%d-%H%M%S')}",
        "--storage-path", str(out / "ray_results"), "--tracking-uri", f"sqlite:///{out / 'mlflow.db'}",
    ]


def run_job(job: Job, epochs: int, seed: int, out: Path) -> dict:
    cmd = command(job, epochs, seed, out)
    log = out / f"{job.space}.log"
    start = time.perf_counter()
    with open(log, "w") as f:
        code = subprocess.call(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=out)
    wall = time.perf_counter() - start
    result = {"space": job.space, "epochs": epochs, "seed": seed, "paper": job.paper, "note": job.note,
              "metric": job.metric, "exit_code": code, "wall_s": wall, "log": str(log),
              "command": " ".join(c if " " not in c and "{" not in c else f"'{c}'" for c in cmd[1:])}
    result.update(read_mlflow(out, job, cmd[cmd.index("--name") + 1]))
    return result


def read_mlflow(out: Path, job: Job, name: str) -> dict:
    """The trial's test figure and its validation history from the search's MLflow runs."""
    client = mlflow_client(f"sqlite:///{out / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(f"aae-{job.space}")
    if experiment is None:
        return {}
    runs = client.search_runs([experiment.experiment_id],
                              f"tags.aae_search = '{name}' and tags.aae_role = 'trial'")
    if not runs:
        return {}
    run = runs[0]
    found = {"ours": run.data.metrics.get(job.metric), "run_id": run.info.run_id,
             "stop_reason": run.data.tags.get("stop_reason", "")}
    if job.metric == "test_parzen_ll":
        found["ours_se"] = run.data.metrics.get("test_parzen_se")
    space_metric = {"test_parzen_ll": "valid_parzen_ll", "test_cluster_error": "valid_cluster_error",
                    "test_component_accuracy": "valid_component_accuracy", "test_recon_loss": "valid_recon_loss",
                    "test_error": "valid_error"}[job.metric]
    history = client.get_metric_history(run.info.run_id, space_metric)
    found["valid_history"] = {int(m.step): m.value for m in history}
    return found


def render(results: list[dict]) -> str:
    lines = [
        "# Paper experiments on this machine (reduced budgets)",
        "",
        "Written by `python benchmarks/paper_results.py`: one job per experiment, each a one-trial search of the "
        "shipped space at its defaults on real MNIST (50,000 / 10,000 / 10,000), 2 CPU cores, no GPU. Budgets are "
        "far below the paper's (hundreds to thousands of epochs), so figures other than the epoch-matched ones are "
        "progress checks, not reproductions. Test figures are reported for the trial's best validation checkpoint.",
        f"Code: commit {os.environ.get('AAE_TUNE_COMMIT', 'unknown')}.",
        "",
        "| space | metric | paper | ours | epochs | wall time | seed | valid. metric by epoch |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        ours = "failed" if r.get("ours") is None else f"{r['ours']:.2f}"
        if r.get("ours_se") is not None:
            ours += f" ± {r['ours_se']:.2f}"
        history = {int(e): v for e, v in (r.get("valid_history") or {}).items()}  # JSON keys are strings
        shown = ", ".join(f"{e}: {v:.2f}" for e, v in sorted(history.items())
                          if e in (1, 2, 5, 10, 20, 30, 40, 50) or e == max(history))
        lines.append(f"| {r['space']} | {r['metric']} | {r['paper']} | {ours} | {r['epochs']} | "
                     f"{r['wall_s'] / 60:.1f} min | {r['seed']} | {shown} |")
    lines += ["", "Notes:", ""]
    lines += [f"- {r['space']}: {r['note']}" for r in results if r.get("note")]
    lines += [f"- {r['space']}: the trial stopped early ({r['stop_reason'].split(' (')[0]}); the test figure is "
              "that of its best validation checkpoint before that" for r in results
              if r.get("stop_reason", "").startswith("diverged")]
    lines += ["", "Commands (run in the output folder):", ""]
    lines += [f"- `python {r['command']}`" for r in results]
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--only", nargs="*", help="spaces to run (default: all, in order)")
    p.add_argument("--epochs", type=int, help="override every job's epochs (for a quick check)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "paper_runs"), help="MLflow store, Tune results, logs")
    p.add_argument("--results", default=str(ROOT / "RESULTS.md"))
    p.add_argument("--render-only", action="store_true", help="rewrite RESULTS.md from --out's results.json")
    args = p.parse_args()
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("AAE_TUNE_DATA_DIR", str(ROOT.parent / "shared" / "data" / "mnist"))
    store = out / "results.json"
    results = {r["space"]: r for r in json.loads(store.read_text())} if store.is_file() else {}
    for job in [] if args.render_only else JOBS:
        if args.only and job.space not in args.only:
            continue
        print(f"== {job.space}: {args.epochs or job.epochs} epochs", flush=True)
        results[job.space] = run_job(job, args.epochs or job.epochs, args.seed, out)
        print(json.dumps({k: v for k, v in results[job.space].items() if k != "valid_history"}), flush=True)
        store.write_text(json.dumps(ordered_results(results), indent=2))
        write_results(Path(args.results), ordered_results(results))
    if args.render_only:  # results written by an older version of this script lack the stop reason
        client = mlflow_client(f"sqlite:///{out / 'mlflow.db'}")
        for r in results.values():
            if "stop_reason" not in r and r.get("run_id"):
                r["stop_reason"] = client.get_run(r["run_id"]).data.tags.get("stop_reason", "")
    write_results(Path(args.results), ordered_results(results))


KEEP_MARKER = "## Reading these numbers"  # hand-written analysis below this heading survives a rewrite


def write_results(path: Path, results: list[dict]) -> None:
    old = path.read_text() if path.is_file() else ""
    kept = old[old.index(KEEP_MARKER):] if KEEP_MARKER in old else ""
    path.write_text(render(results) + ("\n" + kept if kept else ""))


def ordered_results(results: dict[str, dict]) -> list[dict]:
    return [results[j.space] for j in JOBS if j.space in results]


if __name__ == "__main__":
    main()
