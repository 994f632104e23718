"""Helpers shared by the test modules (fixtures live in conftest.py; everything imported lives here)."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

from aae_tune.mlflow_store import mlflow_client
from aae_tune.names import ROLE_PARENT, ROLE_TRIAL, TAG_ROLE, TAG_SEARCH, experiment_name

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_MNIST = REPO_ROOT.parent / "shared" / "data" / "mnist"
# What every likelihood trial logs under figures/ (the other models add theirs: tests/system/test_spaces_smoke.py).
LIKELIHOOD_FIGURES = {f"figures/{name}.png" for name in ("samples", "latent", "manifold", "neighbours")}


def load_benchmark(name: str) -> ModuleType:
    """``benchmarks/<name>.py`` as a module (the folder is no package: each benchmark runs from a checkout)."""
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def wait_for_port(port: int, what: str, timeout: float = 60) -> None:
    """Until something listens on 127.0.0.1:``port`` (a server the test started)."""
    deadline = time.time() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            assert time.time() < deadline, f"{what} did not start listening on port {port}"
            time.sleep(0.3)


def process_tree(root: int) -> set[int]:
    """``root`` and every process below it (from /proc: Linux)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    tree, todo = set(), [root]
    while todo:
        pid = todo.pop()
        tree.add(pid)
        todo.extend(children.get(pid, []))
    return tree


def listening_addresses(pids: set[int]) -> dict[str, set[int]]:
    """IP address -> ports of every TCP socket that processes ``pids`` listen on (from /proc: Linux). IPv4-mapped
    IPv6 addresses are given as IPv4."""
    inodes = set()
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                with contextlib.suppress(OSError):
                    target = os.readlink(fd)
                    if target.startswith("socket:["):
                        inodes.add(target[8:-1])
    found: dict[str, set[int]] = {}
    for table, family in (("/proc/net/tcp", socket.AF_INET), ("/proc/net/tcp6", socket.AF_INET6)):
        for line in Path(table).read_text().splitlines()[1:]:
            cols = line.split()
            if cols[3] != "0A" or cols[9] not in inodes:  # 0A: LISTEN
                continue
            hex_ip, hex_port = cols[1].split(":")
            raw = b"".join(bytes.fromhex(hex_ip[i:i + 8])[::-1] for i in range(0, len(hex_ip), 8))
            ip = socket.inet_ntop(family, raw).removeprefix("::ffff:")
            found.setdefault(ip, set()).add(int(hex_port, 16))
    return found


def closed_port() -> int:
    """A local port nobody listens on: connecting to it is refused immediately."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def search_runs(tracking_uri: str, search: str | None = None, space: str = "likelihood_mnist"):
    """(MlflowClient, parent runs, trial runs) of one search (or of every search of ``space``) in a store."""
    client = mlflow_client(tracking_uri)
    experiment = client.get_experiment_by_name(experiment_name(space))
    if experiment is None:
        return client, [], []
    query = f"tags.{TAG_SEARCH} = '{search}'" if search else ""
    runs = client.search_runs([experiment.experiment_id], filter_string=query, max_results=10_000)
    by_role = {role: [r for r in runs if r.data.tags.get(TAG_ROLE) == role] for role in (ROLE_PARENT, ROLE_TRIAL)}
    return client, by_role[ROLE_PARENT], by_role[ROLE_TRIAL]


def wait_for(predicate, proc: subprocess.Popen, timeout: float = 300, what: str = "condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            output = proc.stdout.read() if proc.stdout else ""
            raise AssertionError(f"search exited ({proc.returncode}) before {what}:\n{output[-3000:]}")
        try:
            value = predicate()
        except Exception:  # noqa: BLE001 - the store may be mid-creation
            value = None
        if value:
            return value
        time.sleep(1)
    raise AssertionError(f"timed out waiting for {what}")


def start(cmd: list[str], cwd: Path) -> subprocess.Popen:
    # Own process group: the driver and the local Ray it starts can be killed together, leaving nothing behind.
    return subprocess.Popen(cmd, cwd=cwd, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def kill_group(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)


def epochs_logged(client: Any, run_id: str) -> list[int]:
    return [m.step for m in client.get_metric_history(run_id, "epoch")]


def kill_after_epochs(proc: subprocess.Popen, tracking_uri: str, name: str, epochs: int) -> None:
    """Once a trial of search ``name`` has logged ``epochs`` epochs, SIGKILL the driver and its local Ray."""
    try:
        def logged():
            client, _, trials = search_runs(tracking_uri, name)
            return any(len(epochs_logged(client, t.info.run_id)) >= epochs for t in trials)

        wait_for(logged, proc, what=f"{epochs} epochs")
    finally:
        kill_group(proc)  # the driver and its local Ray, at once


def resume_cleanly(cmd: list[str], cwd: Path, tracking_uri: str, name: str, trials: int,
                   max_epochs: int) -> subprocess.CompletedProcess:
    """``cmd --resume`` finishes, and the store holds one parent run and one run per trial, each epoch once."""
    resumed = subprocess.run([*cmd, "--resume"], cwd=cwd, capture_output=True, text=True, timeout=900,
                             env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    client, parents, runs = search_runs(tracking_uri, name)
    assert len(parents) == 1 and len(runs) == trials
    for run in runs:
        steps = epochs_logged(client, run.info.run_id)
        assert steps == sorted(set(steps)) and steps[-1] <= max_epochs, steps
    return resumed


@contextlib.contextmanager
def mounted_tmpfs(mount: Path, size: str):
    """A real filesystem of ``size`` (e.g. "16m") at ``mount``: writes past it fail with ENOSPC. Skips the test where
    mounting is not permitted."""
    import pytest

    mount.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)
