"""The MLflow UI as users see it: headless Chromium renders a local `mlflow server` (the local cluster's recipe)
holding a search as aae_tune records it - a parent run, nested trial runs, a sample-grid image - and the checks
read the rendered page, not the REST API. CI installs Chromium (.ci/run); without it the test is skipped."""

import tempfile
import uuid
from pathlib import Path

import pytest

from aae_tune.cluster import browser
from aae_tune.cluster import local as lc
from aae_tune.figures.sets import samples_png
from aae_tune.model.registry import build_model
from aae_tune.search.lineage import code_version
from aae_tune.search.tracking import SearchTracker

SEARCH = "ui-search"
TRIALS = ["aae_trainable_ui000_1", "aae_trainable_ui000_2"]
CODE = code_version()  # this checkout's commit (CI runs a clean clone), or the version alone elsewhere

pytestmark = pytest.mark.skipif(browser.chromium_path() is None,
                                reason="chromium not installed (apt-get install chromium; .ci/run does it)")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    state_dir = tmp_path_factory.mktemp("mlflow_ui")
    marker = f"ui-{uuid.uuid4().hex[:12]}"
    proc, uri = lc.start_mlflow(state_dir, marker)
    try:
        yield uri
    finally:
        lc.stop_processes([proc], marker)
        lc.stop_processes([lc.Proc("worker", pid, "") for pid in lc.marked_pids(marker)], marker)
        assert not lc.marked_pids(marker), "mlflow server processes left running"


@pytest.fixture(scope="module")
def recorded_search(server, tmp_path_factory):
    """A search recorded through aae_tune's own tracker: parent run, nested trial runs, metrics, a sample grid."""
    from aae_tune.config import SMOKE_OVERRIDES, ExperimentConfig

    tracker = SearchTracker(server, "aae-likelihood_mnist", SEARCH)
    tracker.record_code(CODE, resume=False)
    tracker.log_params(tracker.parent_run_id, {"num_samples": len(TRIALS), "space": "likelihood_mnist"})
    model = build_model(ExperimentConfig.from_dict({**SMOKE_OVERRIDES, "code_dim": 2}), 784)
    runs = {}
    for k, name in enumerate(TRIALS):
        run_id = tracker.trial_run(f"ui000_{k + 1}", run_name=name)
        for epoch in (1, 2):
            tracker.log_metrics(run_id, {"valid_parzen_ll": 100.0 * epoch + k, "recon_loss": 0.2 / epoch}, epoch)
        with tempfile.TemporaryDirectory() as tmp:
            samples_png(model, Path(tmp) / "samples.png", n=16, seed=k)
            tracker.client.log_artifacts(run_id, tmp, "figures")
        tracker.end_run(run_id)
        runs[name] = run_id
    tracker.end_run(tracker.parent_run_id)
    return tracker, runs


def test_run_list_shows_the_parent_and_its_trial_runs(recorded_search, server, tmp_path):
    tracker, _ = recorded_search
    url = browser.runs_url(server, tracker.experiment_id, SEARCH)
    text = browser.rendered_text(url, [SEARCH, *TRIALS])
    for name in (SEARCH, *TRIALS):
        assert name in text, f"{name} not rendered at {url}: {text[:2000]}"
    assert f"{1 + len(TRIALS)} matching runs" in text
    shot = browser.screenshot_page(url, tmp_path / "runs.png")
    assert shot.stat().st_size > 20_000  # a painted page, not a blank one


def test_experiment_landing_page_is_its_runs_table(recorded_search, server):
    """The experiment URL aae_tune gives users opens on the runs, not on the GenAI overview (traces, token usage)
    that MLflow 3 shows by default."""
    tracker, _ = recorded_search
    url = browser.landing_url(server, tracker.experiment_id)
    text = browser.rendered_text(url, [SEARCH, "matching runs"])
    assert SEARCH in text and "matching runs" in text, text[:2000]


def test_default_experiment_page_nests_trials_under_the_parent(recorded_search, server):
    """In the UI's default order the trials are children of the parent: one top-level row, all runs counted."""
    tracker, _ = recorded_search
    url = browser.runs_url(server, tracker.experiment_id)
    text = browser.rendered_text(url, [SEARCH, "matching runs"])
    assert SEARCH in text and f"{1 + len(TRIALS)} matching runs" in text
    assert not any(name in text for name in TRIALS)  # collapsed under their parent


def test_parent_run_page_lists_its_child_runs(recorded_search, server):
    tracker, _ = recorded_search
    url = browser.run_url(server, tracker.experiment_id, tracker.parent_run_id)
    text = browser.rendered_text(url, ["Child runs", *TRIALS])
    assert "Child runs" in text and all(name in text for name in TRIALS), text[:2000]


def test_trial_artifact_page_shows_the_sample_grid(recorded_search, server):
    tracker, runs = recorded_search
    url = browser.run_url(server, tracker.experiment_id, runs[TRIALS[0]], "figures/samples.png")
    dom = ""
    for attempt in range(3):
        dom = browser.dump_dom(url, budget_ms=20_000 * (attempt + 1))
        if 'alt="figures/samples.png"' in dom:
            break
    assert "figures/samples.png" in browser.visible_text(dom)
    # The image itself is rendered: an <img> whose source the app fetched from the server.
    assert 'alt="figures/samples.png" src="blob:' in dom, browser.visible_text(dom)[:2000]


def test_parent_run_page_shows_the_source_and_its_commit(recorded_search, server):
    """MLflow's "Source" field names the entry point and, from a git checkout, the commit beside it."""
    tracker, _ = recorded_search
    url = browser.run_url(server, tracker.experiment_id, tracker.parent_run_id)
    text = browser.rendered_text(url, ["Source"])
    source = text[text.index("Source"):][:200]
    assert "aae_tune.search" in source, source
    commit = CODE.get("mlflow.source.git.commit")
    if commit:
        assert commit[:7] in source, source
