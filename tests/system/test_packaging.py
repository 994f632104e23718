"""The wheel, installed as users install it (not editable), works from an empty folder: the shipped spaces come
with it, every console script is there, and a smoke search runs end to end."""

import os
import shutil
import site
import subprocess
import sys
from pathlib import Path

import pytest

from aae_tune.search.space import available_spaces
from tests.helpers import REPO_ROOT

SCRIPTS = ["aae-tune", "aae-tune-search", "aae-tune-evaluate", "aae-tune-sample", "aae-tune-cluster"]


def sh(args: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: int = 300) -> str:
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{args}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    """A fresh virtual environment with the built wheel installed, then given the dependencies of the environment
    running the tests (no multi-GB torch/ray download per test run); its own aae_tune comes first."""
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "source"  # build from a copy: the build leaves build/ and *.egg-info behind
    for folder in ("aae_tune", "search_spaces"):
        shutil.copytree(REPO_ROOT / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__"))
    for file in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO_ROOT / file, source / file)
    sh([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp / "dist"),
        str(source)], tmp)
    wheel = next((tmp / "dist").glob("aae_tune-*.whl"))
    # No --system-site-packages: inside a venv or conda env that would be the base interpreter's packages, not
    # the running environment's. The wheel goes in while the venv sees nothing else, so pip neither finds the
    # checkout's aae_tune "already installed" nor touches the running environment.
    sh([sys.executable, "-m", "venv", str(tmp / "venv")], tmp)
    python = tmp / "venv" / "bin" / "python"
    sh([str(python), "-m", "pip", "install", "--no-deps", "--no-index", str(wheel)], tmp)
    see_running_site_dirs(python, tmp)
    return tmp / "venv"


def running_site_dirs() -> list[str]:
    """The site directories the running interpreter imports from (its venv / conda env, the base one when it has
    system site packages, the user site when enabled), in its own precedence order."""
    site_dirs = {os.path.abspath(path) for path in (*site.getsitepackages(), site.getusersitepackages())}
    return [path for path in sys.path if path and os.path.abspath(path) in site_dirs]


def see_running_site_dirs(python: Path, cwd: Path) -> None:
    """Append the running environment's site directories to the venv's sys.path with a .pth file.

    A .pth puts them after the venv's own site-packages, so the wheel's aae_tune wins; and .pth files inside
    those directories are not run, so the checkout's editable install (a .pth finder there) stays invisible."""
    venv_site = sh([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], cwd).strip()
    (Path(venv_site) / "aae_tune_test_deps.pth").write_text("\n".join(running_site_dirs()) + "\n")


def clean_env(venv: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "MLFLOW_TRACKING_URI")}
    return {**env, "PATH": f"{venv / 'bin'}:{env['PATH']}"}


def test_wheel_ships_the_spaces_and_the_scripts(venv, tmp_path):
    where = sh([str(venv / "bin" / "python"), "-c", "import aae_tune, importlib.resources as r, "
                "aae_tune.search.space as s; print(aae_tune.__file__); print(s.SPACES_DIR); "
                "print(r.files('aae_tune').joinpath('py.typed').is_file())"], tmp_path, clean_env(venv))
    package, spaces, typed = where.split()
    assert package.startswith(str(venv)) and spaces.startswith(str(venv)), where  # not the checkout
    assert typed == "True"
    assert all((venv / "bin" / script).is_file() for script in SCRIPTS)
    listed = sh([str(venv / "bin" / "aae-tune"), "spaces"], tmp_path, clean_env(venv))
    assert all(name in listed for name in available_spaces())


def test_smoke_search_from_an_empty_folder(venv, tmp_path, mnist_dir):
    out = sh([str(venv / "bin" / "aae-tune-search"), "--space", "likelihood_mnist", "--smoke", "--num-samples", "1",
              "--max-epochs", "1", "--top-k", "1", "--final-samples", "200", "--name", "from-wheel"],
             tmp_path, {**clean_env(venv), "AAE_TUNE_DATA_DIR": str(mnist_dir)}, timeout=600)
    assert "== search from-wheel: 1 trials (1 completed" in out
    assert (tmp_path / "mlflow.db").is_file() and (tmp_path / "ray_results" / "from-wheel").is_dir()
