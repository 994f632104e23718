"""The pre-flight call to an MLflow tracking server: its ``/health`` and then its REST API, each within a timeout.

``/health`` answers without touching the server's database, so a server whose database is stuck (or a proxy that
answers /health for a dead backend) passed a /health-only check and the search failed after Ray had started, with a
``ReadTimeoutError`` traceback and its parent run left RUNNING. The check therefore makes the call a search makes
first (a search of experiments), with the same client, credentials and TLS settings as MLflow's own client
(``MLFLOW_TRACKING_USERNAME``/``PASSWORD``/``TOKEN``, ``MLFLOW_TRACKING_INSECURE_TLS``, ...).
"""

from __future__ import annotations

import os
from typing import Any

API_PROBE = "/api/2.0/mlflow/experiments/search"
# The same timeout the search's own MLflow calls get (driver.ENVIRONMENT_DEFAULTS; a user's setting wins there and
# here): a server that answers the pre-flight answers the search.
DEFAULT_TIMEOUT_S = 10.0


def request_timeout() -> float:
    try:
        return float(os.environ.get("MLFLOW_HTTP_REQUEST_TIMEOUT") or DEFAULT_TIMEOUT_S)
    except ValueError:
        return DEFAULT_TIMEOUT_S


def probe_tracking_server(uri: str, shown: str, problems: list[str]) -> None:
    """One problem if the server at ``uri`` (``shown``: with its password redacted) does not answer ``/health``
    and a search of its experiments with MLflow's JSON in time."""
    import requests
    from mlflow.exceptions import MlflowException

    timeout = request_timeout()
    where = f"--tracking-uri {shown}"
    try:
        health = call(uri, "/health", timeout)
        if health.status_code != 200:
            problems.append(f"{where}: /health answered {health.status_code}")
            return
        api = call(uri, API_PROBE, timeout, params={"max_results": 1})
    except (requests.RequestException, MlflowException) as exc:  # MLflow wraps what requests raises
        if timed_out(exc):
            problems.append(f"{where}: the MLflow server did not answer within {timeout:g} s (its /health may answer "
                            "while its database is stuck or overloaded); check the server and its logs, or raise "
                            "MLFLOW_HTTP_REQUEST_TIMEOUT")
        else:
            problems.append(f"{where}: MLflow server unreachable ({scrub(exc, uri)}); start it or fix the URI")
        return
    problem = api_answer_problem(api)
    if problem:
        problems.append(f"{where}: {problem}")


def call(uri: str, endpoint: str, timeout: float, **kwargs: Any) -> Any:
    """A GET through MLflow's own HTTP client, without its retries: the pre-flight waits one timeout at most."""
    from mlflow.utils.credentials import get_default_host_creds
    from mlflow.utils.rest_utils import http_request

    return http_request(get_default_host_creds(uri), endpoint, "GET", max_retries=0, backoff_factor=0,
                        timeout=timeout, raise_on_status=False, **kwargs)


def api_answer_problem(response: Any) -> str | None:
    if response.status_code in (401, 403):
        return (f"the MLflow server refused the request (HTTP {response.status_code}); set MLFLOW_TRACKING_USERNAME "
                "and MLFLOW_TRACKING_PASSWORD (or MLFLOW_TRACKING_TOKEN) to credentials it accepts")
    if response.status_code != 200:
        return f"{API_PROBE} answered HTTP {response.status_code} ({response.text[:200]!r}); is this an MLflow server?"
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        return (f"{API_PROBE} answered something that is not MLflow's JSON ({response.text[:80]!r}); is another "
                "service listening there?")
    return None


def timed_out(exc: BaseException) -> bool:
    """Whether an error of the call is, at its root, a timeout: without retries, urllib3's ``ReadTimeoutError``
    arrives inside a ``MaxRetryError``, inside requests' ``ConnectionError``, inside an ``MlflowException``."""
    import requests
    import urllib3

    todo, seen = [exc], set()
    while todo:
        error = todo.pop()
        if id(error) in seen:
            continue
        seen.add(id(error))
        if isinstance(error, urllib3.exceptions.NewConnectionError):
            return False  # a refused connection, which urllib3 derives from its connect timeout
        if isinstance(error, (requests.Timeout, urllib3.exceptions.TimeoutError, TimeoutError)):
            return True
        inner = [error.__cause__, error.__context__, getattr(error, "reason", None), *error.args]
        todo += [e for e in inner if isinstance(e, BaseException)]
    return False


def scrub(exc: BaseException, uri: str) -> str:
    """The error's text without the URI's password (requests may quote the URL)."""
    from urllib.parse import urlsplit

    text, password = str(exc), urlsplit(uri).password
    return text.replace(password, "***") if password else text
