"""The paper's AAE variants: architecture, what each phase updates, label handling, exported inputs."""

import numpy as np
import pytest
import torch
from torch import nn

from aae_tune.config import ExperimentConfig
from aae_tune.errors import ConfigError
from aae_tune.model.aae import Batch
from aae_tune.model.registry import build_model
from aae_tune.train import Trainer


def cfg_of(**kw) -> ExperimentConfig:
    base = {"net": {"hidden": [32, 32], "disc_hidden": [16], "init_std": 0.1}}
    return ExperimentConfig.from_dict({**base, **kw})


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_conditioned_discriminator_sees_the_label_or_the_unlabeled_class():
    model = build_model(cfg_of(model="conditioned", code_dim=2, prior={"kind": "mixture"}))
    assert model.discriminator[0].in_features == 2 + 11
    y = torch.tensor([3, -1, 9])
    onehot = model.label_one_hot(Batch(torch.zeros(3, 784), y))
    assert onehot.argmax(1).tolist() == [3, 10, 9] and onehot.sum(1).tolist() == [1, 1, 1]


def test_conditioned_prior_samples_come_from_the_labels_components():
    model = build_model(cfg_of(model="conditioned", code_dim=2, prior={"kind": "mixture", "tangential_std": 0.01}))
    y = torch.arange(10).repeat(50)
    z = model.prior_sample(Batch(torch.zeros(len(y), 784), y), gen())
    assert (model.prior.assign(z) == y).float().mean() > 0.97
    unlabeled = model.prior_sample(Batch(torch.zeros(2000, 784), torch.full((2000,), -1)), gen())
    assert len(set(model.prior.assign(unlabeled).tolist())) == 10  # the whole mixture


def test_supervised_decoder_reads_style_and_label_and_exports_both():
    model = build_model(cfg_of(model="supervised", code_dim=15)).eval()
    assert model.decoder[0].in_features == 15 + 10
    x, y = torch.rand(4, 784), torch.tensor([0, 1, 2, 9])
    xy = model.export_example(x, y)
    assert xy.shape == (4, 794)
    assert torch.allclose(model(xy), model.reconstruct(x, None, y))
    assert model.sample(6, gen()).shape == (6, 784)
    with pytest.raises(ConfigError, match="every label"):
        cfg_of(model="supervised", num_labeled=100)


def param_ids(params) -> set[int]:
    return {id(p) for p in params}


def test_semisupervised_phases_update_what_the_paper_says():
    model = build_model(cfg_of(model="semisupervised", code_dim=10, num_labeled=100))
    phases = {p.name: p for p in model.phases()}
    assert list(phases) == ["reconstruction", "discriminator", "generator", "classification"]
    enc = model.encoder
    assert param_ids(phases["classification"].parameters()) == param_ids([*enc.trunk.parameters(),
                                                                           *enc.y_head.parameters()])
    assert param_ids(phases["discriminator"].parameters()) == param_ids([*model.discriminator.parameters(),
                                                                          *model.discriminator_y.parameters()])
    assert param_ids(phases["generator"].parameters()) == param_ids(enc.parameters())
    assert model.decoder[0].in_features == 10 + 10
    assert model.discriminator_y[0].in_features == 10 and model.discriminator[0].in_features == 10
    probs = model.classify(torch.rand(5, 784))
    assert torch.allclose(probs.sum(1), torch.ones(5))


def test_clustering_has_no_classification_phase_and_uses_batch_norm():
    model = build_model(cfg_of(model="clustering", code_dim=5, num_classes=16, net={"batch_norm": "encoder",
                                                                                   "hidden": [32, 32]}))
    assert [p.name for p in model.phases()] == ["reconstruction", "discriminator", "generator"]
    assert any(isinstance(m, nn.BatchNorm1d) for m in model.encoder.modules())
    assert model.classify(torch.rand(3, 784)).shape == (3, 16)


def test_dimred_heads_fixed_or_learned_with_a_penalty():
    fixed = build_model(cfg_of(model="dimred", code_dim=10, num_labeled=100, cluster_heads={"kind": "fixed"}))
    assert "heads" not in dict(fixed.named_parameters()) and torch.equal(fixed.heads, 10 * torch.eye(10))
    y, z = torch.eye(10)[:3], torch.zeros(3, 10)
    assert torch.equal(fixed.representation(y, z), 10 * torch.eye(10)[:3])
    learned = build_model(cfg_of(model="dimred", code_dim=2, num_labeled=100,
                                 cluster_heads={"threshold": 3.0, "penalty": 1.0}))
    recon = {p.name: p for p in learned.phases()}["reconstruction"]
    assert id(learned.heads) in param_ids(recon.parameters())
    with torch.no_grad():  # three heads on a line, 1 apart: pairs at distances 1, 1, 2 -> (3-1)+(3-1)+(3-2)
        learned.heads.copy_(torch.tensor([[0.0, 0], [1, 0], [2, 0]] + [[100.0 * k, 50.0] for k in range(1, 8)]))
    assert abs(learned.head_penalty().item() - 5.0) < 1e-4
    assert learned.decoder[0].in_features == 2 and learned.encode(torch.rand(4, 784)).shape == (4, 2)
    with pytest.raises(ConfigError, match="fixed heads"):
        cfg_of(model="dimred", code_dim=2, cluster_heads={"kind": "fixed"})


def test_classification_batches_come_only_from_the_balanced_labeled_subset(small_mnist):
    cfg = cfg_of(model="semisupervised", code_dim=4, num_labeled=20, epochs=1)
    trainer = Trainer(cfg, small_mnist)
    labeled = trainer.labeled.numpy()
    assert len(labeled) == 20 and np.bincount(small_mnist.train_y[labeled], minlength=10).tolist() == [2] * 10
    batches = trainer.labeled_batches(0, 7)
    assert batches.shape == (7, 20) and set(batches.flatten().tolist()) == set(labeled.tolist())
    assert torch.equal(batches, trainer.labeled_batches(0, 7)) and not torch.equal(batches,
                                                                                   trainer.labeled_batches(1, 7))
    hidden = trainer.train_y.numpy()
    assert (hidden >= 0).sum() == 20 and np.all(hidden[labeled] == small_mnist.train_y[labeled])


@pytest.mark.parametrize("bad", [
    {"model": "semisupervised", "encoder": "gaussian"},
    {"model": "conditioned", "code_dim": 2, "prior": {"kind": "mixture", "num_components": 5}},
    {"model": "clustering", "prior": {"kind": "categorical", "num_components": 8}, "code_dim": 8},
    {"num_classes": 1},
    {"num_labeled": -3},
])
def test_inconsistent_variant_configs_are_refused(bad):
    with pytest.raises(ConfigError):
        cfg_of(**bad)
