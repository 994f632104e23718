"""The pending-trials watch: the clock runs only while trials wait and none runs, and a resumed search starts afresh."""

import pickle
import time
from types import SimpleNamespace

from ray.tune.experiment import Trial

from aae_tune.search.pending import DEFAULT_LOCAL_TIMEOUT_S, PendingTimeout, pending_timeout_s, shortfall


def trials(*statuses: str) -> list[SimpleNamespace]:
    return [SimpleNamespace(status=status) for status in statuses]


def test_stops_only_after_the_timeout_with_no_trial_running():
    watch = PendingTimeout(0.2, {"cpu": 1.0, "gpu": 1.0})
    watch.on_step_begin(0, trials(Trial.PENDING, Trial.PENDING))
    assert not watch.stop_all()
    time.sleep(0.3)
    watch.on_step_begin(1, trials(Trial.PENDING, Trial.PENDING))
    assert watch.stop_all() and "no trial has run while 2 waited" in watch.fired


def test_a_running_trial_resets_the_clock():
    watch = PendingTimeout(0.2, {"cpu": 1.0})
    watch.on_step_begin(0, trials(Trial.PENDING))
    time.sleep(0.3)
    watch.on_step_begin(1, trials(Trial.RUNNING, Trial.PENDING))  # others wait their turn: nothing is stuck
    watch.on_step_begin(2, trials(Trial.TERMINATED, Trial.PENDING))
    assert not watch.stop_all()


def test_without_a_timeout_it_never_stops():
    watch = PendingTimeout(None, {"gpu": 1.0})
    watch.on_step_begin(0, trials(Trial.PENDING))
    assert not watch.stop_all() and watch({"trial": "x"}, {}) is False


def test_pickled_with_the_experiment_it_forgets_its_clock():
    watch = PendingTimeout(0.01, {"cpu": 1.0})
    watch.on_step_begin(0, trials(Trial.PENDING))
    time.sleep(0.02)
    watch.on_step_begin(1, trials(Trial.PENDING))
    copy = pickle.loads(pickle.dumps(watch))
    assert watch.stop_all() and not copy.stop_all() and copy.timeout_s == 0.01


def test_default_timeouts_local_and_cluster():
    assert pending_timeout_s(None, None) == DEFAULT_LOCAL_TIMEOUT_S
    assert pending_timeout_s(None, "ray://head:10001") is None  # an autoscaler may still add the node
    assert pending_timeout_s(30.0, "auto") == 30.0


def test_shortfall_names_what_one_trial_lacks():
    assert shortfall({"cpu": 1.0, "gpu": 1.0}, {"CPU": 8.0}) == {"GPU": (1.0, 0.0)}
    assert shortfall({"cpu": 1.0, "gpu": 0.5}, {"CPU": 8.0, "GPU": 1.0}) == {}
