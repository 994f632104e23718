"""A local Ray started by aae_tune serves on loopback only: every port of its processes, checked in /proc."""

from __future__ import annotations

import os

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
