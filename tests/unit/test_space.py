"""Search-space files: every shipped file loads, every mistake is reported at once with file, key and fix."""

import pytest

from aae_tune.errors import ConfigError
from aae_tune.search.space import SPACES_DIR, available_spaces, load_space


@pytest.mark.parametrize("name", available_spaces())
def test_every_shipped_space_loads_and_samples(name):
    space = load_space(name)
    assert space.name == name and space.params
    # each edge of each searched range gives a valid experiment config, in normal and smoke mode
    for key, spec in space.params.items():
        for i, value in enumerate(spec.extremes()):
            sampled = {key: spec.searched_values()[i] if spec.is_listed_choice() else value}
            assert space.experiment_config(sampled).to_dict()
            assert space.experiment_config(sampled, smoke=True).net.hidden != (1000, 1000)


def test_likelihood_space_follows_appendix_a1():
    space = load_space("likelihood_mnist")
    cfg = space.experiment_config()
    assert cfg.net.hidden == (1000, 1000) and cfg.net.init_std == 0.01 and cfg.batch_size == 100
    assert cfg.net.output == "sigmoid" and cfg.prior.kind == "gaussian"
    assert {"prior.std", "code_dim", "encoder", "optim.reconstruction.lr", "optim.adversarial.lr",
            "optim.reconstruction.drop_epochs"} <= set(space.params)
    assert space.metric == "valid_parzen_ll" and space.mode == "max"


def test_list_valued_choices_are_searched_by_their_text():
    """The searcher draws "[10]" (what Tune's table, MLflow and Optuna then show), the trial trains with [10]; an
    index drawn by a search started before texts (or logged by one) still reads back."""
    space = load_space("likelihood_mnist")
    key = "optim.reconstruction.drop_epochs"
    spec = space.params[key]
    assert spec.is_listed_choice() and spec.searched_values() == ["[]", "[10]", "[15]", "[50]"]
    assert space.experiment_config({key: "[10]"}).optim.reconstruction.drop_epochs == (10,)
    assert space.decode(key, "[50]") == [50] and space.decode(key, 1) == [10]  # 1: an older search's index
    assert space.encode(key, [50]) == "[50]" and space.encode(key, 3) == "[50]" and space.encode(key, "[]") == "[]"
    assert space.decode("code_dim", 8) == 8 and space.encode("code_dim", 8) == 8  # scalars pass as they are


def test_a_string_spelled_like_a_listed_value_is_refused():
    with pytest.raises(ConfigError, match="names two values"):
        load_space("likelihood_mnist", [("params.optim.reconstruction.drop_epochs.values", [[10], "[10]"])])


BAD_FILE = """
name: broken
experiment:
  code_dim: 8
  batchsize: 100
params:
  prior.std: {distribution: loguniform, low: 0, high: 5}
  optim.reconstruction.lr: {distribution: uniform, low: 0.1, high: 0.01}
  code_dim: {distribution: choice, values: []}
  encoder: {distribution: gaussian_process, low: 1, high: 2}
  optim.adversarial.momentum: {distribution: uniform, low: 0.0, high: 1.5}
budget: {num_samples: 0}
"""


def test_bad_file_reports_everything_in_one_error(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text(BAD_FILE)
    with pytest.raises(ConfigError) as info:
        load_space(str(path))
    msg = str(info.value)
    assert msg.startswith(str(path))
    for expected in [
        "experiment.batchsize: unknown key (did you mean 'batch_size'?)",
        "params.prior.std.low: a log range must be > 0",
        "params.optim.reconstruction.lr.low/high: empty or inverted range [0.1, 0.01]",
        "params.code_dim.values: a choice needs a non-empty list",
        "params.encoder.distribution: 'gaussian_process' is not one of",
        "budget.num_samples: must be >= 1",
    ]:
        assert expected in msg, (expected, msg)


def test_edge_of_range_checked_against_the_experiment_config(tmp_path):
    path = tmp_path / "edge.yaml"
    path.write_text("name: edge\nparams:\n  optim.adversarial.momentum: {distribution: uniform, low: 0.0, high: 1.5}\n")
    with pytest.raises(ConfigError, match=r"params.optim.adversarial.momentum = 1.5: .*must be in \[0, 1\)"):
        load_space(str(path))


def test_overrides_are_validated_like_the_file():
    space = load_space("likelihood_mnist", [("budget.num_samples", 3), ("code_dim", 4),
                                            ("params.prior.std.high", 3.0)])
    assert space.budget.num_samples == 3 and "code_dim" not in space.params
    assert space.experiment_config().code_dim == 4 and space.params["prior.std"].high == 3.0
    with pytest.raises(ConfigError, match="unknown field 'code_dm' \\(did you mean 'code_dim'\\?\\)"):
        load_space("likelihood_mnist", [("code_dm", 4)])
    with pytest.raises(ConfigError, match="budget.max_epochs: expected an integer"):
        load_space("likelihood_mnist", [("budget.max_epochs", "many")])


def test_unknown_space_lists_the_shipped_ones():
    with pytest.raises(ConfigError, match="did you mean 'likelihood_mnist'.*available: .*likelihood_mnist"):
        load_space("likelihod_mnist")


def test_malformed_yaml(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_space(str(path))
    assert SPACES_DIR.is_dir()


def test_extends_merges_over_the_named_space_and_drops_null_params(tmp_path):
    child = tmp_path / "child.yaml"
    child.write_text("extends: semisupervised_mnist_100\nname: child\nexperiment: {num_labeled: 1000}\n"
                     "params:\n  prior.std: null\n  code_dim: {distribution: choice, values: [5, 10]}\n")
    space, base = load_space(str(child)), load_space("semisupervised_mnist_100")
    assert space.name == "child" and space.experiment_config().num_labeled == 1000
    assert space.experiment_config().net == base.experiment_config().net  # inherited
    assert "prior.std" not in space.params and "code_dim" in space.params
    assert set(space.params) - {"code_dim"} == set(base.params) - {"prior.std"}


def test_extends_cycle_is_refused(tmp_path):
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text(f"extends: {b}\nname: a\n")
    b.write_text(f"extends: {a}\nname: b\n")
    with pytest.raises(ConfigError, match="without cycles"):
        load_space(str(a))


def test_pbt_mutates_only_what_a_copied_checkpoint_can_take():
    space = load_space("likelihood_mnist", [("scheduler.type", "pbt"), ("searcher.type", "random")])
    mutable = set(space.pbt_mutations())
    assert {"optim.reconstruction.lr", "optim.adversarial.momentum", "optim.reconstruction.drop_epochs",
            "input_dropout", "recon_cost"} <= mutable
    # weight shapes (code size, encoder, prior, the Dropout modules' places) and the optimizer's state layout
    assert not mutable & {"code_dim", "encoder", "prior.std", "hidden_dropout"}


def test_pbt_refuses_a_search_algorithm_and_a_space_with_nothing_to_mutate():
    with pytest.raises(ConfigError) as err:
        load_space("likelihood_mnist", [("scheduler.type", "pbt"), ("scheduler.quantile_fraction", 0.7),
                                        ("params", {"code_dim": {"distribution": "choice", "values": [4, 8]}})])
    message = str(err.value)
    assert "set searcher.type: random" in message  # TPE is the default searcher
    assert "needs a searched value it can change mid-run" in message
    assert "quantile_fraction: must be in (0, 0.5]" in message


def test_pbt_mutations_stay_inside_the_space():
    from aae_tune.search.driver import clip_to_ranges, pbt_mutation

    space = load_space("likelihood_mnist", [("scheduler.type", "pbt"), ("searcher.type", "random")])
    mutable = space.pbt_mutations()
    assert pbt_mutation(mutable["optim.reconstruction.drop_epochs"]) == ["[]", "[10]", "[15]", "[50]"]  # as text
    assert pbt_mutation(mutable["recon_cost"]) == ["squared", "bce"]
    lr = mutable["optim.reconstruction.lr"]
    clipped = clip_to_ranges({"optim.reconstruction.lr": lr.high * 1.2, "optim.adversarial.lr": 0.0}, mutable)
    assert clipped["optim.reconstruction.lr"] == lr.high
    assert clipped["optim.adversarial.lr"] == mutable["optim.adversarial.lr"].low


@pytest.mark.parametrize("name", available_spaces())
def test_asha_never_judges_adversarial_training_after_two_epochs(name):
    # measured (benchmarks/learning_curves.py, RESULTS.md): rankings after 2 epochs do not hold at 50
    space = load_space(name)
    assert space.scheduler.type != "asha" or space.scheduler.grace_period >= 10


@pytest.mark.parametrize("name", available_spaces())
def test_parzen_spaces_rank_trials_with_the_protocols_sample_count(name):
    # measured (benchmarks/parzen_ceiling.py, RESULTS.md): a 2K-sample estimate ranked trained models with Spearman
    # 0.43 against the 10K-sample protocol's validation figure; a Parzen figure depends on its sample count
    space = load_space(name)
    assert space.metric != "valid_parzen_ll" or space.evaluation.valid_samples == space.evaluation.final_samples


def test_tpe_options_reach_optunas_sampler(tmp_path):
    from aae_tune.search.api import make_request
    from aae_tune.search.driver import make_searcher

    def sampler(**overrides):
        request = make_request("likelihood_mnist", overrides=overrides, tracking_uri=f"sqlite:///{tmp_path}/m.db")
        return make_searcher(request).searcher._sampler  # ConcurrencyLimiter -> OptunaSearch -> TPESampler

    assert (sampler()._multivariate, sampler()._constant_liar) == (True, True)  # the space file's, measured
    plain = sampler(**{"searcher.multivariate": False, "searcher.constant_liar": False})
    assert (plain._multivariate, plain._constant_liar) == (False, False)  # Optuna's defaults, the typed defaults
    assert load_space("semisupervised_mnist_100").searcher.multivariate is False


def test_an_optuna_search_with_every_value_fixed_is_refused_before_ray_starts():
    """Optuna refuses an empty space only once Ray runs (an error deep in Tune): say it first, with the fix."""
    with pytest.raises(ConfigError, match=r"nothing to search.*--set searcher.type=random"):
        load_space("likelihood_mnist", [("params", {})])
    assert not load_space("likelihood_mnist", [("params", {}), ("searcher.type", "random")]).params
