"""Test set-up: real MNIST and the shared fixtures (helpers to import: tests/helpers.py).

Real MNIST comes the way the product finds it -- AAE_TUNE_DATA_DIR, the user cache, a checked download -- with this
repository's ../shared/data/mnist as one more source (tests/real_mnist.py). On a machine where none of them has it
(offline, empty cache), the tests that need it are skipped with the reason; every other test still runs.
The product itself never reads ../shared. tests/unit/ holds the fast tests, tests/system/ the real multi-process
Ray / MLflow runs (marked ``system``: ``pytest -m "not system"`` skips them).
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.helpers import SHARED_MNIST
from tests.real_mnist import pin, resolve

# Filled once per session, after collection and before the first test (pytest_collection_finish).
_session = SimpleNamespace(root=None, sentinel=None, real=None, shared_now=[], tainted=set())


def _reads_mnist(item: pytest.Item) -> bool:
    # The system tests start searches that read MNIST through AAE_TUNE_DATA_DIR without asking for a fixture.
    return "mnist_dir" in getattr(item, "fixturenames", ()) or item.get_closest_marker("system") is not None


def pytest_collection_finish(session: pytest.Session) -> None:
    """Find real MNIST once and pin it as AAE_TUNE_DATA_DIR before any test, Ray worker or command starts.

    A download is only tried when a selected test reads MNIST: `pytest tests/unit/test_config.py` never waits on
    the network."""
    if session.config.option.collectonly:
        return
    # A fresh name, made only if a folder needs copying: a killed session then leaves nothing behind either.
    _session.root = Path(tempfile.gettempdir()) / f"aae_tune-tests-{uuid.uuid4().hex[:12]}"
    _session.sentinel = _session.root / "real-MNIST-not-available"  # never created
    _session.real = resolve(SHARED_MNIST, _session.root / "mnist",
                            download=any(_reads_mnist(item) for item in session.items))
    pin(_session.real, _session.sentinel)


def pytest_terminal_summary(terminalreporter) -> None:
    # Says which MNIST the figures of this run come from (CI logs), or once in full why there was none.
    if _session.real is not None:
        terminalreporter.write_line(_session.real.summary())


def pytest_unconfigure(config: pytest.Config) -> None:
    if _session.root is not None:
        shutil.rmtree(_session.root, ignore_errors=True)


def pytest_runtest_logstart(nodeid: str, location: tuple) -> None:
    _session.shared_now = []


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(fixturedef: pytest.FixtureDef, request: pytest.FixtureRequest):
    # Which module / session fixtures of the test modules the current test set up: their value outlives the test
    # (below). This file's own either skip themselves (mnist_dir and those built on it) or read no MNIST (Ray).
    if fixturedef.scope != "function" and fixturedef.func.__module__ != __name__:
        _session.shared_now.append(fixturedef.argname)
    return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """A test that read MNIST without asking for ``mnist_dir`` (a search it started, a Ray worker) met the missing
    folder AAE_TUNE_DATA_DIR points at when there is no real MNIST: report it skipped, with the reason, like the
    tests that ask -- it could not have run here, and it did not train on the embedded subset either.

    A module fixture that met it (a search shared by several tests) spoils every test using it, though only the
    first one's output shows the folder: those are skipped as well."""
    report = yield
    real = _session.real
    if real is None or real.folder is not None or real.broken:
        return report
    output = str(report.longrepr) + "".join(content for _, content in report.sections)
    if str(_session.sentinel) in output:
        _session.tainted.update(_session.shared_now)
    if report.failed and (str(_session.sentinel) in output or _session.tainted & set(item.fixturenames)):
        report.outcome = "skipped"
        report.longrepr = (str(item.path), (item.location[1] or 0) + 1, f"Skipped: {real.skip_reason}")
    return report


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """Directory holding the four official MNIST files and their MD5SUMS (for tests only); skips without them."""
    real = _session.real
    assert real is not None, "real MNIST is resolved after collection (pytest_collection_finish)"
    if real.broken:
        pytest.fail(f"real MNIST: {real.origin}")
    if real.folder is None:
        pytest.skip(real.skip_reason)
    return real.folder


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
