"""``python -m aae_tune.cluster local up|down|status|screenshot``: a real Ray cluster + MLflow server on this machine.

    python -m aae_tune.cluster local up        # head + 2 workers (1 CPU each) + mlflow server, prints the URLs
    python -m aae_tune.cluster local status    # nodes (ray status -v), processes, MLflow health
    python -m aae_tune.cluster local screenshot --out docs/mlflow_ui.png   # the MLflow UI in headless Chromium
    python -m aae_tune.cluster local down      # stops exactly the processes `up` started

Then run a search on it with the printed ``--address`` and ``--tracking-uri``. Cloud clusters: see ``cluster/``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from aae_tune.cluster import local as lc
from aae_tune.errors import fail
from aae_tune.mlflow_store import mlflow_client
from aae_tune.names import ROLE_TRIAL, TAG_ROLE, experiment_name


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m aae_tune.cluster", description=__doc__.splitlines()[0])
    kinds = p.add_subparsers(dest="kind", required=True)
    local = kinds.add_parser("local", help="a multi-node Ray cluster and an MLflow server on 127.0.0.1")
    local.add_argument("action", choices=["up", "down", "status", "screenshot"])
    local.add_argument("--state-dir", type=Path, default=lc.default_state_dir(),
                       help=f"pids, ports, logs and the MLflow store (default: {lc.default_state_dir()})")
    local.add_argument("--object-store-mb", type=int, default=512, help="object store per node (MNIST: ~220 MB)")
    local.add_argument("--timeout", type=float, default=180, help="seconds to wait for the nodes and the server")
    local.add_argument("--out", type=Path, default=Path("docs/mlflow_ui.png"), help="screenshot: PNG to write")
    local.add_argument("--experiment", default=experiment_name("likelihood_mnist"),
                       help="screenshot: experiment to show")
    return p


def describe(state: lc.ClusterState) -> str:
    lines = [
        f"Ray head:      {state.ray_address}   (3 nodes x 1 CPU; resources head, worker_a, worker_b)",
        f"MLflow server: {state.tracking_uri}   (UI: open it in a browser; store in {state.state_dir}/mlflow)",
        f"state, logs:   {state.state_dir}",
        "",
        "Network: the MLflow server listens on 127.0.0.1 only. The Ray nodes were started with --node-ip-address "
        f"127.0.0.1; on Linux Ray advertises the host address ({state.node_ip}) instead and its ports accept "
        "connections on every interface, guarded by Ray's token authentication (~/.ray/auth_token).",
        "",
        "Run a search on it (RAY_AUTH_MODE=token: Ray's drivers present the token only when asked to):",
        "  RAY_AUTH_MODE=token python -m aae_tune.search --space likelihood_mnist --smoke "
        f"--address {state.ray_address} --tracking-uri {state.tracking_uri} --cpus-per-trial 1 --max-concurrent 3",
    ]
    return "\n".join(lines)


def status(state_dir: Path) -> int:
    state = lc.ClusterState.load(state_dir)
    if state is None:
        print(f"no local cluster recorded in {state_dir}")
        return 1
    print(describe(state))
    print("\nprocesses:")
    for proc in state.procs:
        print(f"  {proc.role:9s} pid {proc.pid:7d}  {'running' if lc.alive(proc.pid) else 'STOPPED'}  log {proc.log}")
    healthy = lc.mlflow_healthy(state.tracking_uri)
    print(f"\nMLflow {state.tracking_uri}/health: {'OK' if healthy else 'not answering'}")
    report = lc.ray_status(state.ray_address, state.marker)
    print(f"\nray status -v ({lc.active_nodes(report)} active nodes):\n{report or '  the head does not answer'}")
    return 0 if healthy and lc.active_nodes(report) == len(lc.NODES) else 1


def screenshot(state_dir: Path, out: Path, experiment: str) -> int:
    """The latest search's run table to ``out`` and its best trial's sample grid to ``<out>_samples.png``."""
    from aae_tune.cluster import browser

    state = lc.ClusterState.load(state_dir)
    if state is None:
        return fail(f"no local cluster recorded in {state_dir}; run `up` first")
    if browser.chromium_path() is None:
        return fail("chromium not found: apt-get install chromium")
    try:
        url = browser.experiment_url(state.tracking_uri, experiment)
    except ValueError as exc:
        return fail(str(exc))
    print(f"{url}\n  -> {browser.screenshot_page(url, out)}")
    client = mlflow_client(state.tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    best = client.search_runs([exp.experiment_id], f"tags.{TAG_ROLE} = '{ROLE_TRIAL}'",
                              order_by=["metrics.valid_parzen_ll DESC"], max_results=1)
    if best:
        page = browser.run_url(state.tracking_uri, exp.experiment_id, best[0].info.run_id, "figures/samples.png")
        print(f"{page}\n  -> {browser.screenshot_page(page, out.with_name(out.stem + '_samples.png'))}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    state_dir = args.state_dir.expanduser().resolve()
    if args.action == "up":
        try:
            state = lc.up(state_dir, object_store_mb=args.object_store_mb, timeout=args.timeout)
        except RuntimeError as exc:
            return fail(str(exc), 1)
        print(describe(state))
        print(f"\nstop it with: python -m aae_tune.cluster local down --state-dir {state_dir}")
        return 0
    if args.action == "down":
        left = lc.down(state_dir)
        if left:
            return fail(f"processes still running after SIGKILL: {left}", 1)
        print(f"local cluster in {state_dir} stopped; no process of it is left")
        return 0
    if args.action == "status":
        return status(state_dir)
    return screenshot(state_dir, args.out, args.experiment)


if __name__ == "__main__":
    sys.exit(main())
