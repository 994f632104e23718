"""One driver per search: a lease object in the search folder, held by the running driver and renewed on a
heartbeat, on local disk and in ``s3://`` / ``gs://`` alike (only plain reads and writes, which every store has).

A second driver for the same search (two terminals, a retried job, two cluster submissions) finds a live lease and
is refused before it touches anything (``SearchBusy``, exit code 2). A driver that died leaves its lease behind: on
the same machine a lease whose process is gone is taken over at once; elsewhere it expires ``ttl`` seconds after
its last renewal (the refusal says when). Two drivers that start at the same moment both write their claim, wait
``SETTLE_S`` and read it back: the claim that is still there wins, the other driver is refused.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from dataclasses import asdict, dataclass

from aae_tune.errors import SearchBusy
from aae_tune.names import LEASE_FILE
from aae_tune.search.storage_files import delete_file, read_bytes, write_bytes

TTL_ENV = "AAE_TUNE_LEASE_TTL_S"  # shorter in tests
DEFAULT_TTL_S = 60.0
SETTLE_S = 1.0  # longer than any driver needs between reading "no lease" and writing its claim
LEASE_LIMIT = 4096  # bytes: a lease is a few fields


@dataclass(frozen=True)
class LeaseHolder:
    owner: str  # a fresh id per driver
    host: str
    pid: int
    started: float  # time.time() of the claim
    renewed: float  # time.time() of the last heartbeat

    def age(self) -> float:
        return time.time() - self.renewed

    def describe(self) -> str:
        return f"driver pid {self.pid} on {self.host} (lease renewed {self.age():.0f} s ago)"


def lease_ttl() -> float:
    return float(os.environ.get(TTL_ENV, DEFAULT_TTL_S))


def read_holder(experiment_dir: str) -> LeaseHolder | None:
    """The lease in the folder; None when there is none or it is not a lease (garbage is no one's claim)."""
    try:
        data = json.loads(read_bytes(f"{experiment_dir}/{LEASE_FILE}", LEASE_LIMIT) or b"null")
        return LeaseHolder(str(data["owner"]), str(data["host"]), int(data["pid"]), float(data["started"]),
                           float(data["renewed"])) if data else None
    except (ValueError, KeyError, TypeError):
        return None


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def why_stale(holder: LeaseHolder, ttl: float) -> str | None:
    """Why a lease no longer protects its search (None: it does)."""
    if holder.host == socket.gethostname() and not process_alive(holder.pid):
        return f"its driver (pid {holder.pid} on this machine) is gone"
    if holder.age() > ttl:
        return f"it expired {holder.age() - ttl:.0f} s ago (last renewed by pid {holder.pid} on {holder.host})"
    return None


class SearchLease:
    """``with SearchLease(experiment_dir) as lease:`` holds the search for this driver, renewing the lease every
    quarter of its time to live, and gives it back on exit. ``lease.note`` says whose dead lease it took over."""

    def __init__(self, experiment_dir: str, name: str, ttl: float | None = None):
        self.experiment_dir, self.name = experiment_dir, name
        self.ttl = lease_ttl() if ttl is None else ttl
        self.owner = uuid.uuid4().hex
        self.note = ""
        self.lost = ""  # set by the heartbeat if another driver took the lease (this one stalled past its ttl)
        self._started = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def location(self) -> str:
        return f"{self.experiment_dir}/{LEASE_FILE}"

    def __enter__(self) -> SearchLease:
        self.acquire()
        self._thread = threading.Thread(target=self._heartbeat, name="aae-lease", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def acquire(self) -> None:
        holder = read_holder(self.experiment_dir)
        if holder is not None:
            stale = why_stale(holder, self.ttl)
            if stale is None:
                raise self._busy(holder)
            self.note = f"took over the lease of search {self.name}: {stale}"
        self._started = time.time()
        self._write()
        time.sleep(SETTLE_S)
        winner = read_holder(self.experiment_dir)
        if winner is None or winner.owner != self.owner:
            raise self._busy(winner) if winner else SearchBusy(
                f"search {self.name}: its lease at {self.location} could not be read back; check the storage path")

    def _busy(self, holder: LeaseHolder) -> SearchBusy:
        expires = time.strftime("%H:%M:%S UTC", time.gmtime(holder.renewed + self.ttl))
        return SearchBusy(
            f"search {self.name} is being run by another {holder.describe()}; two drivers must not run one search. "
            f"Wait for it to end, or, if that driver is dead, run the same command again after {expires} when its "
            f"lease expires")

    def _write(self) -> None:
        holder = LeaseHolder(self.owner, socket.gethostname(), os.getpid(), self._started, time.time())
        write_bytes(self.location, json.dumps(asdict(holder)).encode())

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.ttl / 4):
            try:
                holder = read_holder(self.experiment_dir)
                if holder is not None and holder.owner != self.owner:
                    self.lost = f"another {holder.describe()} took over the lease of search {self.name}"
                    return
                self._write()
            except OSError:
                continue  # a storage hiccup: the next beat tries again, well within the time to live

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        try:
            holder = read_holder(self.experiment_dir)
            if holder is not None and holder.owner == self.owner:
                delete_file(self.location)
        except OSError:
            pass  # the lease expires by itself
