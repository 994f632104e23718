"""A trial's score is defined once (search.scoring) and shown the same everywhere: the rows made from Tune's results,
the parent run's figure names, the summary's words, Tune's table columns and a restored trial's running score."""

import json
import math
from types import SimpleNamespace

import pandas as pd
from ray import tune

from aae_tune.search.driver import metric_columns
from aae_tune.search.results import TrialRow, best_checkpoint, best_trial_metrics, ranked, trial_records, trial_row
from aae_tune.search.scoring import SCORE_FILE, RunningBest, best_key, tune_metric
from aae_tune.search.space import load_space
from aae_tune.search.summary import SearchSummary, settings_in_effect
from aae_tune.search.tracking import numeric_metrics
from aae_tune.search.trainable import restored_best
from aae_tune.search.values import show_value

METRIC = "valid_parzen_ll"


def test_running_best_keeps_the_latest_epoch_to_reach_the_best_value():
    """Of tying epochs the latest holds the score: Tune keeps the later checkpoint of an equal score."""
    best = RunningBest(METRIC, "max")
    assert best.result() == {"best_valid_parzen_ll": -math.inf, "best_epoch": 0}  # nothing scored yet
    for epoch, value in enumerate([1.0, 3.0, 2.0, 3.0, math.nan], start=1):
        best.update(value, epoch)
    assert best.result() == {"best_valid_parzen_ll": 3.0, "best_epoch": 4}
    low = RunningBest("valid_error", "min")
    for epoch, value in enumerate([5.0, 4.0, 4.5], start=1):
        low.update(value, epoch)
    assert (low.value, low.epoch) == (4.0, 2)
    again = RunningBest.from_json(best.to_json(), METRIC, "max")
    assert again == best and RunningBest.from_json(best.to_json(), "valid_error", "min") is None
    assert RunningBest.from_json("not json", METRIC, "max") is None
    # the file sits in the storage path: anything a trial could not have written is refused
    for value, epoch in ((1e400, 3), ("nan", 3), (True, 3), (3.0, -1), (3.0, 0), (3.0, 1e400), (3.0, 2.5),
                         (3.0, 10**8)):
        text = json.dumps({"metric": METRIC, "value": value, "epoch": epoch}).replace('"nan"', "NaN")
        assert RunningBest.from_json(text, METRIC, "max") is None, (value, epoch)
    assert RunningBest.from_json("[" * 100_000, METRIC, "max") is None
    assert RunningBest.from_json(json.dumps({"metric": METRIC, "value": None, "epoch": 0}), METRIC, "max").value is None


def test_asha_and_optuna_rank_the_running_score_pbt_the_epochs_value():
    assert tune_metric(METRIC, "asha") == tune_metric(METRIC, "fifo") == best_key(METRIC) == "best_valid_parzen_ll"
    assert tune_metric(METRIC, "pbt") == METRIC


def checkpoint(epoch, value, valid_epoch=None):
    return f"ckpt{epoch}", {"epoch": epoch, "valid_epoch": valid_epoch or epoch, METRIC: value}


def test_the_best_checkpoint_is_a_scored_epoch_never_a_carried_score_or_a_divergence_marker():
    # every_epochs = 2: epoch 3 carries epoch 2's 10.0 with epoch 3's weights; epoch 5 diverged (-inf)
    kept = [checkpoint(1, 4.0), checkpoint(3, 10.0, valid_epoch=2), checkpoint(2, 10.0), checkpoint(4, 10.0),
            ("marker", {METRIC: -math.inf})]
    assert best_checkpoint(kept, METRIC, "max")[0] == "ckpt4"  # of the two scored 10.0s, the later
    assert best_checkpoint(kept, METRIC, "min")[0] == "ckpt1"
    assert best_checkpoint([("marker", {METRIC: -math.inf})], METRIC, "max") == (None, None)
    # the trainable marks a carried score with checkpoint_score -inf; the trainer's own valid_recon_loss never is
    marked = [("c1", {"epoch": 1, "valid_epoch": 1, METRIC: 9.0, "checkpoint_score": 9.0}),
              ("c2", {"epoch": 2, "valid_epoch": 1, METRIC: 9.0, "checkpoint_score": -math.inf}),
              ("r3", {"epoch": 3, "valid_epoch": 2, "valid_recon_loss": 1.0, "checkpoint_score": 1.0})]
    assert best_checkpoint(marked[:2], METRIC, "max")[0] == "c1"
    assert best_checkpoint(marked, "valid_recon_loss", "min")[0] == "r3"


def tune_result(trial_id, scores, config, error=None):
    """A ``ray.tune.Result`` as a row reads it: one report per epoch, every checkpoint kept."""
    reports = [{"epoch": e, "valid_epoch": e, METRIC: v, "timestamp": e} for e, v in enumerate(scores, start=1)]
    return SimpleNamespace(metrics={"trial_id": trial_id, **reports[-1]}, path=f"/r/{trial_id}", config=config,
                           error=error, best_checkpoints=[(SimpleNamespace(path=f"/r/{trial_id}/{r['epoch']}",
                                                                           filesystem=None), r) for r in reports],
                           metrics_dataframe=pd.DataFrame(reports))


def test_a_row_holds_the_score_its_epoch_and_the_values_the_trial_trained_with():
    space = load_space("likelihood_mnist")
    drops = "optim.reconstruction.drop_epochs"
    late = tune_result("a", [250.0, 266.04, 263.41], {drops: "[50]", "code_dim": 8})
    row = trial_row(late, space, max_epochs=3, runs={"a": "run-a"})
    assert (row.status, row.epochs, row.best_valid, row.best_epoch) == ("COMPLETED", 3, 266.04, 2)
    assert row.checkpoint.path == "/r/a/2" and row.run_id == "run-a"  # the test figure comes from the best epoch's
    assert row.config == {drops: [50], "code_dim": 8}  # the value, not the searcher's text or index
    short = trial_row(tune_result("b", [270.0], {drops: 1}), space, max_epochs=3, runs={})
    assert (short.status, short.config[drops]) == ("STOPPED", [10])  # an older search's index reads back
    assert [r.trial_id for r in ranked([row, short, TrialRow("c", None, "ERROR", 0, None)], "max")] == ["b", "a"]
    record = trial_records([row])[0]
    assert record["best_valid"] == 266.04 and record["best_epoch"] == 2 and "[50]" in record["config"]


def test_the_parent_run_names_the_best_trials_figures_for_what_they_are():
    row = TrialRow("t", "r", "COMPLETED", 30, 266.04, best_epoch=26,
                   test_metrics={"test_parzen_ll": 250.99, "test_parzen_se": 1.9})
    assert best_trial_metrics(row, METRIC) == {
        "best_trial_valid_parzen_ll": 266.04, "best_trial_epoch": 26.0, "best_trial_test_parzen_ll": 250.99,
        "best_trial_test_parzen_se": 1.9}


def summary(best, **extra):
    return SearchSummary("s", "/r/s", "sqlite:///m.db", "aae-x", "p", METRIC, [best], best, None, **extra)


def test_the_summary_names_the_score_its_epoch_the_trials_run_and_its_values():
    best = TrialRow("t1", "run-1", "COMPLETED", 30, 266.04, {"optim.reconstruction.drop_epochs": [10, 50],
                                                              "code_dim": 8}, best_epoch=26)
    text = summary(best, overrides={"budget.max_concurrent": 2}).render()
    assert "best trial t1 (MLflow run run-1): valid_parzen_ll = 266.04, best of 30 epochs, reached at epoch 26" in text
    assert "searched values: code_dim=8, optim.reconstruction.drop_epochs=[10, 50] (drop at epoch 50: not reached in " \
           "30 epochs, never applied)" in text
    assert "--set in effect (differences from the space file): budget.max_concurrent=2" in text
    assert "config: {}" not in text


def test_a_search_with_every_value_fixed_prints_the_values_it_used():
    file_space = load_space("likelihood_mnist")
    pinned = [(key, spec.extremes()[0]) for key, spec in file_space.params.items()]
    space = load_space("likelihood_mnist", [*pinned, ("budget.max_concurrent", 3), ("searcher.type", "random")])
    fixed, overrides = settings_in_effect(file_space, space)
    assert not space.params and set(fixed) == set(file_space.params) and fixed["code_dim"] == 5
    # the pinned values are named once, as fixed
    assert overrides == {"budget.max_concurrent": 3, "searcher.type": "random"}
    text = summary(TrialRow("t1", "r", "COMPLETED", 2, -12.5, {}, best_epoch=2), fixed=fixed).render()
    assert "searched values: none, all values fixed: code_dim=5," in text and "config: {}" not in text
    assert settings_in_effect(None, space) == ({}, {})  # a space file that no longer loads: nothing claimed


def test_drop_epochs_past_the_epochs_trained_are_marked_never_applied():
    # a drop at epoch e applies from epoch e + 1: with 30 epochs a drop at 30 changes nothing, one at 29 does
    assert show_value("optim.adversarial.drop_epochs", (29, 30), 30) == \
        "optim.adversarial.drop_epochs=[29, 30] (drop at epoch 30: not reached in 30 epochs, never applied)"
    assert show_value("optim.adversarial.drop_epochs", [], 30) == "optim.adversarial.drop_epochs=[]"
    assert show_value("code_dim", 50, 30) == "code_dim=50"


def test_tunes_table_shows_the_epochs_value_next_to_the_trials_score():
    columns = metric_columns(METRIC)
    assert columns[METRIC] == "valid" and columns["best_valid_parzen_ll"] == "best valid"
    assert columns["best_epoch"] == "best ep"


def test_mlflow_gets_the_running_score_every_epoch_but_not_tunes_checkpoint_ranking():
    carried = {"epoch": 3, "valid_epoch": 2, METRIC: 150.0, "best_valid_parzen_ll": 150.0, "best_epoch": 2,
               "checkpoint_score": -math.inf}
    assert numeric_metrics(carried) == {"epoch": 3.0, "best_valid_parzen_ll": 150.0, "best_epoch": 2.0}
    fresh = {"epoch": 2, "valid_epoch": 2, METRIC: 150.0, "checkpoint_score": 150.0}
    assert numeric_metrics(fresh) == {"epoch": 2.0, METRIC: 150.0}


def write_checkpoint(folder, index, value, epoch):
    path = folder / f"checkpoint_{index:06d}"
    path.mkdir(parents=True)
    (path / SCORE_FILE).write_text(json.dumps({"metric": METRIC, "value": value, "epoch": epoch}))
    return tune.Checkpoint.from_directory(str(path))


def test_a_restored_trial_goes_on_from_its_own_running_score(tmp_path):
    space = load_space("likelihood_mnist")
    own, other = tmp_path / "trial_a", tmp_path / "trial_b"
    write_checkpoint(own, 0, 5.0, 1)
    mine = write_checkpoint(own, 1, 7.0, 2)
    theirs = write_checkpoint(other, 1, 9.0, 2)
    assert (restored_best(mine, "trial_a", space).value, restored_best(mine, "trial_a", space).epoch) == (7.0, 2)
    # a PBT member that copied trial_b's weights keeps its own score (from its newest checkpoint), not trial_b's
    copied = restored_best(theirs, "trial_a", space)
    assert (copied.value, copied.epoch) == (7.0, 2)
    assert restored_best(theirs, "trial_c", space).value is None  # no checkpoint of its own: starts again


def test_an_older_searchs_indices_read_back_as_the_values_they_stood_for(tmp_path):
    """Searches started before list choices went to the searcher as text logged (MLflow) and told Optuna the value's
    index: --train-best and --warm-start from them draw the same values as text."""
    import optuna

    from aae_tune.search.retrain import sampled_values
    from aae_tune.search.study import open_study, warm_start_points

    space, key = load_space("likelihood_mnist"), "optim.reconstruction.drop_epochs"
    old = SimpleNamespace(info=SimpleNamespace(run_id="r"), data=SimpleNamespace(params={key: "3", "code_dim": "8"},
                                                                                  tags={}))
    new = SimpleNamespace(info=SimpleNamespace(run_id="r"), data=SimpleNamespace(params={key: "[50]"}, tags={}))
    assert sampled_values(old, space) == {key: "[50]", "code_dim": 8} and sampled_values(new, space) == {key: "[50]"}
    url = f"sqlite:///{tmp_path}/optuna.db"
    open_study(url, "old", space)
    indexed = optuna.distributions.CategoricalDistribution([0, 1, 2, 3])
    optuna.load_study(study_name="old", storage=url).add_trial(
        optuna.trial.create_trial(params={key: 3}, distributions={key: indexed}, value=1.0))
    problems: list[str] = []
    assert warm_start_points(url, "old", space, problems) == ([{key: "[50]"}], [1.0]) and not problems
