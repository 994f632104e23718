"""Pre-flight checks of the command line's numbers: seeds, counts and what each trial asks of Ray.

A trial that asks for more than a local Ray has (a GPU on a machine without one, more CPUs than the machine has)
is not an error to Ray: the trial waits, PENDING, forever. A local Ray never grows, so such a search is refused
here; on a cluster (``--address``), where an autoscaler may add nodes, the search warns once it is connected and
``--pending-timeout`` bounds the wait (``aae_tune.search.pending``).
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

from aae_tune.search.numbers import SEED_LIMIT, too_large_counts

# Ray counts resources in units of 0.0001 ("The precision of the fractional quantity ... cannot go beyond 0.0001")
RESOURCE_UNIT = 1e-4
# Ray's override of a node's detected resources, e.g. RAY_OVERRIDE_RESOURCES='{"GPU": 0}'
RESOURCES_OVERRIDE_ENV = "RAY_OVERRIDE_RESOURCES"


def check_seed(seed: int, problems: list[str]) -> None:
    """The seed reaches numpy's RandomState and torch.manual_seed in every trial: both take [0, 2**32)."""
    if not 0 <= seed < SEED_LIMIT:
        problems.append(f"--seed: must be in [0, {SEED_LIMIT - 1}] (numpy's and torch's seed range), got {seed}")


def check_counts(counts: dict[str, Any], problems: list[str]) -> None:
    """Counts from the command line (trials, epochs, samples, restarts) must fit numpy's integers."""
    problems.extend(f"--{p.replace('_', '-')}" for p in too_large_counts(counts))


def check_pending_timeout(seconds: float | None, problems: list[str]) -> None:
    if seconds is not None and not (math.isfinite(seconds) and seconds > 0):
        problems.append(f"--pending-timeout: must be a number of seconds > 0, got {seconds}")


def check_trial_resources(cpus: float, gpus: float | None, address: str | None, problems: list[str]) -> None:
    """Each trial's CPUs and GPUs as Ray will take them, and, on a local Ray, whether this machine has them."""
    found = [f"--cpus-per-trial: {p}" for p in resource_amount_problems("CPU", cpus)]
    if gpus is not None:
        found += [f"--gpus-per-trial: {p}" for p in resource_amount_problems("GPU", gpus)]
    problems += found
    if not found and is_local_ray(address):
        check_local_capacity(cpus, gpus or 0.0, problems)


def resource_amount_problems(resource: str, amount: float) -> list[str]:
    """What Ray refuses (or never schedules) in one trial's request for ``resource``."""
    if not math.isfinite(amount):
        return [f"must be a finite number, got {amount}"]
    if 0 < amount < RESOURCE_UNIT:
        return [f"Ray counts resources in steps of {RESOURCE_UNIT:g}, got {amount}"]
    if resource == "GPU" and amount > 1 and not float(amount).is_integer():
        # Ray places a trial's GPUs whole above one: a request for 1.5 GPUs is never scheduled
        return [f"a share above 1 GPU must be a whole number of GPUs (Ray cannot split them), got {amount}"]
    return []


def is_local_ray(address: str | None) -> bool:
    """Whether the search starts its own Ray on this machine (``start_ray``), whose resources never grow."""
    import ray

    return address in (None, "local") and not ray.is_initialized()


def check_local_capacity(cpus: float, gpus: float, problems: list[str]) -> None:
    have_gpus, have_cpus = local_gpu_count(), local_cpu_count()
    if gpus > have_gpus:
        seen = "no GPU" if have_gpus == 0 else f"{have_gpus:g} GPU(s)"
        problems.append(f"--gpus-per-trial {gpus:g}: the local Ray would have {seen} ({gpu_evidence()}), so every "
                        "trial would wait forever; drop --gpus-per-trial to train on CPUs, run on a machine with a "
                        "GPU, or join a cluster that has (or can add) GPU nodes with --address")
    if cpus > have_cpus:
        problems.append(f"--cpus-per-trial {cpus:g}: the local Ray would have {have_cpus:g} CPU(s), so every trial "
                        f"would wait forever; use at most {have_cpus:g}, or join a larger cluster with --address")


def resource_override(name: str) -> float | None:
    """The amount of ``name`` that RAY_OVERRIDE_RESOURCES sets for a node started here (None: not set)."""
    try:
        value = json.loads(os.environ.get(RESOURCES_OVERRIDE_ENV) or "{}").get(name)
    except (ValueError, AttributeError):
        return None  # Ray itself refuses to start on a malformed override, with its own message
    return float(value) if isinstance(value, (int, float)) else None


def local_gpu_count() -> float:
    """GPUs a Ray started here would offer, detected the way Ray 2.60's node does it: its GPU accelerator
    manager (NVIDIA through NVML, or AMD, Intel, Apple), capped by CUDA_VISIBLE_DEVICES (or its AMD/Intel
    equivalent), unless RAY_OVERRIDE_RESOURCES says otherwise."""
    override = resource_override("GPU")
    if override is not None:
        return override
    try:
        from ray._private.accelerators import get_accelerator_manager_for_resource

        manager = get_accelerator_manager_for_resource("GPU")
        count = manager.get_current_node_num_accelerators()
        visible = manager.get_current_process_visible_accelerator_ids()
    except (ImportError, AttributeError):  # Ray's internals moved: torch also honours CUDA_VISIBLE_DEVICES
        import torch

        return float(torch.cuda.device_count())
    return float(count if visible is None else min(count, len(visible)))


def gpu_evidence() -> str:
    """Where the GPU count comes from, for the message."""
    if resource_override("GPU") is not None:
        return f"{RESOURCES_OVERRIDE_ENV}={os.environ[RESOURCES_OVERRIDE_ENV]}"
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return f"CUDA_VISIBLE_DEVICES={visible!r}"
    return "as Ray detects GPUs here"


def local_cpu_count() -> float:
    """CPUs a Ray started here would offer: Ray's own count (which honours container limits) or its override."""
    override = resource_override("CPU")
    if override is not None:
        return override
    try:
        from ray._private.utils import get_num_cpus

        return float(get_num_cpus(override_docker_cpu_warning=True))
    except (ImportError, AttributeError, TypeError):
        return float(os.cpu_count() or 1)
