"""Starting or joining Ray, the same way for every entry point."""

from __future__ import annotations

import os
from pathlib import Path

import ray


def start_ray(address: str | None = None, dashboard: bool = False) -> None:
    """Join the cluster at ``address``, or start a local Ray on node address 127.0.0.1, with its dashboard on
    127.0.0.1 when ``dashboard`` (a joined cluster has its own).

    Ray 2.60 itself still opens its gRPC ports on every interface; they are guarded by Ray's token
    authentication, which is on by default. A cluster started with ``ray start`` writes that token to
    ~/.ray/auth_token, and ``ray.init(address=...)`` only sends it when RAY_AUTH_MODE=token: set it for the user.
    """
    if ray.is_initialized():
        return
    if address and address != "local":
        if "RAY_AUTH_MODE" not in os.environ and (Path.home() / ".ray" / "auth_token").is_file():
            os.environ["RAY_AUTH_MODE"] = "token"
        ray.init(address=address, include_dashboard=False)
    else:
        context = ray.init(include_dashboard=dashboard, dashboard_host="127.0.0.1", _node_ip_address="127.0.0.1")
        if dashboard:
            print(f"Ray dashboard: http://{context.dashboard_url}", flush=True)
