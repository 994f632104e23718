"""A search whose trials can never be placed stops after --pending-timeout with one clear message, on a real local
Ray and Tune: the trials ask for a resource no node has, as a GPU trial does on a cluster of CPU nodes."""

import time

from ray import tune

from aae_tune.search.guard import SearchControls, SearchGuard, guard_search
from aae_tune.search.pending import PendingTimeout
from aae_tune.search.signing import StateSigner

MISSING = "aae_test_missing_resource"  # no node has it: every trial waits, PENDING, as long as it takes


def report_once(config):
    tune.report({"score": 1.0})


def test_trials_that_wait_past_the_timeout_stop_the_search(ray_session, tmp_path, capfd):
    """Wired as the driver wires it: the watch inside the search's guard, whose stop reason the driver reports."""
    watch = PendingTimeout(3, {"cpu": 1.0, MISSING: 1.0})
    folder = str(tmp_path / "pending")
    guard = SearchGuard(folder, watch)
    tuner = tune.Tuner(
        tune.with_resources(report_once, tune.PlacementGroupFactory([{"CPU": 1, MISSING: 1}])),
        tune_config=tune.TuneConfig(num_samples=2),
        run_config=tune.RunConfig(name="pending", storage_path=str(tmp_path), stop=guard, callbacks=[guard],
                                  verbose=0),
    )
    start = time.monotonic()
    with guard_search(folder, SearchControls(StateSigner(folder, b"k" * 40))) as controls:
        results = tuner.fit()
    assert time.monotonic() - start < 60
    assert "for 3 s no trial has run while 2 waited" in controls.reason_to_stop()
    assert f"1 {MISSING} per trial, the cluster has 0" in controls.reason_to_stop()
    assert results.num_errors == 0 and all("score" not in r.metrics for r in results)  # none ran
    err = capfd.readouterr().err
    assert err.count("warning: 1 aae_test_missing_resource per trial") == 1  # said once, at start
