"""The driver-side Tune callback that records trials in MLflow, and keeps recording when MLflow is down.

Every Tune hook becomes a small JSON *event*; ``apply`` turns events into MLflow writes. When the tracking server
cannot be reached, events go to a spool file in the search's folder instead (training is never held up): the
problem is reported once, the server is retried every ``RETRY_S`` seconds, and on the first success the spool is
replayed in order. Whatever is still spooled when the search ends is uploaded by

    python -m aae_tune.search.callback --spool <storage>/<name>/mlflow_spool.jsonl --tracking-uri URI

or automatically by ``python -m aae_tune.search ... --name <name> --resume``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from ray import tune

from aae_tune.errors import is_divergence
from aae_tune.names import SEARCH_RECORD, SPOOL_FILE, TAG_CONFIG_NOW, TAG_STOP_REASON, experiment_name
from aae_tune.search.tracking import SearchTracker, numeric_metrics, redact_uri
from aae_tune.search.values import flatten

logger = logging.getLogger("aae_tune.tracking")
RETRY_S = 30.0


def is_unreachable(exc: BaseException) -> bool:
    """Connection-level failures (server down, timeouts), as opposed to MLflow rejecting a request."""
    text = f"{type(exc).__name__}: {exc}"
    markers = ("Connection refused", "Max retries exceeded", "failed with exception", "Timeout", "ConnectionError",
               "Failed to establish", "Name or service not known", "RemoteDisconnected")
    return isinstance(exc, (ConnectionError, TimeoutError)) or any(m in text for m in markers)


def failure_reason(trial: Any) -> str:
    """The last line of the trial's error (the exception and its message), from Tune's error file."""
    text = ""
    path = getattr(trial, "error_file", None)
    if path and os.path.isfile(path):
        with open(path) as f:
            text = f.read()
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()] or ["the trial raised an error"]
    return lines[-1][:2000]


class MlflowTrialCallback(tune.Callback):
    """Streams every trial's params, per-epoch metrics (step = epoch), placement and end state into its run."""

    def __init__(self, tracker: SearchTracker, max_epochs: int, spool_path: str | None = None):
        self.tracker, self.max_epochs, self.spool_path = tracker, max_epochs, spool_path
        self._placement: dict[str, tuple[str, int]] = {}  # trial id -> (node, worker pid) of its latest result
        self._nodes_seen: dict[str, list[str]] = {}  # trial id -> nodes it ran on, in order
        self._logged: dict[str, int] = {}  # trial id -> last epoch logged to MLflow
        self._failures: dict[str, int] = {}  # trial id -> failures recovered from
        self._down_since: float | None = None
        self._last_try = 0.0

    # ---- Tune hooks -> events -------------------------------------------------------------------------
    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.record({"kind": "start", "trial_id": trial.trial_id, "name": str(trial), "config": dict(trial.config)})

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        step = int(result.get("epoch", result.get("training_iteration", 0)))
        self.record({"kind": "result", "trial_id": trial.trial_id, "name": str(trial), "step": step,
                     "has_epoch": "epoch" in result, "metrics": numeric_metrics(result),
                     "node": result.get("node_id"), "pid": result.get("pid")})

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        epochs = int((trial.last_result or {}).get("epoch", 0))
        self.record({"kind": "complete", "trial_id": trial.trial_id, "epochs": epochs})

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.record({"kind": "recover", "trial_id": trial.trial_id, "reason": failure_reason(trial)})

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.record({"kind": "error", "trial_id": trial.trial_id, "reason": failure_reason(trial)})

    # ---- delivery: now, or spooled until the server answers again --------------------------------------
    def record(self, event: dict[str, Any]) -> None:
        if self._down_since is not None and time.time() - self._last_try < RETRY_S:
            self._spool(event)
            return
        self._last_try = time.time()
        try:
            self.flush()
            self.apply(event)
        except Exception as exc:
            if not is_unreachable(exc):
                raise
            if self._down_since is None:
                self._down_since = time.time()
                logger.warning("MLflow at %s is unreachable (%s). Training continues; tracking data goes to %s and "
                               "is sent when the server answers again (retry every %.0f s).",
                               redact_uri(self.tracker.tracking_uri), exc, self.spool_path, RETRY_S)
                print(f"WARNING: MLflow unreachable ({type(exc).__name__}); spooling to {self.spool_path}",
                      file=sys.stderr, flush=True)
            self._spool(event)

    def _spool(self, event: dict[str, Any]) -> None:
        if self.spool_path is None:
            raise RuntimeError("MLflow is unreachable and no spool file is configured")
        with open(self.spool_path, "a") as f:
            f.write(json.dumps(event) + "\n")

    def flush(self) -> int:
        """Replay spooled events in order; the spool is removed only once all of them reached MLflow."""
        if not self.spool_path or not os.path.exists(self.spool_path):
            return 0
        events = [json.loads(line) for line in Path(self.spool_path).read_text().splitlines() if line.strip()]
        for event in events:
            self.apply(event)
        os.remove(self.spool_path)
        if self._down_since is not None:
            print(f"MLflow reachable again: {len(events)} spooled events sent", file=sys.stderr, flush=True)
        self._down_since = None
        return len(events)

    # ---- events -> MLflow ------------------------------------------------------------------------------
    def apply(self, event: dict[str, Any]) -> None:
        trial_id = event["trial_id"]
        run_id = self.tracker.trial_run(trial_id, run_name=event.get("name"))
        kind = event["kind"]
        if kind == "start":
            if self.tracker.log_params(run_id, event["config"]):
                # A PBT member restarted from another's checkpoint with mutated values (MLflow params are
                # write-once): the config it trains with now, as a tag, next to its per-epoch lr_* metrics.
                self.tracker.set_tags(run_id, {TAG_CONFIG_NOW: json.dumps(flatten(event["config"]), default=str)})
        elif kind == "result":
            self._apply_result(trial_id, run_id, event)
        elif kind == "complete":
            epochs = event["epochs"]
            early = f"stopped early by the scheduler after epoch {epochs}"
            reason = "completed" if epochs >= self.max_epochs else early
            self.tracker.set_tags(run_id, {TAG_STOP_REASON: reason, "epochs_trained": epochs})
            self.tracker.end_run(run_id, "FINISHED")
        elif kind == "recover":
            self._failures[trial_id] = self._failures.get(trial_id, 0) + 1
            self._logged.pop(trial_id, None)  # re-read after the restart: the checkpoint may be older
            self.tracker.set_tags(run_id, {"recovered_failures": self._failures[trial_id],
                                           "last_failure": event["reason"]})
        elif kind == "error":
            reason = event["reason"]
            prefix = "diverged" if is_divergence(reason) else "error"
            self.tracker.set_tags(run_id, {TAG_STOP_REASON: f"{prefix}: {reason}"})
            self.tracker.end_run(run_id, "FAILED")

    def _apply_result(self, trial_id: str, run_id: str, event: dict[str, Any]) -> None:
        step = event["step"]
        if trial_id not in self._logged:  # first result this driver sees: what reached MLflow before?
            self._logged[trial_id] = self.tracker.last_step(run_id)
        # A trial restored from an older checkpoint (driver restart, lost worker) re-trains epochs that MLflow
        # already has; training is deterministic, so those points are identical: log each epoch once.
        if event["has_epoch"] and step <= self._logged[trial_id]:
            return
        self.tracker.log_metrics(run_id, event["metrics"], step=step)
        self._logged[trial_id] = max(self._logged[trial_id], step)
        node, pid = event.get("node"), event.get("pid")
        if node and self._placement.get(trial_id) != (node, pid):  # a tag per placement, not per epoch
            self._placement[trial_id] = (node, pid)
            seen = self._nodes_seen.setdefault(trial_id, [])
            if node not in seen:
                seen.append(node)
            self.tracker.set_tags(run_id, {"ray_node_id": node, "ray_nodes": ",".join(seen), "ray_pid": pid})


def main(argv: list[str] | None = None) -> int:
    """Upload a spool left by a search whose MLflow server was down."""
    p = argparse.ArgumentParser(prog="python -m aae_tune.search.callback", description=main.__doc__)
    p.add_argument("--spool", required=True, help=f"the {SPOOL_FILE} in the search's folder")
    p.add_argument("--tracking-uri", required=True)
    args = p.parse_args(argv)
    spool = Path(args.spool)
    folder = spool.parent
    record = json.loads((folder / SEARCH_RECORD).read_text())
    tracker = SearchTracker(args.tracking_uri, experiment_name(record["space_name"]), folder.name)
    sent = MlflowTrialCallback(tracker, int(record["max_epochs"]), str(spool)).flush()
    print(f"sent {sent} spooled events to {redact_uri(args.tracking_uri)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
