"""Trials that wait for resources that never come: a warning at start and a time limit on the wait.

A trial that asks for more than the cluster has (a GPU on a cluster of CPU nodes) is not an error to Ray: it waits,
PENDING, until a node that has it joins. On a local Ray none ever will, so the pre-flight refuses such a search
(``aae_tune.search.resources``). On a cluster (``--address``) an autoscaler may add the node, so the search starts,
says once that it is waiting for one, and with ``--pending-timeout SECONDS`` stops with a clear message when, for
that long, no trial has run and some wait. A local Ray gets a generous limit by default, in case a trial asks for
something the pre-flight does not see.

``PendingTimeout`` is both a Tune ``Callback`` (it sees every trial's status at each step of Tune's loop) and a Tune
``Stopper`` (the only way to end a whole experiment cleanly): pass the same object as ``RunConfig(stop=...)`` and in
``RunConfig(callbacks=[...])``.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from ray.tune import Callback, Stopper
from ray.tune.experiment import Trial

# A local Ray's resources never grow, and the pre-flight has checked that a trial fits: a trial still waiting after
# this long waits for something no one will add (starting a trial's process takes seconds).
DEFAULT_LOCAL_TIMEOUT_S = 600.0


def pending_timeout_s(timeout: float | None, address: str | None) -> float | None:
    """The limit a search runs under: ``--pending-timeout``, else the local default, else none (a cluster may
    be autoscaling: wait as long as it takes)."""
    if timeout is not None:
        return timeout
    return DEFAULT_LOCAL_TIMEOUT_S if address in (None, "local") else None


def shortfall(needs: dict[str, float], cluster: dict[str, float]) -> dict[str, tuple[float, float]]:
    """resource -> (one trial's need, the cluster's total) for each resource a single trial needs more of."""
    names = {"cpu": "CPU", "gpu": "GPU"}
    return {names.get(key, key): (amount, cluster.get(names.get(key, key), 0.0))
            for key, amount in needs.items() if amount > cluster.get(names.get(key, key), 0.0)}


def describe(lacking: dict[str, tuple[float, float]]) -> str:
    return " and ".join(f"{need:g} {name} per trial, the cluster has {have:g}"
                        for name, (need, have) in lacking.items())


class PendingTimeout(Callback, Stopper):
    """Warns once at start when the cluster lacks what one trial needs; with a timeout, stops the search when no
    trial has run for that long while some wait (``fired`` then holds the message it printed)."""

    def __init__(self, timeout_s: float | None, needs: dict[str, float]):
        self.timeout_s = timeout_s
        self.needs = dict(needs)  # one trial's resources, as the trainable's ("cpu", "gpu")
        self.fired: str | None = None
        self._waiting_since: float | None = None

    def setup(self, **info: Any) -> None:
        """Each start, a --resume included: Ray is connected, the clock starts afresh."""
        self._waiting_since = None
        lacking = shortfall(self.needs, cluster_resources())
        if lacking:
            wait = f"the search stops if no trial has run for {self.timeout_s:g} s" if self.timeout_s else \
                "--pending-timeout SECONDS stops the search if none comes"
            print(f"warning: {describe(lacking)}: trials wait (PENDING) until a node that has it joins (an autoscaler "
                  f"may add one); {wait}", file=sys.stderr, flush=True)

    def on_step_begin(self, iteration: int, trials: list[Trial], **info: Any) -> None:
        if self.timeout_s is None or self.fired:
            return
        waiting = [t for t in trials if t.status == Trial.PENDING]
        if not waiting or any(t.status == Trial.RUNNING for t in trials):
            self._waiting_since = None
            return
        now = time.monotonic()
        self._waiting_since = self._waiting_since or now
        if now - self._waiting_since >= self.timeout_s:
            self.fired = self.message(len(waiting))  # the driver reports it as the reason the search stopped

    def message(self, waiting: int) -> str:
        lacking = shortfall(self.needs, cluster_resources())
        why = f" ({describe(lacking)})" if lacking else ""
        return (f"for {self.timeout_s:g} s no trial has run while {waiting} waited for resources"
                f"{why}. Add nodes with what a trial needs, lower --gpus-per-trial / --cpus-per-trial, or raise "
                "--pending-timeout")

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        return False  # no single trial is stopped: the whole search is, by stop_all

    def stop_all(self) -> bool:
        return self.fired is not None

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles its callbacks and stopper with the experiment; a monotonic clock means nothing in another
        # process, and a resumed search gets a fresh wait
        return {**self.__dict__, "_waiting_since": None, "fired": None}


def cluster_resources() -> dict[str, float]:
    import ray

    return ray.cluster_resources() if ray.is_initialized() else {}
