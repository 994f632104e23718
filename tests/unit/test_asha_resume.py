"""ASHA's rungs survive --resume (search/asha.py): Tune rebuilds the scheduler empty on restore, so the rung records
go to the staging folder (signed and uploaded with Tune's state) and come back from the search folder."""

import json
import logging
import shutil
from types import SimpleNamespace

import pytest
from pyarrow.fs import LocalFileSystem
from ray.tune.schedulers import TrialScheduler

from aae_tune.search.asha import RUNGS_FILE, ResumableASHA


def scheduler():
    asha = ResumableASHA(time_attr="epoch", max_t=9, grace_period=1, reduction_factor=3)
    asha.set_search_properties("score", "max")
    return asha


def trial(staging, search, trial_id):
    """What the scheduler reads of Tune's trial: its id, the staging folder, the search folder on its filesystem."""
    storage = SimpleNamespace(experiment_driver_staging_path=str(staging), storage_filesystem=LocalFileSystem(),
                              experiment_fs_path=str(search))
    return SimpleNamespace(trial_id=trial_id, storage=storage)


def run(asha, staging, scores, search=None):
    """Each trial reports epoch 1 with its score; ASHA's decision per trial."""
    decisions = {}
    for trial_id, score in scores.items():
        t = trial(staging, search or staging.parent / "search", trial_id)
        asha.on_trial_add(None, t)
        decisions[trial_id] = asha.on_trial_result(None, t, {"epoch": 1, "score": score})
    return decisions


def test_a_resumed_scheduler_keeps_its_rungs_and_stops_what_it_would_have_stopped(tmp_path):
    staging, search = tmp_path / "staging", tmp_path / "search"
    staging.mkdir(), search.mkdir()
    first = scheduler()
    assert set(run(first, staging, {f"t{k}": float(k) for k in range(6)}).values()) == {TrialScheduler.CONTINUE}
    shutil.copy(staging / RUNGS_FILE, search / RUNGS_FILE)  # Tune uploads the staging folder to the search folder

    resumed, fresh = scheduler(), scheduler()
    staging2 = tmp_path / "staging2"
    staging2.mkdir()
    # a weak trial after the resume: stopped against the six recorded scores, passed by an empty rung
    assert run(resumed, staging2, {"weak": 0.5}) == {"weak": TrialScheduler.STOP}
    assert run(fresh, tmp_path, {"weak": 0.5}, search=tmp_path / "other") == {"weak": TrialScheduler.CONTINUE}
    assert resumed.debug_string().endswith("Iter 1.000: 3.0")  # the cutoff of all seven, not of one
    # written again into the new staging folder, so the next signed state still holds them
    saved = json.loads((staging2 / RUNGS_FILE).read_text())
    assert saved == resumed.rung_records() and len(saved[0][-1][1]) == 7


def test_unreadable_rungs_start_empty_with_a_warning(tmp_path, caplog):
    (tmp_path / "search").mkdir()
    rung = [[9, {}], [3, {}], [1, {}]]  # this scheduler's milestones, descending
    for text in ("{not json", json.dumps([[["a", {}]]]), json.dumps([[[1, {"t": "high"}]]]), "\xff", "[" * 100_000,
                 json.dumps([rung[:2] + [[1, {"t": 10**400}]]]), json.dumps([rung[:2] + [[1, {"t": float("nan")}]]]),
                 json.dumps([rung[:2] + [[1, {"t": float("inf")}]]])):
        (tmp_path / "search" / RUNGS_FILE).write_text(text, encoding="latin-1")
        asha = scheduler()
        with caplog.at_level(logging.WARNING, logger="aae_tune.asha"):
            assert run(asha, tmp_path, {"t": 1.0}, tmp_path / "search") == {"t": TrialScheduler.CONTINUE}
        assert "rungs start empty" in caplog.text
        caplog.clear()


def test_rungs_file_larger_than_any_search_writes_is_not_read(tmp_path, monkeypatch, caplog):
    (tmp_path / "search").mkdir()
    (tmp_path / "search" / RUNGS_FILE).write_text(" " * 2048)
    monkeypatch.setattr("aae_tune.search.asha.MAX_RUNGS_BYTES", 1024)
    asha = scheduler()
    with caplog.at_level(logging.WARNING, logger="aae_tune.asha"):
        run(asha, tmp_path, {"t": 1.0}, tmp_path / "search")
    assert "more than the 1024" in caplog.text
    assert sum(len(r) for _, r in asha._brackets[0]._rungs) == 1  # only this driver's own record


@pytest.mark.parametrize("score", [float("-inf"), float("inf")])
def test_infinite_scores_round_trip(tmp_path, score):
    staging = tmp_path / "search"
    staging.mkdir()
    asha = scheduler()
    run(asha, staging, {"t": score})
    saved = json.loads((staging / RUNGS_FILE).read_text())
    if score < 0:  # a trial whose epochs never scored: kept
        assert scheduler().load_rung_records(saved) == 1
    else:  # no trial reports +inf: not a file this scheduler wrote
        with pytest.raises(ValueError):
            scheduler().load_rung_records(saved)
