"""Starting or joining Ray, the same way for every entry point."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import ray

# Ray (2.60) turns a node address of 127.0.0.1 into this machine's outward-facing IP (resolve_ip_for_localhost)
# and then serves on that IP or on every interface. Only its single-machine mode, the default on macOS and Windows
# (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0), advertises 127.0.0.1 and binds every server there. Ray reads the flag
# when it is imported, so starting a local Ray sets it in the environment (for the processes ray.init spawns:
# GCS, raylet, and through the raylet every worker and agent) and in ray_constants (for this process).
SINGLE_MACHINE_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
TOKEN_SETUP_LOGGER = "ray._private.authentication.authentication_token_setup"  # its "token auth is on" warning


@contextmanager
def _single_machine_mode() -> Iterator[None]:
    from ray._private import ray_constants

    saved_env, saved_flag = os.environ.get(SINGLE_MACHINE_ENV), getattr(ray_constants, "ENABLE_RAY_CLUSTER", None)
    os.environ[SINGLE_MACHINE_ENV] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:  # later subprocesses (e.g. `ray start` of the local cluster) must not inherit it: it refuses to join
        if saved_env is None:
            os.environ.pop(SINGLE_MACHINE_ENV, None)
        else:
            os.environ[SINGLE_MACHINE_ENV] = saved_env
        if saved_flag is not None:
            ray_constants.ENABLE_RAY_CLUSTER = saved_flag


def init_local_ray(**kwargs: Any) -> Any:
    """``ray.init(**kwargs)`` for a new single-machine Ray whose every server (GCS, raylet, workers, agents)
    listens on 127.0.0.1 only; returns Ray's context.

    Token authentication stays on, as Ray's default; Ray's warning that it is on (printed on every search, and
    nothing to act on for a Ray that listens on 127.0.0.1 only) is silenced. Setting RAY_AUTH_MODE=token instead
    would not do: Ray reads its config when imported, and a mode set later leaves the driver without the token."""
    token_logger = logging.getLogger(TOKEN_SETUP_LOGGER)
    token_logger.addFilter(_drop_token_enabled_notice)  # only during this call: its other warnings still show
    try:
        with _single_machine_mode():
            return ray.init(**kwargs)
    finally:
        token_logger.removeFilter(_drop_token_enabled_notice)


def _drop_token_enabled_notice(record: logging.LogRecord) -> bool:
    return not record.getMessage().startswith("Token authentication is enabled for this Ray cluster")


def start_ray(address: str | None = None, dashboard: bool = False) -> None:
    """Join the cluster at ``address``, or start a local Ray listening on 127.0.0.1 only, with its dashboard on
    127.0.0.1 when ``dashboard`` (a joined cluster has its own).

    A cluster's ports are guarded by Ray's token authentication, on by default. A cluster started with
    ``ray start`` writes that token to ~/.ray/auth_token, and ``ray.init(address=...)`` only sends it when
    RAY_AUTH_MODE=token: set it for the user.
    """
    if ray.is_initialized():
        return
    if address and address != "local":
        if "RAY_AUTH_MODE" not in os.environ and (Path.home() / ".ray" / "auth_token").is_file():
            os.environ["RAY_AUTH_MODE"] = "token"
        ray.init(address=address, include_dashboard=False)
    else:
        context = init_local_ray(include_dashboard=dashboard, dashboard_host="127.0.0.1")
        if dashboard:
            print(f"Ray dashboard: http://{context.dashboard_url}", flush=True)
