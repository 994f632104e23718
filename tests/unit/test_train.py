"""The shared training loop: learning on real MNIST, seeds, exact resume, checkpoint safety, divergence."""

import pytest
import torch

from aae_tune.config import ExperimentConfig
from aae_tune.errors import CheckpointError, TrainingDiverged
from aae_tune.model.io import resolve_device
from aae_tune.names import CHECKPOINT_FILE
from aae_tune.train import Trainer, train

METRICS = {"recon_loss", "disc_loss", "disc_accuracy", "gen_loss", "valid_recon_loss", "lr_reconstruction",
           "lr_adversarial", "epoch_time_s"}


def states_equal(a: Trainer, b: Trainer) -> bool:
    sa, sb = a.model.state_dict(), b.model.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_learns_on_real_mnist(small_mnist, tiny_config):
    seen = []
    cfg = tiny_config.replace(epochs=4, code_dim=4)
    trainer = train(cfg, small_mnist, callback=lambda e, m, t: seen.append((e, m)))
    assert [e for e, _ in seen] == [1, 2, 3, 4]
    assert set(seen[0][1]) >= METRICS
    first, last = seen[0][1], seen[-1][1]
    mean_image = torch.as_tensor(small_mnist.train_x).mean(0)
    baseline = (torch.as_tensor(small_mnist.valid_x) - mean_image).pow(2).sum(1).mean().item()  # ~52
    assert last["valid_recon_loss"] < first["valid_recon_loss"]
    assert last["valid_recon_loss"] < 0.93 * baseline  # beats predicting the mean image
    # the regularization phase pulls the codes' spread towards the prior's (N(0, 1) here)
    codes = trainer.model.encode(trainer.valid_x)
    assert 0.3 < codes.std(0).mean().item() < 3.0


def test_same_seed_same_numbers_other_seed_other_numbers(small_mnist, tiny_config):
    runs = [train(tiny_config.replace(epochs=1, seed=s), small_mnist) for s in (7, 7, 8)]
    assert states_equal(runs[0], runs[1])
    assert not states_equal(runs[0], runs[2])


@pytest.mark.parametrize(
    "overrides",
    [
        {"encoder": "deterministic", "input_dropout": 0.2},
        {"encoder": "gaussian", "optim": {"optimizer": "sgd", "reconstruction": {"lr": 0.01, "drop_epochs": [3]},
                                          "adversarial": {"lr": 0.1, "momentum": 0.1, "drop_epochs": [2]}}},
        {"encoder": "universal", "input_noise_std": 0.1},
        # the variants: labeled mini-batches, two adversaries, batch norm, learned cluster heads, conditioned D
        {"model": "semisupervised", "num_labeled": 30, "net": {"batch_norm": "encoder", "hidden": [64, 64]},
         "recon_cost": "half_squared", "hidden_dropout": 0.2},
        {"model": "dimred", "num_labeled": 30, "optim": {"classification": {"drop_epochs": [3]}}},
        {"model": "conditioned", "prior": {"kind": "swiss_roll"}, "num_labeled": 500},
        {"precision": "bf16", "encoder": "gaussian", "recon_cost": "bce"},
    ],
    ids=["deterministic-adam-dropout", "gaussian-sgd-lr-drops", "universal-noise", "semisupervised-bn",
         "dimred-learned-heads", "conditioned-swiss-roll", "bf16-gaussian-bce"],
)
def test_resume_is_exact(small_mnist, tiny_config, tmp_path, overrides):
    """4 epochs in one go == 2 epochs, save, restore in a fresh trainer, 2 more epochs (bit for bit)."""
    base = tiny_config.to_dict() | {"epochs": 4}
    cfg = ExperimentConfig.from_dict({**base, **overrides})
    straight = train(cfg, small_mnist)
    train(cfg, small_mnist, epochs=2, checkpoint_dir=tmp_path)
    resumed = train(cfg, small_mnist, checkpoint_dir=tmp_path, resume=True)
    assert resumed.epoch == 4
    assert states_equal(straight, resumed)
    for name, opt in straight.optimizers.items():
        assert opt.param_groups[0]["lr"] == resumed.optimizers[name].param_groups[0]["lr"]


def test_checkpoint_from_another_architecture_is_refused(small_mnist, tiny_config, tmp_path):
    train(tiny_config.replace(epochs=1), small_mnist, checkpoint_dir=tmp_path)
    other = Trainer(tiny_config.replace(code_dim=3), small_mnist)
    with pytest.raises(CheckpointError, match="code_dim"):
        other.load(tmp_path)


def test_corrupt_or_missing_checkpoint_is_a_clear_error(small_mnist, tiny_config, tmp_path):
    trainer = Trainer(tiny_config, small_mnist)
    with pytest.raises(CheckpointError, match="no checkpoint"):
        trainer.load(tmp_path)
    (tmp_path / CHECKPOINT_FILE).write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        trainer.load(tmp_path)


def test_save_replaces_atomically_and_leaves_no_temp_files(small_mnist, tiny_config, tmp_path):
    trainer = train(tiny_config.replace(epochs=2), small_mnist, checkpoint_dir=tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == [CHECKPOINT_FILE]
    fresh = Trainer(tiny_config, small_mnist)
    fresh.load(tmp_path)
    assert fresh.epoch == 2 and states_equal(fresh, trainer)


def test_divergence_stops_the_run_with_a_reason(small_mnist, tiny_config):
    cfg = ExperimentConfig.from_dict(tiny_config.to_dict() | {"optim": {"reconstruction": {"lr": 1e6}}})
    with pytest.raises(TrainingDiverged, match="non-finite"):
        train(cfg, small_mnist)


def test_device_selection():
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device(None).type == expected and resolve_device("auto").type == expected


def test_resuming_with_other_rates_takes_the_new_rates(tiny_config, small_mnist, tmp_path):
    """A run resumed with another schedule (or a trial continuing another's checkpoint with mutated rates) trains
    with the rates, momenta and drops of its own config, not those stored in the optimizer state."""
    a = tiny_config.replace(epochs=2)
    train(a, small_mnist, checkpoint_dir=tmp_path)
    b = ExperimentConfig.from_dict({**a.to_dict(), "epochs": 4, "optim": {
        "optimizer": a.optim.optimizer,
        "reconstruction": {"lr": 0.004, "momentum": 0.7, "drop_epochs": [2, 3], "drop_factor": 0.5},
        "adversarial": {"lr": 0.0007, "momentum": 0.3}}})
    trainer = Trainer(b, small_mnist)
    trainer.load(tmp_path)
    assert trainer.epoch == 2
    recon = trainer.optimizers["reconstruction"].param_groups[0]
    assert recon["lr"] == pytest.approx(0.004 * 0.5) and recon["betas"][0] == 0.7  # one drop passed (epoch 2)
    assert trainer.optimizers["discriminator"].param_groups[0]["lr"] == pytest.approx(0.0007)
    trainer.train_epoch()  # epoch 3: the second drop
    assert recon["lr"] == pytest.approx(0.004 * 0.25)

    same = Trainer(a, small_mnist)  # the config that wrote the checkpoint: its restored state is left exact
    same.load(tmp_path)
    assert same.optimizers["reconstruction"].param_groups[0]["lr"] == a.optim.reconstruction.lr
