"""The search's state machine (search.lifecycle) and SearchGuard, the Tune side of its safety: the guard stops the
search instead of letting Tune start it over, on a storage failure, and when its pending watch fires; it signs
nothing once a stop is decided."""

import errno
import json
import os
import pickle
from types import SimpleNamespace

import pytest

from aae_tune.names import SEARCH_RECORD
from aae_tune.search.guard import SearchControls, SearchGuard, guard_search, storage_failure
from aae_tune.search.lifecycle import FINISHED, INTERRUPTED, RUNNING, SearchRecord, finished_note
from aae_tune.search.signing import StateSigner, load_verified

KEY = b"k" * 40


def controls(tmp_path, **kwargs) -> SearchControls:
    return SearchControls(StateSigner(str(tmp_path / "search"), KEY), **kwargs)


def test_a_resume_whose_trials_tune_could_not_restore_is_stopped_not_started_over(tmp_path):
    guard = SearchGuard(str(tmp_path / "search"))
    with guard_search(guard.experiment_dir, controls(tmp_path, expected_trials=3)) as live:
        assert not guard.stop_all()
        guard.on_step_begin(0, [])  # Tune's "Restarting experiment": no trial came back
        assert guard.stop_all() and "could not restore the 3 trials" in live.reason_to_stop()
        assert guard.get_state() is None and not (tmp_path / "search").exists()  # nothing signed after that
    assert not guard.stop_all()  # the driver is gone: nothing to stop


def test_a_trial_that_cannot_write_to_storage_stops_the_search(tmp_path):
    assert storage_failure(f"OSError: [Errno 28] {os.strerror(errno.ENOSPC)}: '/mnt/x'") == os.strerror(errno.ENOSPC)
    assert storage_failure("ValueError: lr must be > 0") is None
    error_file = tmp_path / "error.txt"
    error_file.write_text(f"Traceback ...\nOSError: [Errno 28] {os.strerror(errno.ENOSPC)}\n")
    trial = SimpleNamespace(trial_id="t1", error_file=str(error_file))
    guard = SearchGuard(str(tmp_path / "search"))
    with guard_search(guard.experiment_dir, controls(tmp_path)) as live:
        guard.on_trial_recover(0, [trial], trial)
        assert guard.stop_all() and "trial t1 could not write to the storage path" in live.stop_reason


def test_the_guard_pickles_without_the_driver_side(tmp_path):
    guard = SearchGuard(str(tmp_path / "search"))
    guard._staging = "/tmp/staging-of-a-dead-driver"
    copy = pickle.loads(pickle.dumps(guard))
    assert copy.experiment_dir == guard.experiment_dir and copy._staging is None and copy.pending is None


def test_the_record_moves_only_along_the_state_machine(tmp_path):
    folder = tmp_path / "search"
    record = SearchRecord(str(folder), {"state": "created"}, StateSigner(str(folder), KEY))
    for state in (RUNNING, INTERRUPTED, RUNNING):
        record.move(state, reason="why")
    assert finished_note(record.data, "s") is None
    record.move(FINISHED, summary="== the summary")
    with pytest.raises(RuntimeError, match="no transition from finished to running"):
        record.move(RUNNING)
    signed = json.loads(load_verified(str(folder), KEY).read(SEARCH_RECORD))
    assert signed == json.loads((folder / SEARCH_RECORD).read_text()) and signed["state"] == FINISHED
    assert [h["state"] for h in signed["history"]] == [RUNNING, INTERRUPTED, RUNNING, FINISHED]
    assert finished_note(signed, "s").startswith("== the summary") and "--train-best s" in finished_note(signed, "s")
