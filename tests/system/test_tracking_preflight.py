"""A tracking server whose /health answers but whose REST API does not (a stuck database, a proxy in front of a
dead backend, another service on the port) is refused by the pre-flight: one `error:` line and exit code 2 within the
HTTP timeout, before Ray starts, and nothing created on the server or in the working folder.

Real HTTP servers on 127.0.0.1 (``http.server`` in threads of this process); the command line runs in one fresh
Python process, like tests/system/test_bad_input.py.
"""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator

import pytest

TIMEOUT_S = 4  # MLFLOW_HTTP_REQUEST_TIMEOUT for the command: the check waits this long for an answer

RUNNER = """
import contextlib, io, json, sys, time
import ray
from aae_tune.cli import main
out = {}
for name, argv in json.loads(sys.argv[1]).items():
    err = io.StringIO()
    start = time.monotonic()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(argv)
        except SystemExit as exc:
            code = exc.code
    out[name] = {"code": code, "stderr": err.getvalue(), "ray": ray.is_initialized(),
                 "seconds": time.monotonic() - start}
print("RESULTS" + json.dumps(out))
"""


class FakeServer:
    """An HTTP server on 127.0.0.1 whose GET answers come from ``answer(path) -> (status, content type, body)``,
    or never (``answer`` returns None: the handler waits until the server is closed). Records every request."""

    def __init__(self, answer: Callable[[str], tuple[int, str, bytes] | None]):
        self.requests: list[str] = []
        self.closing = threading.Event()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.handle_request("GET")

            def do_POST(self):
                self.handle_request("POST")

            def handle_request(self, method: str) -> None:
                server.requests.append(f"{method} {self.path}")
                reply = answer(self.path)
                if reply is None:
                    server.closing.wait()
                    return
                status, content_type, body = reply
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self) -> None:
        self.closing.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def healthy_then(api: tuple[int, str, bytes] | None) -> Callable[[str], tuple[int, str, bytes] | None]:
    """/health answers OK; everything else answers ``api`` (None: never)."""
    return lambda path: (200, "text/plain", b"OK") if path == "/health" else api


SERVERS = {
    "api-answers-html": (healthy_then((200, "text/html", b"<html>a login page</html>")),
                         "is not MLflow's JSON"),
    "api-refuses-credentials": (healthy_then((401, "text/plain", b"You are not authenticated")),
                                "refused the request (HTTP 401)"),
    "api-hangs": (healthy_then(None), f"did not answer within {TIMEOUT_S} s"),
}


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory) -> Iterator[tuple[dict, dict, object]]:
    servers = {case: FakeServer(answer) for case, (answer, _) in SERVERS.items()}
    workdir = tmp_path_factory.mktemp("tracking_preflight")
    # the hanging server last: the others pay the imports, so its time is the check's own
    argv = {case: ["search", "--space", "likelihood_mnist", "--tracking-uri", server.url]
            for case, server in servers.items()}
    try:
        proc = subprocess.run([sys.executable, "-c", RUNNER, json.dumps(argv)], cwd=workdir, capture_output=True,
                              text=True, timeout=300,
                              env={**os.environ, "MLFLOW_HTTP_REQUEST_TIMEOUT": str(TIMEOUT_S)})
        assert "RESULTS" in proc.stdout, proc.stderr[-3000:]
        yield json.loads(proc.stdout.split("RESULTS", 1)[1]), servers, workdir
    finally:
        for server in servers.values():
            server.close()


@pytest.mark.parametrize("case", SERVERS)
def test_a_server_whose_api_fails_is_one_clear_error_before_ray(outcomes, case):
    results, servers, _ = outcomes
    result = results[case]
    assert result["code"] == 2, result
    assert result["stderr"].startswith("error: ") and result["stderr"].count("error: ") == 1, result["stderr"]
    assert SERVERS[case][1] in result["stderr"], result["stderr"]
    assert "Traceback" not in result["stderr"]
    assert not result["ray"], "Ray was started before the tracking server was checked"
    # asked, never written to: no experiment, no run
    assert servers[case].requests == ["GET /health", "GET /api/2.0/mlflow/experiments/search?max_results=1"]


def test_a_hanging_api_costs_one_timeout(outcomes):
    results, _, _ = outcomes
    assert TIMEOUT_S - 0.5 <= results["api-hangs"]["seconds"] < TIMEOUT_S + 10, results["api-hangs"]


def test_nothing_is_written_in_the_working_folder(outcomes):
    _, _, workdir = outcomes
    assert list(workdir.iterdir()) == []
