"""A search's life as an explicit state machine, recorded in one place: its record ``aae_search.json`` (signed with
the rest of its state, ``search.signing``).

    created --> running --> finished
                   |  ^
                   v  |  (--resume)
          interrupted / failed

- ``running``: a driver holds it (``search.lease``); a driver killed outright leaves it ``running`` and the lease
  says whether that driver is gone.
- ``interrupted``: Ctrl-C, SIGTERM (a job scheduler, ``kubectl delete``), a storage that cannot be written, or
  MLflow unreachable at the end; ``--resume`` continues it.
- ``failed``: an error after the search had started; the reason is recorded; ``--resume`` continues it.
- ``finished``: ``--resume`` prints the stored summary and changes nothing (``--train-best`` trains more).

Exit codes of ``python -m aae_tune.search`` follow the state it leaves (``EXIT_CODES``).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections.abc import Iterator
from typing import Any

from aae_tune.names import SEARCH_RECORD
from aae_tune.search.signing import StateSigner
from aae_tune.search.storage_files import write_bytes

CREATED, RUNNING, INTERRUPTED, FAILED, FINISHED = "created", "running", "interrupted", "failed", "finished"
# A search can be interrupted or fail before it runs (an interrupt or an MLflow error while its parent run is set
# up, on a first start or a resume); only a running search finishes, and a finished one never changes again.
TRANSITIONS = {
    CREATED: {RUNNING, INTERRUPTED, FAILED},
    RUNNING: {INTERRUPTED, FAILED, FINISHED},
    INTERRUPTED: {RUNNING, FAILED},
    FAILED: {RUNNING, INTERRUPTED},
    FINISHED: set(),
}
EXIT_CODES = {
    "done": 0,  # finished, or --resume of a finished search (its summary printed again)
    "no score": 1,  # finished, but no trial reported a score
    "refused": 2,  # bad input, an untrusted storage path, another driver holds the search: nothing started
    "recording unfinished": 3,  # trials done, the MLflow record not (MLflow unreachable): --resume completes it
    "failed": 4,  # an error after the search started: recorded as failed, --resume continues
    "interrupted": 130,  # Ctrl-C, SIGTERM, or a storage write that failed: --resume continues
}
HISTORY_LIMIT = 100  # transitions kept in the record


class SearchRecord:
    """The record of one search, each change written to its folder and signed before the next step runs."""

    def __init__(self, experiment_dir: str, record: dict[str, Any], signer: StateSigner):
        self.experiment_dir, self.data, self.signer = experiment_dir, dict(record), signer

    @property
    def state(self) -> str:
        return str(self.data.get("state", CREATED))

    def move(self, state: str, reason: str = "", summary: str | None = None) -> None:
        if state not in TRANSITIONS[self.state] and state != self.state:
            raise RuntimeError(f"search record: no transition from {self.state} to {state}")
        history = list(self.data.get("history", []))[-(HISTORY_LIMIT - 1):]
        history.append({"state": state, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "reason": reason})
        self.data.update(state=state, reason=reason, history=history)
        if summary is not None:
            self.data["summary"] = summary
        self.save()

    def save(self) -> None:
        data = json.dumps(self.data, indent=2, sort_keys=True).encode()
        write_bytes(f"{self.experiment_dir}/{SEARCH_RECORD}", data)
        self.signer.include(SEARCH_RECORD, data)
        self.signer.commit()


def finished_note(record: dict[str, Any], name: str) -> str | None:
    """What ``--resume`` of a finished search prints (its summary again); None if it has not finished."""
    if record.get("state") != FINISHED:
        return None
    ended = next((h["at"] for h in reversed(record.get("history", [])) if h.get("state") == FINISHED), "?")
    return (f"{record.get('summary', '').rstrip()}\n\nsearch {name} finished at {ended}; nothing was changed. To "
            f"train its best configurations longer: python -m aae_tune.search --space ... --train-best {name} "
            "--name <new name>")


def forward_sigterm(seen: dict[str, bool]) -> Any:
    """SIGTERM (a job scheduler, ``kubectl delete``) stops the search like Ctrl-C: inside Tune's loop Tune's own
    SIGINT handler saves the state and ends the loop; elsewhere the interrupt unwinds the driver, which records the
    search as interrupted. ``seen["sigterm"]`` says it arrived. Installed again after ``ray.init``, which sets its
    own SIGTERM handler (``sys.exit``). Returns the handler it replaced."""

    def forward(signum: int, frame: Any) -> None:
        seen["sigterm"] = True
        os.kill(os.getpid(), signal.SIGINT)

    return signal.signal(signal.SIGTERM, forward)


@contextlib.contextmanager
def sigterm_interrupts() -> Iterator[dict[str, bool]]:
    """``forward_sigterm`` for the duration of the block, the previous handler afterwards."""
    seen = {"sigterm": False}
    previous = forward_sigterm(seen)
    try:
        yield seen
    finally:
        signal.signal(signal.SIGTERM, previous)


def resume_command(name: str) -> str:
    return (f"python -m aae_tune.search --space ... --name {name} --resume (with the same --storage-path and "
            "--tracking-uri)")
