"""benchmarks/asha_replay.py replays Ray Tune's real ASHAScheduler over recorded curves: where it stops a trial, and
how many trial-epochs it spends before a report reaches a target, against hand-worked schedules."""

import pytest

from tests.helpers import load_benchmark

asha_replay = load_benchmark("asha_replay")


def trials(*curves: list[float]) -> list:
    return [asha_replay.Recorded(started=i, reports=tuple(c)) for i, c in enumerate(curves)]


MAX_EPOCHS = 4


def scheduler(spec: str):
    return asha_replay.asha(spec, MAX_EPOCHS, "score", "max")


# A leads at epoch 1, B starts worst and ends best, C is steady. Two train at once, one epoch each per step.
A, B, C = [1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 0.0, 10.0], [5.0, 5.0, 5.0, 5.0]


def test_fifo_trains_every_trial_to_the_end():
    # step 1: A1 B1 (2 spent), step 2: A2 B2 (4), step 3: A3 B3 (6), step 4: A4 (7) B4 = 10 (8)
    assert asha_replay.replay(trials(A, B, C), None, "score", "max", target=10.0) == 8
    # C starts once both A's are done: its first report is the 9th trial-epoch
    assert asha_replay.replay(trials(A, A, C), None, "score", "max", target=5.0) == 9


def test_asha_stops_the_slow_starter_and_starts_the_next_configuration():
    # rungs at epochs 1 and 2 (grace 1, factor 2, max_t 4): B's 0.0 at epoch 1 is below A's 1.0 -> stopped after
    # 2 trial-epochs, so B's 10.0 is never reported; C starts at once and reports 5.0 as the 4th trial-epoch
    assert asha_replay.replay(trials(A, B, C), scheduler("g1-rf2"), "score", "max", target=10.0) is None
    assert asha_replay.replay(trials(A, B, C), scheduler("g1-rf2"), "score", "max", target=5.0) == 4
    # grace 4 = max_t: no rung before the end, so ASHA behaves as FIFO
    assert asha_replay.replay(trials(A, B, C), scheduler("g4-rf2"), "score", "max", target=10.0) == 8


def test_minimised_metrics_and_short_curves():
    low = [[4.0, 3.0], [5.0, 1.0, 0.5]]  # a trial that diverged after 2 epochs reports only those
    asha = asha_replay.asha("g1-rf2", MAX_EPOCHS, "score", "min")
    # epoch 1: 4.0 recorded, 5.0 worse -> the second trial stops; the first trains on, reaching 3.0 at its epoch 2
    assert asha_replay.replay(trials(*low), asha, "score", "min", target=3.0) == 3
    assert asha_replay.replay(trials(*low), None, "score", "min", target=1.0) == 4


def test_asha_ranks_a_rung_by_the_running_score_as_the_search_does():
    # rung at epoch 2 (grace 2, factor 2, max_t 4): D peaked at 6.0 then fell to 1.0, E holds 3.0. By the running
    # score (the best so far: the search's best_<metric>) D keeps 6.0 and E stops at the rung (4 trial-epochs), so
    # D reaches 7.0 as the 6th; ranked by the epoch's own value (1.0 against 3.0) both would train on, 7 spent
    D, E = [6.0, 1.0, 1.0, 7.0], [3.0, 3.0, 3.0, 3.0]
    assert asha_replay.replay(trials(D, E), scheduler("g2-rf2"), "score", "max", target=7.0) == 6


@pytest.mark.parametrize("bad", ["g1", "rf2-g1", "gx-rf2", "g1-r2"])
def test_a_setting_it_cannot_read_is_one_clear_error(bad):
    with pytest.raises(SystemExit, match="write g<grace>-rf<factor>"):
        asha_replay.parse_setting(bad)
