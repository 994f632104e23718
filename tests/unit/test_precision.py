"""precision: bf16 runs the training step's matrix multiplies in bfloat16 and leaves everything else in fp32."""

from collections import Counter

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from aae_tune.config import ExperimentConfig
from aae_tune.train import Trainer, train

MATMULS = {torch.ops.aten.mm.default, torch.ops.aten.addmm.default}


class MatmulDtypes(TorchDispatchMode):
    """Counts the dtype of every matrix multiply dispatched while active."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: Counter[torch.dtype] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in MATMULS:
            self.seen[args[-1].dtype] += 1
        return func(*args, **(kwargs or {}))


def test_bf16_multiplies_in_bf16_but_keeps_weights_and_validation_in_fp32(small_mnist, tiny_config):
    trainer = Trainer(tiny_config.replace(precision="bf16", epochs=1), small_mnist.head(300, 100, 100))
    with MatmulDtypes() as step:
        trainer.train_epoch()
    with MatmulDtypes() as scoring:
        trainer.validation_recon_loss()
    assert step.seen[torch.bfloat16] > 0 and scoring.seen == Counter({torch.float32: scoring.seen.total()})
    assert step.seen[torch.float32] == scoring.seen.total()  # fp32 only in the epoch's own validation score
    assert all(p.dtype == torch.float32 for p in trainer.model.parameters())
    for opt in trainer.optimizers.values():
        assert all(v.dtype == torch.float32 for state in opt.state.values() for v in state.values() if v.dim())


def test_fp32_never_multiplies_in_bf16(small_mnist, tiny_config):
    trainer = Trainer(tiny_config.replace(epochs=1), small_mnist.head(300, 100, 100))
    with MatmulDtypes() as step:
        trainer.train_epoch()
    assert set(step.seen) == {torch.float32}


@pytest.mark.parametrize(
    "overrides",
    [
        {"recon_cost": "bce", "input_dropout": 0.2},
        {"encoder": "universal", "optim": {"optimizer": "sgd", "reconstruction": {"lr": 0.01},
                                           "adversarial": {"lr": 0.1, "momentum": 0.1}}},
        {"model": "semisupervised", "num_labeled": 30, "net": {"batch_norm": "autoencoder", "hidden": [64, 64]},
         "recon_cost": "half_squared"},
        {"model": "dimred", "num_labeled": 30},
        {"model": "conditioned", "prior": {"kind": "swiss_roll"}, "num_labeled": 500},
    ],
    ids=["bce-input-dropout", "universal-sgd", "semisupervised-bn", "dimred", "conditioned"],
)
def test_bf16_trains_every_variant_like_fp32_and_reproducibly(small_mnist, tiny_config, overrides):
    """Same seed, 2 epochs: bf16 is deterministic, and lands within a few per cent of fp32's validation error."""
    cfg = ExperimentConfig.from_dict(tiny_config.to_dict() | overrides)
    scores = {}
    for precision in ("fp32", "bf16", "bf16"):
        trainer = train(cfg.replace(precision=precision), small_mnist)
        scores.setdefault(precision, []).append(trainer.validation_recon_loss()["valid_recon_loss"])
    (fp32,), (bf16, again) = scores["fp32"], scores["bf16"]
    assert bf16 == again
    assert bf16 == pytest.approx(fp32, rel=0.03), scores
