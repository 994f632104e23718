"""One driver session of a search: it holds the search (``search.lease``), puts a resumed search's signed state back
in place (``search.signing``), runs Tune (``search.driver``) under the guard that signs and stops it
(``search.guard``), and leaves the search's record in the state that says what to do next
(``search.lifecycle``)."""

from __future__ import annotations

import contextlib
import traceback

from aae_tune.cluster.ray_session import start_ray
from aae_tune.data.splits import SplitData
from aae_tune.errors import SearchFailed
from aae_tune.names import TAG_STOP_REASON
from aae_tune.search.callback import MlflowTrialCallback, is_unreachable
from aae_tune.search.driver import TUNER_FILE, build_tuner, cut_short, search_environment, search_params, spool_path
from aae_tune.search.finalize import finalize_search
from aae_tune.search.guard import SearchControls, guard_search
from aae_tune.search.lease import SearchLease
from aae_tune.search.lifecycle import (
    CREATED,
    FAILED,
    FINISHED,
    INTERRUPTED,
    RUNNING,
    SearchRecord,
    finished_note,
    forward_sigterm,
    resume_command,
    sigterm_interrupts,
)
from aae_tune.search.lineage import code_version, data_lineage
from aae_tune.search.request import SearchRequest, saved_record, search_record
from aae_tune.search.retrain import source_tags
from aae_tune.search.signing import StateSigner, restore_verified, signed_trials, signing_key
from aae_tune.search.summary import SearchSummary, search_description
from aae_tune.search.tracking import SearchTracker, redact_uri


def run_search(request: SearchRequest, data: SplitData) -> SearchSummary:
    """Start or resume the search, wait for it, evaluate and record its best trials. The search's life is a state
    machine (search.lifecycle); one driver at a time holds it (search.lease); what Tune writes is signed
    (search.signing). ``SearchBusy`` before anything is touched if another driver runs it; ``SearchFailed`` (the
    search recorded as failed) for an error after it started."""
    if request.verified is not None:
        done = finished_note(saved_record(request.verified), request.name)
        if done is not None:
            return SearchSummary.already_finished(request, done)  # nothing changes: no lease, no write
    with search_environment(request), SearchLease(request.experiment_dir, request.name) as lease:
        if lease.note:
            print(lease.note, flush=True)
        record = open_record(request)
        expected = signed_trials(request.verified) if request.verified else 0
        controls = SearchControls(record.signer, lease, expected_trials=expected)
        with guard_search(request.experiment_dir, controls), \
                sigterm_interrupts() as signals:
            return guarded_search(request, data, record, controls, signals)


def open_record(request: SearchRequest) -> SearchRecord:
    """The search's record and signer: a new search's, or a resumed one's signed state, put back in place first so
    that Tune reads only what this search wrote."""
    key = signing_key()
    directory = request.experiment_dir
    if request.verified is None:
        record = SearchRecord(directory, search_record(request.space, request.seed, request.smoke,
                                                       request.max_epochs) | {"state": CREATED},
                              StateSigner(directory, key))
        record.save()
        return record
    for note in restore_verified(request.verified):
        print(f"signed state: {note}", flush=True)
    return SearchRecord(directory, saved_record(request.verified), StateSigner(directory, key,
                                                                               request.verified.manifest))


def guarded_search(request: SearchRequest, data: SplitData, record: SearchRecord, controls: SearchControls,
                   signals: dict[str, bool]) -> SearchSummary:
    """Every way the search can end leaves its record in a state that says what to do next."""
    tracker = None
    try:
        tracker = open_tracker(request, data)
        record.move(RUNNING)
        summary = _run_search(request, data, tracker, record, controls, signals)
    except KeyboardInterrupt:
        how = "SIGTERM" if signals["sigterm"] else "Ctrl-C"
        end_quietly(record, tracker, INTERRUPTED, f"interrupted by {how}")
        return SearchSummary.interrupted_search(request, tracker.parent_run_id if tracker else "",
                                                f"search {request.name} was interrupted by {how}")
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}".splitlines()[0][:500]
        end_quietly(record, tracker, FAILED, reason, traceback.format_exc())
        raise SearchFailed(f"search {request.name} failed: {reason}. It is recorded as failed (the traceback is "
                           f"the parent run's driver_error.txt); once fixed, continue it with: "
                           f"{resume_command(request.name)}") from exc
    if summary.interrupted:
        end_quietly(record, tracker, INTERRUPTED, summary.note or "interrupted")
    else:
        record.move(FINISHED, summary=summary.render())
    return summary


def end_quietly(record: SearchRecord, tracker: SearchTracker | None, state: str, reason: str,
                details: str = "") -> None:
    """Record how the search ended, as far as the storage and MLflow still let us (a full disk, an outage)."""
    with contextlib.suppress(Exception):
        record.move(state, reason)
    if tracker is None:
        return
    with contextlib.suppress(Exception):
        tracker.set_tags(tracker.parent_run_id, {TAG_STOP_REASON: reason})
        if details:
            tracker.client.log_text(tracker.parent_run_id, details, "driver_error.txt")
        tracker.end_run(tracker.parent_run_id, "FAILED" if state == FAILED else "KILLED")


def open_tracker(request: SearchRequest, data: SplitData) -> SearchTracker:
    """The search's parent run, with its parameters, space, code, data and description."""
    tracker = SearchTracker(request.tracking_uri, request.experiment_name, request.name, request.artifact_location)
    tracker.log_params(tracker.parent_run_id, search_params(request))
    tracker.log_space(request.space)
    code_note = tracker.record_code(code_version(), resume=request.resume)
    if code_note:
        print(code_note, flush=True)
    if request.source:
        tracker.set_tags(tracker.parent_run_id, source_tags(request.source))
    tracker.record_data(data_lineage(data, request.space.dataset.name))
    tracker.describe(tracker.parent_run_id, "\n".join(search_description(request, tracker.lineage.caveat)))
    return tracker


def _run_search(request: SearchRequest, data: SplitData, tracker: SearchTracker, record: SearchRecord,
                controls: SearchControls, signals: dict[str, bool]) -> SearchSummary:
    sent = MlflowTrialCallback(tracker, request.max_epochs, spool_path(request)).flush()  # left by an earlier run
    if sent:
        print(f"sent {sent} tracking events spooled while MLflow was unreachable", flush=True)
    start_ray(request.address, dashboard=request.dashboard)
    forward_sigterm(signals)  # again: ray.init replaced it with its own
    print(f"search {request.name}: {request.num_samples} trials x {request.max_epochs} epochs on "
          f"{data.source}; MLflow {redact_uri(request.tracking_uri)} run {tracker.parent_run_id}", flush=True)
    tuner = build_tuner(request, data, tracker)
    record.signer.include_stored(TUNER_FILE)  # Tune wrote it straight to the storage path
    record.signer.commit()
    results = tuner.fit()
    stop = controls.reason_to_stop()
    if stop:
        return SearchSummary.interrupted_search(request, tracker.parent_run_id, f"search {request.name} stopped: "
                                                f"{stop}; fix that, then")
    if results.num_terminated + results.num_errors < request.num_samples or any(map(cut_short, results)):
        # Ctrl-C or SIGTERM (Tune saved its state) or a driver-side failure: nothing to finalize yet.
        how = " by SIGTERM" if signals["sigterm"] else ""
        return SearchSummary.interrupted_search(request, tracker.parent_run_id,
                                                f"search {request.name} was interrupted{how}")
    try:
        return finalize_search(request, results, tracker, data)
    except Exception as exc:
        if not is_unreachable(exc):
            raise
        return SearchSummary.interrupted_search(
            request, tracker.parent_run_id,
            note=f"MLflow became unreachable while recording the results ({type(exc).__name__}). The trials are "
                 "done; once the server is back, the same command with --resume records the rest without re-training.",
            recording_unfinished=True,
        )
