"""A real multi-node Ray cluster and a real MLflow server on one machine, for trying cluster runs end to end.

Three ``ray start --block`` processes (a head and two workers, 1 CPU each, custom resources ``head``,
``worker_a``, ``worker_b`` so placement is visible) and one ``mlflow server`` (SQLite backend, local artifact
root). Every process is started in its own session with a marker variable in its environment
(``AAE_TUNE_LOCAL_CLUSTER=<id>``) that Ray passes on to everything it spawns (GCS, raylets, agents, workers), so
``down`` stops exactly this cluster's processes - never another Ray on the machine, which ``ray stop`` would.

State (pids, ports, URLs, the marker) lives in ``<state_dir>/state.json``; logs in ``<state_dir>/logs``; the MLflow
store in ``<state_dir>/mlflow``. Ray's own temp dir is a short ``/tmp/aae_tune_lc_<hash>`` path because Ray puts
unix sockets there and socket paths are limited to 107 bytes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

MARKER_ENV = "AAE_TUNE_LOCAL_CLUSTER"
HOST = "127.0.0.1"
NODES = (("head", "head"), ("worker_a", "worker_a"), ("worker_b", "worker_b"))  # (role, custom resource)


def default_state_dir() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "aae_tune" / "local_cluster"


@dataclass
class Proc:
    role: str  # head / worker_a / worker_b / mlflow
    pid: int
    log: str


@dataclass
class ClusterState:
    state_dir: str
    marker: str
    ray_address: str  # what to pass to --address
    ray_temp_dir: str
    tracking_uri: str  # what to pass to --tracking-uri
    node_ip: str  # the address Ray advertises for the nodes (see up())
    procs: list[Proc] = field(default_factory=list)
    pids: list[int] = field(default_factory=list)  # every marked process seen once the cluster was up

    @property
    def path(self) -> Path:
        return Path(self.state_dir) / "state.json"

    def save(self) -> None:
        self.path.write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, state_dir: str | os.PathLike) -> ClusterState | None:
        path = Path(state_dir) / "state.json"
        if not path.exists():
            return None
        data = json.loads(path.read_text())
        data["procs"] = [Proc(**p) for p in data.get("procs", [])]
        return cls(**data)


# ------------------------------------------------------------------------------------------ processes
def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie, finished but not yet reaped, counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def marked_pids(marker: str) -> list[int]:
    """Live processes whose environment carries this cluster's marker (all of Ray's children inherit it)."""
    needle = f"{MARKER_ENV}={marker}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0") and alive(int(entry.name)):
                found.append(int(entry.name))
        except OSError:  # gone meanwhile, or another user's process: not ours either way
            continue
    return sorted(found)


def _signal(pids: list[int], sig: signal.Signals, marker: str) -> None:
    """Signal only processes that still carry our marker (a recorded pid may have been reused)."""
    mine = set(marked_pids(marker))
    for pid in pids:
        if pid in mine:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)


def _wait_gone(pids: list[int], timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = [p for p in pids if alive(p)]
        if not left:
            return []
        time.sleep(0.25)
    return [p for p in pids if alive(p)]


def _spawn(cmd: list[str], log: Path, env: dict[str, str], role: str) -> Proc:
    with open(log, "ab") as out:
        # Own session: the processes outlive `up` and a Ctrl-C in the caller's terminal does not reach them.
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                start_new_session=True)
    return Proc(role=role, pid=proc.pid, log=str(log))


# ---------------------------------------------------------------------------------------------- Ray
def ray_env(marker: str) -> dict[str, str]:
    # RAY_AUTH_MODE=token: joining nodes and `ray status` must present ~/.ray/auth_token, which the head checks.
    return {**os.environ, MARKER_ENV: marker, "RAY_AUTH_MODE": "token", "RAY_USAGE_STATS_ENABLED": "0"}


def ray_start_cmd(role: str, resource: str, gcs_port: int, temp_dir: str, object_store_mb: int) -> list[str]:
    """``ray start --block`` for one node: every port explicit and distinct, so three nodes share one host."""
    cmd = [
        sys.executable, "-m", "ray.scripts.scripts", "start", "--block", "--node-ip-address", HOST,
        "--num-cpus", "1", "--num-gpus", "0", "--resources", json.dumps({resource: 1}),
        "--object-store-memory", str(object_store_mb * 1024 * 1024), "--disable-usage-stats",
        "--node-manager-port", str(free_port()), "--object-manager-port", str(free_port()),
        "--min-worker-port", "0", "--max-worker-port", "0",  # 0: the OS picks each worker's port
        "--dashboard-agent-listen-port", str(free_port()), "--dashboard-agent-grpc-port", str(free_port()),
        "--runtime-env-agent-port", str(free_port()), "--metrics-export-port", str(free_port()),
    ]
    if role == "head":
        # The minimal dashboard process runs even without the UI and would otherwise claim the fixed port 8265.
        return cmd + ["--head", "--port", str(gcs_port), "--include-dashboard", "false",
                      "--dashboard-host", HOST, "--dashboard-port", str(free_port()), "--temp-dir", temp_dir]
    return cmd + ["--address", f"{HOST}:{gcs_port}"]


def ray_status(address: str, marker: str, timeout: float = 30) -> str | None:
    """``ray status -v`` output, or None when the head does not answer."""
    try:
        out = subprocess.run([sys.executable, "-m", "ray.scripts.scripts", "status", "-v", "--address", address],
                             capture_output=True, text=True, timeout=timeout, env=ray_env(marker))
    except subprocess.TimeoutExpired:
        return None
    return out.stdout if out.returncode == 0 else None


def active_nodes(status: str | None) -> int:
    """Number of alive nodes in ``ray status`` output (lines like ``1 node_<hex>`` under ``Active:``)."""
    if not status:
        return 0
    block = status.split("Active:", 1)[-1].split("Pending:", 1)[0]
    return sum(int(n) for n in re.findall(r"^\s*(\d+) node_[0-9a-f]+", block, re.M))


def _wait_nodes(state: ClusterState, count: int, timeout: float, procs: list[Proc]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        dead = [p for p in procs if not alive(p.pid)]
        if dead:
            raise RuntimeError(f"ray start for {dead[0].role} exited; see {dead[0].log}")
        if active_nodes(ray_status(state.ray_address, state.marker, timeout=15)) >= count:
            return
        time.sleep(1)
    raise RuntimeError(f"the cluster did not reach {count} nodes in {timeout:.0f}s; see the logs in "
                       f"{Path(state.state_dir) / 'logs'}")


# ------------------------------------------------------------------------------------------- MLflow
def mlflow_server_cmd(state_dir: Path, port: int) -> list[str]:
    store = state_dir / "mlflow"
    return [
        sys.executable, "-m", "mlflow", "server", "--host", HOST, "--port", str(port), "--workers", "2",
        "--backend-store-uri", f"sqlite:///{store / 'mlflow.db'}",
        # Artifacts are uploaded through the server (mlflow-artifacts:/), so clients need no file access.
        "--serve-artifacts", "--artifacts-destination", str(store / "artifacts"),
    ]


def mlflow_healthy(uri: str) -> bool:
    try:
        with urllib.request.urlopen(f"{uri}/health", timeout=3) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def start_mlflow(state_dir: Path, marker: str, port: int | None = None, timeout: float = 120) -> tuple[Proc, str]:
    """Start ``mlflow server`` on 127.0.0.1 and wait for /health; returns its process and tracking URI."""
    port = port or free_port()
    (state_dir / "mlflow").mkdir(parents=True, exist_ok=True)
    (state_dir / "logs").mkdir(parents=True, exist_ok=True)
    env = {**os.environ, MARKER_ENV: marker}
    proc = _spawn(mlflow_server_cmd(state_dir, port), state_dir / "logs" / "mlflow.log", env, "mlflow")
    uri = f"http://{HOST}:{port}"
    deadline = time.monotonic() + timeout
    while not mlflow_healthy(uri):
        if not alive(proc.pid) or time.monotonic() > deadline:
            stop_processes([proc], marker)
            raise RuntimeError(f"mlflow server did not become healthy at {uri}; see {proc.log}")
        time.sleep(0.5)
    return proc, uri


# ------------------------------------------------------------------------------------------ up/down
def _advertised_ip(log: str) -> str:
    match = re.search(r"Local node IP: (\S+)", Path(log).read_text(errors="replace"))
    return match.group(1) if match else HOST


def up(state_dir: Path, object_store_mb: int = 512, timeout: float = 180) -> ClusterState:
    """Start head + 2 workers + MLflow; on any failure stop whatever was started and raise."""
    state_dir = state_dir.resolve()
    existing = ClusterState.load(state_dir)
    if existing is not None and any(alive(p.pid) for p in existing.procs):
        raise RuntimeError(f"a local cluster from {state_dir} is already running (ray {existing.ray_address}); "
                           "run `down` first")
    if existing is not None:
        down(state_dir)  # stale state: sweep leftovers before reusing the folder
    (state_dir / "logs").mkdir(parents=True, exist_ok=True)
    marker = uuid.uuid4().hex[:16]
    temp_dir = f"/tmp/aae_tune_lc_{hashlib.sha1(str(state_dir).encode()).hexdigest()[:8]}"
    gcs_port = free_port()
    state = ClusterState(state_dir=str(state_dir), marker=marker, ray_address=f"{HOST}:{gcs_port}",
                         ray_temp_dir=temp_dir, tracking_uri="", node_ip=HOST)
    try:
        env = ray_env(marker)
        for count, (role, resource) in enumerate(NODES, start=1):
            cmd = ray_start_cmd(role, resource, gcs_port, temp_dir, object_store_mb)
            state.procs.append(_spawn(cmd, state_dir / "logs" / f"ray_{role}.log", env, role))
            state.save()  # record each pid as soon as it exists: `down` works even if `up` dies midway
            # One node at a time: nodes joining at once on one host race for the same socket names in the
            # shared session folder, and their raylets never register.
            _wait_nodes(state, count, timeout, state.procs)
        mlflow_proc, state.tracking_uri = start_mlflow(state_dir, marker)
        state.procs.append(mlflow_proc)
        state.node_ip = _advertised_ip(state.procs[0].log)
        state.pids = marked_pids(marker)
        state.save()
    except BaseException:
        down(state_dir)
        raise
    return state


def stop_processes(procs: list[Proc], marker: str, timeout: float = 30) -> list[int]:
    """SIGTERM, wait, SIGKILL what is left; returns pids that survived even that."""
    pids = [p.pid for p in procs]
    _signal(pids, signal.SIGTERM, marker)
    left = _wait_gone(pids, timeout)
    if left:
        _signal(left, signal.SIGKILL, marker)
        left = _wait_gone(left, 5)
    return left


def down(state_dir: Path) -> list[int]:
    """Stop every process of the cluster in ``state_dir``; returns the pids still alive (empty on success)."""
    state = ClusterState.load(state_dir)
    if state is None:
        return []
    by_role = {p.role: p for p in state.procs}
    workers = [p for role, p in by_role.items() if role.startswith("worker")]
    # Workers first: a worker's `ray start --block` drains itself through the head, which must still be up.
    stop_processes(workers, state.marker)
    stop_processes([p for p in (by_role.get("head"), by_role.get("mlflow")) if p], state.marker)
    # Whatever Ray spawned and did not stop with its node (idle workers, agents): found by the marker.
    leftovers = marked_pids(state.marker)
    _signal(leftovers, signal.SIGTERM, state.marker)
    left = _wait_gone(leftovers, 10)
    _signal(left, signal.SIGKILL, state.marker)
    left = _wait_gone(left, 5) + [p for p in state.pids if alive(p) and p in marked_pids(state.marker)]
    if not left:
        shutil.rmtree(state.ray_temp_dir, ignore_errors=True)
        state.path.unlink(missing_ok=True)
    return sorted(set(left))
