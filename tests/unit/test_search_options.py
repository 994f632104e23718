"""SearchOptions (aae_tune.search.options): one typed, frozen object that the command line parses into and the
Python API builds from keywords, with one set of defaults, validated by build_request in one message."""

import dataclasses
import inspect
from pathlib import Path

import numpy as np
import pytest

from aae_tune.errors import ConfigError
from aae_tune.schema import parse_overrides
from aae_tune.search.api import make_request, run
from aae_tune.search.cli import build_parser, parse_options
from aae_tune.search.options import SearchOptions, option_defaults
from aae_tune.search.request import build_request

NAMES = [f.name for f in dataclasses.fields(SearchOptions)]


@pytest.fixture
def where(tmp_path) -> dict[str, str]:
    """A storage path and an MLflow store in a folder of their own (a dry pre-flight writes neither)."""
    return {"storage_path": str(tmp_path / "ray"), "tracking_uri": f"sqlite:///{tmp_path}/mlflow.db"}


def test_the_command_lines_defaults_are_the_options_defaults():
    parsed, dry_run = parse_options(["--space", "likelihood_mnist"])
    assert parsed == SearchOptions("likelihood_mnist") and not dry_run
    actions = {a.dest: a for a in build_parser()._actions}
    assert set(actions) - {"help", "dry_run"} == set(NAMES), "one flag per option, one option per flag"
    for name, default in option_defaults().items():
        assert actions[name].default == (list(default) if name == "overrides" else default), name
    assert actions["space"].required and "space" not in option_defaults()


def test_options_are_frozen():
    options = SearchOptions("likelihood_mnist")
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.seed = 3  # type: ignore[misc]


def test_the_api_and_the_command_line_build_equal_options():
    argv = ["--space", "likelihood_mnist", "--num-samples", "4", "--max-epochs", "3", "--seed", "7", "--smoke",
            "--storage-path", "/tmp/x", "--cpus-per-trial", "2", "--gpus-per-trial", "0.5", "--name", "s1",
            "--max-failures", "-1", "--top-k", "2", "--pending-timeout", "30", "--dashboard"]
    keywords = {"num_samples": 4, "max_epochs": 3, "seed": 7, "smoke": True, "storage_path": "/tmp/x",
                "cpus_per_trial": 2.0, "gpus_per_trial": 0.5, "name": "s1", "max_failures": -1, "top_k": 2,
                "pending_timeout": 30.0, "dashboard": True}
    assert parse_options(argv)[0] == SearchOptions.from_kwargs("likelihood_mnist", **keywords)
    # --set keeps its texts (parsed by the pre-flight, problems and all); the API's mapping gives the pairs they mean
    texts = parse_options(["--space", "x", "--set", "code_dim=8", "--set", "prior.std=2.5"])[0].overrides
    pairs = SearchOptions.from_kwargs("x", overrides={"code_dim": 8, "prior.std": 2.5}).overrides
    assert parse_overrides(list(texts)) == list(pairs)


def test_the_api_and_the_command_line_build_equal_requests(where):
    argv = ["--space", "likelihood_mnist", "--smoke", "--name", "same", "--seed", "5", "--set", "code_dim=6",
            "--storage-path", where["storage_path"], "--tracking-uri", where["tracking_uri"]]
    from_argv = build_request(parse_options(argv)[0])
    from_api = make_request("likelihood_mnist", smoke=True, name="same", seed=5, overrides={"code_dim": 6}, **where)
    assert from_argv == from_api
    assert build_request(build_parser().parse_args(argv)) == from_api  # a Namespace is still taken, as one


def test_an_unknown_keyword_is_one_error_naming_the_known_ones():
    with pytest.raises(ConfigError) as err:
        make_request("likelihood_mnist", num_sample=3, cpus=2)
    problems = err.value.problems
    assert problems[0] == "num_sample: not a search option (did you mean 'num_samples'?)"
    assert problems[1].startswith("cpus: not a search option")
    assert problems[2] == f"the options are: {', '.join(n for n in NAMES if n != 'space')}"


def test_values_of_the_wrong_type_are_refused_together(where):
    with pytest.raises(ConfigError) as err:
        make_request("likelihood_mnist", num_samples="8", seed=True, cpus_per_trial="2", overrides="code_dim=8",
                     **where)
    assert err.value.problems == [
        "num_samples: expected an integer or None, got '8'",
        "seed: expected an integer, got True",  # a bool is no count, though Python calls it an int
        "cpus_per_trial: expected a number, got '2'",
        "overrides: expected a mapping of dotted keys to values (or --set KEY=VALUE texts), got 'code_dim=8'",
    ]


def test_numpy_numbers_and_paths_are_taken(tmp_path, where):
    request = make_request(Path("likelihood_mnist"), num_samples=np.int64(3), cpus_per_trial=np.float32(1.0),
                           smoke=True, storage_path=tmp_path / "ray", tracking_uri=where["tracking_uri"])
    assert request.num_samples == 3 and request.storage_path == str(tmp_path / "ray")


def test_every_problem_of_the_options_and_the_space_is_one_message(where):
    with pytest.raises(ConfigError) as err:
        make_request("likelihood_mnist", num_samples=0, seed=-1, resume=True, cpus_per_trial=0,
                     overrides={"cod_dim": 3}, **where)
    text = str(err.value)
    for expected in ("--num-samples: must be >= 1, got 0", "--seed: must be in [0, 4294967295]",
                     "--resume needs --name", "--cpus-per-trial: must be > 0, got 0",
                     "unknown field 'cod_dim' (did you mean 'code_dim'?)"):
        assert expected in text, text
    assert len(err.value.problems) == 5


def test_a_bad_space_alone_keeps_its_own_message(where):
    with pytest.raises(ConfigError) as err:
        make_request("likelihood_mnist", overrides={"cod_dim": 3}, **where)
    assert err.value.source != "command line" and len(err.value.problems) == 1


def test_the_api_signature_lists_every_option_with_its_default():
    for function in (make_request, run):
        params = inspect.signature(function).parameters
        assert list(params)[0] == "space"
        assert {n: params[n].default for n in NAMES if n not in ("space", "overrides")} == \
            {n: d for n, d in option_defaults().items() if n != "overrides"}
        assert params["overrides"].default is None
    assert "data" in inspect.signature(run).parameters
