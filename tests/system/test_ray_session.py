"""A local Ray started by aae_tune serves on loopback only: every port of its processes, checked in /proc."""

from __future__ import annotations

import os
import subprocess
import sys

from aae_tune.cluster.ray_session import SINGLE_MACHINE_ENV
from tests.helpers import listening_addresses, process_tree

LOOPBACK = {"127.0.0.1", "::1"}


def test_local_ray_listens_on_loopback_only(ray_session):
    @ray_session.remote
    def pid() -> int:  # a worker process exists and serves while we look
        return os.getpid()

    worker = ray_session.get(pid.remote())
    nodes = ray_session.nodes()
    assert [n["NodeManagerAddress"] for n in nodes] == ["127.0.0.1"]
    pids = process_tree(os.getpid())
    assert worker in pids
    addresses = listening_addresses(pids)
    ports = sum(len(p) for p in addresses.values())
    assert ports >= 4, f"expected the GCS, raylet and workers to listen somewhere: {addresses}"
    assert set(addresses) <= LOOPBACK, f"Ray serves beyond loopback: {addresses}"


def test_single_machine_flag_does_not_leak_into_later_processes(ray_session):
    # `ray start` of a joining node refuses to run with it set (the local multi-node cluster starts such nodes)
    assert SINGLE_MACHINE_ENV not in os.environ


def test_local_ray_starts_with_token_auth_and_without_its_warning(tmp_path):
    """Ray's "token authentication is enabled" warning printed on every search; auth stays on, the warning goes."""
    script = ("from aae_tune.cluster.ray_session import start_ray\nimport ray\nstart_ray()\n"
              "import os\nprint('auth', os.environ.get('RAY_AUTH_MODE'))\n"
              "ray.shutdown()\n")
    env = {k: v for k, v in os.environ.items() if k != "RAY_AUTH_MODE"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=180, env=env,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Token authentication is enabled" not in done.stderr, done.stderr
    assert "auth token" in done.stdout, done.stdout  # Ray's default for a new local cluster, still in force
