"""Starting or joining Ray, the same way for every entry point."""

from __future__ import annotations

import ray


def start_ray(address: str | None = None) -> None:
    """Join the cluster at ``address``, or start a local Ray bound to 127.0.0.1 with no dashboard (nothing of
    ours listens beyond loopback unless the user points us at a cluster)."""
    if ray.is_initialized():
        return
    if address and address != "local":
        ray.init(address=address, include_dashboard=False)
    else:
        ray.init(include_dashboard=False, _node_ip_address="127.0.0.1")
