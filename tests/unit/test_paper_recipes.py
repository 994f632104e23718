"""Every shipped space's defaults are Appendix A's recipe where the paper gives one, and the paper's value of every
searched field lies inside its searched range. The table below is typed from the paper (../shared/paper), A.1-A.3."""

from __future__ import annotations

from typing import Any

import pytest

from aae_tune.search.space import ParamSpec, available_spaces, load_space

SGD_A21 = {  # App. A.2.1: SGD with momentum; every rate divided by 10 after epochs 50 and 1000
    "optim.optimizer": "sgd",
    "optim.reconstruction.lr": 0.01, "optim.reconstruction.momentum": 0.9,
    "optim.reconstruction.drop_epochs": (50, 1000), "optim.reconstruction.drop_factor": 0.1,
    "optim.classification.lr": 0.1, "optim.classification.momentum": 0.9,
    "optim.classification.drop_epochs": (50, 1000), "optim.classification.drop_factor": 0.1,
    "optim.adversarial.lr": 0.1, "optim.adversarial.momentum": 0.1,
    "optim.adversarial.drop_epochs": (50, 1000), "optim.adversarial.drop_factor": 0.1,
}
NETS_1000 = {"net.hidden": (1000, 1000), "net.disc_hidden": (1000, 1000), "net.init_std": 0.01, "batch_size": 100}
A21_MNIST = {  # App. A.2.1
    **NETS_1000, **SGD_A21, "code_dim": 10, "num_classes": 10, "prior.std": 1.0, "net.output": "sigmoid",
    "recon_cost": "half_squared", "input_noise_std": 0.3, "input_dropout": 0.0, "hidden_dropout": 0.0,
    "net.batch_norm": "none",
}
A3 = {  # App. A.3
    "net.hidden": (3000, 3000), "net.disc_hidden": (3000, 3000), "net.init_std": 0.01, "net.output": "sigmoid",
    "recon_cost": "half_squared", "code_dim": 5, "prior.std": 1.0, "optim.optimizer": "sgd",
    "optim.reconstruction.lr": 0.01, "optim.reconstruction.momentum": 0.9, "optim.reconstruction.drop_epochs": (50,),
    "optim.adversarial.lr": 0.1, "optim.adversarial.momentum": 0.1, "optim.adversarial.drop_epochs": (50,),
    "input_dropout": 0.2, "input_noise_std": 0.0, "hidden_dropout": 0.0, "net.batch_norm": "encoder",
}
PAPER: dict[str, dict[str, Any]] = {
    # A.1: no optimizer settings are given, so none are checked
    "likelihood_mnist": {**NETS_1000, "code_dim": 8, "prior.std": 5.0, "encoder": "deterministic",
                         "net.output": "sigmoid", "recon_cost": "squared", "net.batch_norm": "none"},
    "semisupervised_mnist_100": {**A21_MNIST, "num_labeled": 100},
    "semisupervised_mnist_1000": {**A21_MNIST, "num_labeled": 1000},
    "semisupervised_mnist_all": {**A21_MNIST, "num_labeled": None},
    "semisupervised_svhn_1000": {  # A.2.2
        "code_dim": 20, "num_labeled": 1000, "net.output": "linear", "net.batch_norm": "autoencoder",
        "input_dropout": 0.2, "input_noise_std": 0.0, "optim.optimizer": "sgd",
        "optim.reconstruction.lr": 0.0001, "optim.reconstruction.momentum": 0.9,
        "optim.reconstruction.drop_epochs": (250,), "optim.classification.lr": 0.1,
        "optim.classification.momentum": 0.9, "optim.classification.drop_epochs": (250,),
        "optim.adversarial.lr": 0.01, "optim.adversarial.momentum": 0.1, "optim.adversarial.drop_epochs": (250,),
    },
    "clustering_mnist_16": {**A3, "num_classes": 16},
    "clustering_mnist_30": {**A3, "num_classes": 30},
}
NO_RECIPE = {  # Appendix A gives no recipe for these: the space file says so
    "prior_mixture_mnist", "swiss_roll_mnist", "supervised_mnist", "dimred_mnist_2d_100", "dimred_mnist_2d_1000",
    "dimred_mnist_10d_100", "dimred_mnist_2d_unsup_20",
}


def value_at(config: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        config = getattr(config, part)
    return config


def covers(spec: ParamSpec, value: Any) -> bool:
    """Whether the searched distribution can produce ``value``."""
    if spec.distribution in ("choice", "grid"):
        plain = [tuple(v) if isinstance(v, list) else v for v in spec.values]
        return value in plain
    return spec.low <= value <= spec.high if spec.distribution != "randint" else spec.low <= value < spec.high


def test_every_shipped_space_is_in_the_table():
    assert set(PAPER) | NO_RECIPE == set(available_spaces())


@pytest.mark.parametrize("name", sorted(PAPER))
def test_defaults_are_the_papers_recipe(name):
    cfg = load_space(name).experiment_config()
    wrong = {key: (value_at(cfg, key), paper) for key, paper in PAPER[name].items() if value_at(cfg, key) != paper}
    assert not wrong, f"{name}: (default, paper) differ for {wrong}"


@pytest.mark.parametrize("name", sorted(PAPER))
def test_the_papers_values_lie_inside_every_searched_range(name):
    space = load_space(name)
    outside = {key: PAPER[name][key] for key, spec in space.params.items()
               if key in PAPER[name] and not covers(spec, PAPER[name][key])}
    assert not outside, f"{name}: the paper's values fall outside the searched ranges: {outside}"


def test_the_spaces_without_a_recipe_say_so():
    from aae_tune.search.space import resolve_space_path

    for name in NO_RECIPE:
        text, parent = resolve_space_path(name).read_text(), name
        while "extends:" in text and "Appendix A gives no recipe" not in text:  # said once, in the base space
            parent = text.split("extends:", 1)[1].split()[0]
            text = resolve_space_path(parent).read_text()
        assert "Appendix A gives no recipe" in text, name


def test_dropouts_are_searched_and_the_optimizer_can_be():
    for name in PAPER:
        assert {"input_dropout", "hidden_dropout"} <= set(load_space(name).params), name
    optimizers = ("params.optim.optimizer", {"distribution": "choice", "values": ["sgd", "adam"]})
    space = load_space("semisupervised_mnist_100", [optimizers])
    assert space.experiment_config({"optim.optimizer": "adam"}).optim.optimizer == "adam"
