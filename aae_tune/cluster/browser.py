"""The MLflow UI as a user sees it: headless Chromium renders the React app, for checks and screenshots.

MLflow 3's UI is a single-page app: the HTML the server sends is empty until JavaScript has fetched the runs, so
plain HTTP cannot show what a user sees. ``chromium --headless --dump-dom`` returns the DOM after the app ran;
``--screenshot`` paints it. Debian's package: ``apt-get install chromium``.
"""

from __future__ import annotations

import html
import re
import shutil
import subprocess
import tempfile
import urllib.parse
from pathlib import Path

from aae_tune.mlflow_store import mlflow_client
from aae_tune.names import ROLE_PARENT, TAG_ROLE, TAG_SEARCH

# Flags for a sandboxed CI container: no GPU, no /dev/shm limits, no background traffic to Google services.
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
)


def chromium_path() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def _run(url: str, extra: list[str], budget_ms: int, timeout: float) -> str:
    exe = chromium_path()
    if exe is None:
        raise FileNotFoundError("chromium not found: apt-get install chromium")
    with tempfile.TemporaryDirectory(prefix="aae_chromium_") as profile:  # a fresh profile: no stale UI state
        out = subprocess.run(
            [exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--virtual-time-budget={budget_ms}", *extra, url],
            capture_output=True, text=True, timeout=timeout,
        )
    if out.returncode != 0:
        raise RuntimeError(f"chromium failed on {url} ({out.returncode}): {out.stderr[-2000:]}")
    return out.stdout


def dump_dom(url: str, budget_ms: int = 20_000, timeout: float = 120) -> str:
    """The DOM after the page's scripts ran for ``budget_ms`` of virtual time."""
    return _run(url, ["--dump-dom"], budget_ms, timeout)


def visible_text(dom: str) -> str:
    """The text a user reads (scripts, styles and tags dropped, whitespace collapsed)."""
    text = re.sub(r"<(script|style)\b.*?</\1>", " ", dom, flags=re.S | re.I)
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", text))).strip()


def rendered_text(url: str, expected: list[str], attempts: int = 3) -> str:
    """Visible text of ``url`` once every ``expected`` string shows, retrying with more time for a slow server.

    Returns the last text either way; the caller asserts, so a failure shows what was rendered instead.
    """
    text = ""
    for attempt in range(attempts):
        text = visible_text(dump_dom(url, budget_ms=20_000 * (attempt + 1)))
        if all(item in text for item in expected):
            break
    return text


def screenshot_page(url: str, out: str | Path, width: int = 1800, height: int = 1000, budget_ms: int = 20_000) -> Path:
    out = Path(out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    _run(url, [f"--screenshot={out}", f"--window-size={width},{height}"], budget_ms, timeout=120)
    if not out.exists() or out.stat().st_size == 0:
        raise RuntimeError(f"chromium wrote no screenshot for {url}")
    return out


# ------------------------------------------------------------------------------------------ MLflow URLs
# MLflow 3's UI opens an experiment in its GenAI view (traces) unless the URL or the user's saved toggle says
# otherwise; the experiment's mlflow.experimentKind tag alone does not decide it.
MODEL_TRAINING_VIEW = "workflowType=machine_learning"


def landing_url(tracking_uri: str, experiment_id: str) -> str:
    """The page to open for an experiment: its runs (the model-training view), not the GenAI overview."""
    return f"{tracking_uri.rstrip('/')}/#/experiments/{experiment_id}?{MODEL_TRAINING_VIEW}"


def runs_url(tracking_uri: str, experiment_id: str, search_name: str | None = None) -> str:
    """The experiment's run table. For one search: filtered to its runs and sorted by the score, which makes the
    UI list the parent and its trial runs as flat rows (it nests children only in its default date order)."""
    base = f"{tracking_uri.rstrip('/')}/#/experiments/{experiment_id}/runs"
    if search_name is None:
        return base
    query = urllib.parse.urlencode({
        "searchFilter": f"tags.{TAG_SEARCH} = '{search_name}'", "orderByKey": "metrics.`valid_parzen_ll`",
        "orderByAsc": "false",
    }, quote_via=urllib.parse.quote)
    return f"{base}?{query}"


def run_url(tracking_uri: str, experiment_id: str, run_id: str, artifact: str | None = None) -> str:
    url = f"{tracking_uri.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"
    return f"{url}/artifacts/{artifact}" if artifact else url


def experiment_url(tracking_uri: str, experiment_name: str, search_name: str | None = None) -> str:
    """``runs_url`` for an experiment given by name; the latest search when ``search_name`` is None."""
    client = mlflow_client(tracking_uri)
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is None:
        raise ValueError(f"no experiment {experiment_name!r} at {tracking_uri}")
    if search_name is None:
        parents = client.search_runs([experiment.experiment_id], f"tags.{TAG_ROLE} = '{ROLE_PARENT}'",
                                     order_by=["attributes.start_time DESC"], max_results=1)
        search_name = parents[0].data.tags.get(TAG_SEARCH) if parents else None
    return runs_url(tracking_uri, experiment.experiment_id, search_name)
