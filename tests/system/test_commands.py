"""The commands a user reaches for besides a search: list the spaces, check a search without running it."""

import os
import subprocess
import sys

import pytest
import yaml

from aae_tune.search.space import available_spaces, load_space
from tests.helpers import REPO_ROOT


def run(args: list[str], cwd, **env: str) -> subprocess.CompletedProcess:
    environ = {**os.environ, "PYTHONPATH": str(REPO_ROOT), **env}
    return subprocess.run([sys.executable, "-m", *args], cwd=cwd, env=environ, capture_output=True, text=True,
                          timeout=120)


def test_spaces_lists_every_shipped_space_with_its_description(tmp_path):
    proc = run(["aae_tune.cli", "spaces"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    for name in available_spaces():
        line = next(line for line in proc.stdout.splitlines() if line.startswith(name + " "))
        assert load_space(name).description in line


def test_dry_run_checks_and_prints_the_search_and_starts_nothing(tmp_path):
    """--dry-run (with the Ray examples' --smoke-test) prints the resolved space and the trial resources; the
    tracking store comes from MLFLOW_TRACKING_URI when --tracking-uri is absent; nothing is written."""
    env_uri = f"sqlite:///{tmp_path}/from_env.db"
    proc = run(["aae_tune.search", "--space", "likelihood_mnist", "--dry-run", "--smoke-test", "--cpus-per-trial",
                "0.5", "--gpus-per-trial", "0.25", "--max-failures", "5", "--set", "code_dim=6"], tmp_path,
               MLFLOW_TRACKING_URI=env_uri, RAY_OVERRIDE_RESOURCES='{"GPU": 1}')  # a GPU share needs a GPU
    assert proc.returncode == 0, proc.stderr
    header = [line for line in proc.stdout.splitlines() if line.startswith("#")]
    assert any("0.5 CPU, GPU: 0.25; restarts on failure: 5" in line for line in header), header
    assert any(f"MLflow: {env_uri}" in line for line in header) and any(", smoke" in line for line in header)
    resolved = yaml.safe_load(proc.stdout)
    assert resolved["name"] == "likelihood_mnist" and resolved["experiment"]["code_dim"] == 6
    assert "code_dim" not in resolved["params"]  # fixed by --set, no longer searched
    assert list(tmp_path.iterdir()) == []  # no store, no results folder


def test_python_api_validates_like_the_command_line(tmp_path):
    """make_request (behind aae_tune.search.run) reports every problem in one ConfigError, before Ray starts."""
    import ray

    from aae_tune.errors import ConfigError
    from aae_tune.search.api import make_request

    ray_was_up = ray.is_initialized()  # the session's shared Ray may already run when other system tests went first
    with pytest.raises(ConfigError) as err:
        make_request("likelihood_mnist", num_samples=0, overrides={"cod_dim": 3},
                     storage_path=str(tmp_path / "r"), tracking_uri=f"sqlite:///{tmp_path}/m.db")
    assert "unknown field 'cod_dim' (did you mean 'code_dim'?)" in str(err.value)  # the space is checked first
    with pytest.raises(ConfigError, match="--num-samples: must be >= 1, got 0"):
        make_request("likelihood_mnist", num_samples=0, storage_path=str(tmp_path / "r"))
    request = make_request("likelihood_mnist", smoke=True, overrides={"code_dim": 6, "prior.std": 2.5},
                           storage_path=str(tmp_path / "r"), tracking_uri=f"sqlite:///{tmp_path}/m.db", seed=3)
    assert request.space.experiment["code_dim"] == 6 and request.space.experiment["prior"]["std"] == 2.5
    assert not {"code_dim", "prior.std"} & set(request.space.params)  # fixed now, no longer searched
    assert request.seed == 3 and request.smoke and request.num_samples == 2  # --smoke's budget
    assert ray.is_initialized() == ray_was_up and list(tmp_path.iterdir()) == []  # no Ray started, nothing written
