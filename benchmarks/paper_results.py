"""One reduced-budget real job per MNIST experiment of the paper, through the product, writing RESULTS.md.

Each job is a one-trial search of a shipped space at its defaults (App. A networks, the space's fixed config:
``--set params={}`` turns the search off, FIFO keeps the trial to its full budget) on real MNIST, run as

    python -m aae_tune.search --space SPACE --num-samples 1 --max-epochs E --seed S --cpus-per-trial 2 \\
        --set 'params={}' --set searcher.type=random --set scheduler.type=fifo --top-k 1 ...

so the figures and the model land in MLflow like any search's. The test figure is the one search/publish.py logs for
the trial's best validation checkpoint (test data is never used to choose). After every job its row in RESULTS.md's
one-row-per-space table is rewritten (the other rows and the rest of the page stay); the full record (wall time,
validation history, log) is in ``--out``'s results.json. Set AAE_TUNE_COMMIT to the commit being run.

    AAE_TUNE_COMMIT=$(git rev-parse --short HEAD) python benchmarks/paper_results.py --out /elsewhere  # about 3 h
    python benchmarks/paper_results.py --only supervised_mnist --epochs 2 --results /elsewhere/RESULTS.md
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

from aae_tune.mlflow_store import mlflow_client

ROOT = Path(__file__).resolve().parents[1]
COMMIT = os.environ.get("AAE_TUNE_COMMIT", "unknown")  # the commit that trains, for RESULTS.md's commit column


@dataclass(frozen=True)
class Job:
    space: str
    epochs: int
    metric: str  # the test metric search/publish.py logs on the best trial
    paper: str  # the paper's figure for the same metric
    note: str = ""


JOBS = [
    Job("semisupervised_mnist_100", 50, "test_error", "3.40 % after 50 epochs (1.90 % fully trained)",
        "the paper's epoch-50 figure; its epoch-1 figure is 16.50 %"),
    Job("likelihood_mnist", 20, "test_parzen_ll", "340 ± 2 nats (10K samples)",
        "a public reproduction reports 345 ± 1.94 after 200 epochs with hidden-layer dropout 0.2 (Adam, BCE, "
        "1200-unit layers), 232 without"),
    Job("prior_mixture_mnist", 5, "test_component_accuracy", "qualitative (Fig. 4a)"),
    Job("swiss_roll_mnist", 10, "test_component_accuracy", "qualitative (Fig. 4c)"),
    Job("supervised_mnist", 5, "test_recon_loss", "qualitative (Fig. 7)"),
    Job("semisupervised_mnist_1000", 10, "test_error", "1.60 %"),
    Job("semisupervised_mnist_all", 10, "test_error", "0.85 %"),
    Job("dimred_mnist_2d_100", 10, "test_error", "6.08 %"),
    Job("dimred_mnist_2d_1000", 20, "test_error", "4.20 %"),
    Job("dimred_mnist_10d_100", 10, "test_error", "3.90 %"),
    Job("dimred_mnist_2d_unsup_20", 2, "test_cluster_error", "13.95 % (Fig. 11c)"),
    Job("clustering_mnist_16", 4, "test_cluster_error", "9.55 %"),
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
    result.update(read_mlflow(out, job, cmd[cmd.index("--name") + 1]), commit=COMMIT)
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


UNITS = {"test_parzen_ll": " nats", "test_component_accuracy": " %", "test_recon_loss": ""}
PAPER_BUDGETS = {"semisupervised": "5000", "clustering": "1500"}  # epochs; the paper gives no other budget


def render_row(r: dict) -> str:
    """RESULTS.md's row for one job (see its table between the paper-table markers): space, paper, ours, budget,
    seeds, command, commit. The command is the one-trial search ``R`` that RESULTS.md defines, without this
    script's stores and run name."""
    unit = UNITS.get(r["metric"], " %")
    ours = "failed (see the job's log)" if r.get("ours") is None else f"**{r['ours']:.2f}{unit}**"
    if r.get("ours_se") is not None:
        ours = f"**{r['ours']:.2f} ± {r['ours_se']:.2f}{unit}**"
    if r.get("stop_reason", "").startswith("diverged"):
        ours += "; the trial diverged, the figure is its best validation checkpoint's before that"
    budget = next((v for k, v in PAPER_BUDGETS.items() if r["space"].startswith(k)), "not given")
    command = f"`R --space {r['space']} --max-epochs {r['epochs']} --seed {r['seed']}`"
    return (f"| `{r['space']}` | {r['paper']} | {ours} | {r['epochs']} (paper: {budget}) | {r['seed']} | "
            f"{command} | {r.get('commit') or COMMIT} |")


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
    page = Path(args.results)
    if not page.is_file() or TABLE_START not in page.read_text() or TABLE_END not in page.read_text():
        sys.exit(f"error: {page} has no table between {TABLE_START} and {TABLE_END}: copy RESULTS.md there first")
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


TABLE_START, TABLE_END = "<!-- paper-table:start -->", "<!-- paper-table:end -->"


def write_results(path: Path, results: list[dict]) -> None:
    """Replace the rows of the spaces in ``results`` in RESULTS.md's table (between its markers); every other row
    and the rest of the page stay as written. The verdict against the paper is for a person to add."""
    page = path.read_text()
    head, rest = page.split(TABLE_START, 1)
    table, tail = rest.split(TABLE_END, 1)
    rows = {r["space"]: render_row(r) for r in results}
    lines = [next((rows[s] for s in rows if line.startswith(f"| `{s}` |")), line) for line in table.split("\n")]
    missing = [s for s in rows if not any(line.startswith(f"| `{s}` |") for line in table.split("\n"))]
    lines[-1:-1] = [rows[s] for s in missing]
    path.write_text(head + TABLE_START + "\n".join(lines) + TABLE_END + tail)


def ordered_results(results: dict[str, dict]) -> list[dict]:
    return [results[j.space] for j in JOBS if j.space in results]


if __name__ == "__main__":
    main()
