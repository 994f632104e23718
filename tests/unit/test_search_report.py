"""The search report's arithmetic and the compact table's column names."""

from aae_tune.search.driver import short_name
from aae_tune.search.report import asha_rungs, best_so_far, optuna_distribution, study_of
from aae_tune.search.results import TrialRow
from aae_tune.search.space import ParamSpec, load_space
from aae_tune.search.summary import SearchSummary


def test_best_so_far_follows_report_time_not_list_order():
    reports = [(3.0, 5.0), (1.0, 2.0), (2.0, 1.0), (4.0, 4.0)]
    assert best_so_far(reports, "max") == [2.0, 2.0, 5.0, 5.0]
    assert best_so_far(reports, "min") == [2.0, 1.0, 1.0, 1.0]


def test_asha_rungs_are_grace_times_powers_of_the_reduction_factor():
    space = load_space("likelihood_mnist", [("scheduler.grace_period", 2), ("scheduler.reduction_factor", 3)])
    assert asha_rungs(space, 20) == [2, 6, 18]
    assert asha_rungs(load_space("likelihood_mnist", [("scheduler.type", "fifo")]), 20) == []


def test_study_of_rows_keeps_scored_trials_with_their_parameters():
    space = load_space("likelihood_mnist")
    config = {key: spec.extremes()[0] for key, spec in space.params.items()}
    rows = [TrialRow("a", None, "COMPLETED", 3, 10.0, config), TrialRow("b", None, "ERROR", 1, None, config)]
    study = study_of(rows, space)
    assert [t.value for t in study.trials] == [10.0] and set(study.trials[0].params) == set(space.params)
    assert optuna_distribution(ParamSpec("choice", values=([1, 2], [3]))).choices == ("[1, 2]", "[3]")


def test_short_column_names():
    assert short_name("optim.reconstruction.lr") == "rec.lr"
    assert short_name("optim.adversarial.momentum") == "adv.mom"
    assert short_name("prior.std") == "prior.std"


def test_summary_puts_the_data_caveat_next_to_every_figure():
    best = TrialRow("t1", "r1", "COMPLETED", 2, -12.5, {"code_dim": 5},
                    test_metrics={"test_parzen_ll": -48.9, "test_parzen_se": 0.6, "test_parzen_sigma": 0.27,
                                  "test_parzen_samples": 300})
    summary = SearchSummary("s", "/r/s", "sqlite:///m.db", "aae-x", "p", "valid_parzen_ll", [best], best, None,
                            data_caveat="on the embedded subset")
    figures = [line for line in summary.render().splitlines() if "-12.50" in line or "nats" in line]
    assert len(figures) == 2 and all(line.endswith("[on the embedded subset]") for line in figures), figures
