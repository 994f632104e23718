"""What a trial's Tune result becomes in MLflow."""

from aae_tune.search.tracking import numeric_metrics


def test_a_score_carried_from_an_earlier_epoch_is_not_logged_again():
    # evaluation.every_epochs = 2: epoch 3 reports epoch 2's Parzen score to Tune (its schedulers need one)
    fresh = {"epoch": 2, "valid_epoch": 2, "valid_parzen_ll": 150.0, "valid_recon_loss": 30.0, "done": False}
    carried = {"epoch": 3, "valid_epoch": 2, "valid_parzen_ll": 150.0, "valid_recon_loss": 29.0, "pid": 7}
    assert numeric_metrics(fresh) == {"epoch": 2.0, "valid_parzen_ll": 150.0, "valid_recon_loss": 30.0}
    # the trainer's own validation reconstruction is computed every epoch and stays
    assert numeric_metrics(carried) == {"epoch": 3.0, "valid_recon_loss": 29.0}
    assert numeric_metrics({"epoch": 1, "recon_loss": float("nan"), "loss": 2}) == {"epoch": 1.0, "loss": 2.0}
