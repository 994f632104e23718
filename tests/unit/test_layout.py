"""The package layout keeps its promises: the README's map matches the tree, every model variant is declared once
and drawn, modules stay small, and checking a space file does not load torch."""

from __future__ import annotations

import re
import subprocess
import sys
from typing import get_args

import pytest

from aae_tune.errors import ConfigError
from aae_tune.experiments import MODEL_SPECS, Figure, reported_metrics
from aae_tune.search.request import check_resume_matches, search_record
from aae_tune.search.space import available_spaces, load_space
from tests.helpers import REPO_ROOT

PACKAGE = REPO_ROOT / "aae_tune"
MAX_MODULE_LINES = 400


def readme_layout_section() -> str:
    text = (REPO_ROOT / "README.md").read_text()
    match = re.search(r"^## How the code is laid out\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    assert match, "README.md needs a '## How the code is laid out' section"
    return match.group(1)


def test_readme_layout_names_every_folder_and_module_of_the_package():
    section = readme_layout_section()
    folders = sorted(p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").is_file())
    assert folders, "no subpackages found"
    missing = [f"aae_tune/{name}/" for name in folders if f"aae_tune/{name}/" not in section]
    modules = sorted(p.name for p in PACKAGE.glob("*.py") if not p.name.startswith("__"))
    missing += [name for name in modules if name not in section]
    assert not missing, f"README's 'How the code is laid out' does not mention {missing}"
    named = set(re.findall(r"aae_tune/(\w+)/", section))
    stale = sorted(named - set(folders))
    assert not stale, f"README's layout names folders that do not exist: {stale}"


def test_no_module_is_over_the_size_limit():
    long = {str(p.relative_to(REPO_ROOT)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES}
    assert not long, f"modules over {MAX_MODULE_LINES} lines: {long}"


def test_validating_every_shipped_space_loads_neither_torch_nor_ray():
    code = ("import sys\n"
            "from aae_tune.search.space import available_spaces, load_space\n"
            "names = available_spaces()\n"
            "for name in names: load_space(name)\n"
            "print(len(names), sorted(m for m in ('torch', 'ray', 'mlflow') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO_ROOT)
    assert out.returncode == 0, out.stderr
    count, loaded = out.stdout.split(" ", 1)
    assert int(count) == len(available_spaces()) >= 14
    assert loaded.strip() == "[]"


def test_every_declared_figure_can_be_drawn_and_every_model_has_a_class():
    from aae_tune.figures.sets import DRAW
    from aae_tune.model.registry import MODELS

    assert set(DRAW) == set(get_args(Figure))
    assert set(MODELS) == set(MODEL_SPECS)
    for name, spec in MODEL_SPECS.items():
        assert {"samples", "latent"} <= set(spec.figures), name


@pytest.mark.parametrize("space", ["likelihood_mnist", "semisupervised_mnist_100", "clustering_mnist_16"])
def test_a_space_metric_must_be_one_its_model_declares(space):
    loaded = load_space(space)
    assert loaded.metric in reported_metrics(loaded.experiment_config().score_kind)
    with pytest.raises(ConfigError, match="is not reported by the"):
        load_space(space, [("metric", "valid_component_accuracy")])


def test_resume_of_a_search_from_before_the_layout_is_refused_with_a_clear_message(tmp_path):
    space = load_space("likelihood_mnist")
    record = search_record(space, seed=0, smoke=True)
    old = {k: v for k, v in record.items() if k != "layout"}  # what aae_tune 0.1 wrote
    problems: list[str] = []
    check_resume_matches(str(tmp_path), old, record, problems)
    assert len(problems) == 1 and "older aae_tune" in problems[0] and "new --name" in problems[0]

    problems = []
    check_resume_matches(str(tmp_path), record, record, problems)  # written by this layout: resumable
    assert problems == []


def test_resume_with_a_changed_default_names_the_value_then_and_now(tmp_path):
    then = search_record(load_space("likelihood_mnist", [("scheduler.grace_period", 2)]), seed=0, smoke=False)
    problems: list[str] = []
    now = search_record(load_space("likelihood_mnist"), seed=1, smoke=False)
    check_resume_matches(str(tmp_path), then, now, problems)
    assert len(problems) == 1
    assert "scheduler.grace_period: 2 then, 10 now; seed: 0 then, 1 now" in problems[0], problems[0]
