"""Test set-up: real MNIST from ../shared and the shared fixtures (helpers to import: tests/helpers.py).

The product never reads ../shared; only the tests point AAE_TUNE_DATA_DIR there. tests/unit/ holds the fast tests,
tests/system/ the real multi-process Ray / MLflow runs (marked ``system``: ``pytest -m "not system"`` skips them).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers import SHARED_MNIST

# Set before any aae_tune import resolves its data source.
os.environ.setdefault("AAE_TUNE_DATA_DIR", str(SHARED_MNIST))


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """Directory holding the four official MNIST files (for tests only)."""
    path = Path(os.environ["AAE_TUNE_DATA_DIR"])
    if not (path / "train-images-idx3-ubyte.gz").exists():
        pytest.fail(f"real MNIST not found in {path}; set AAE_TUNE_DATA_DIR to a folder with the IDX files")
    return path


@pytest.fixture(scope="session")
def mnist(mnist_dir: Path):
    """The paper's split of real MNIST, loaded once per test session."""
    from aae_tune.data import load_mnist

    return load_mnist(mnist_dir)


@pytest.fixture(scope="session")
def small_mnist(mnist):
    """A 2,000 / 500 slice of the real split: enough signal for learning tests, seconds to train."""
    return mnist.head(2000, 500, 500)


@pytest.fixture
def tiny_config():
    """The App. A.1 config shrunk for fast tests (the smoke settings), 2 epochs, 2-D codes."""
    from aae_tune.config import SMOKE_OVERRIDES, ExperimentConfig

    return ExperimentConfig.from_dict({**SMOKE_OVERRIDES, "epochs": 2, "code_dim": 2})


@pytest.fixture(scope="session")
def ray_session():
    """A real local Ray (2 CPUs, loopback, no dashboard) shared by the tests that need one."""
    import ray

    from aae_tune.cluster.ray_session import init_local_ray

    started = not ray.is_initialized()
    if started:
        init_local_ray(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    if started:
        ray.shutdown()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test under tests/system/ is a system test: mark it, so `-m "not system"` leaves the unit tests."""
    system_dir = Path(__file__).resolve().parent / "system"
    for item in items:
        if system_dir in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.system)
