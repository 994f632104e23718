"""What a search says about itself in words: the parent run's description while it runs (``search_description``)
and, at the end, the summary printed to the terminal and stored in the search's record (``SearchSummary``).

The best trial is described with the score ``search.scoring`` defines, in the same words everywhere (the summary,
the parent run's description, the registered model's): ``valid_parzen_ll = 266.04, best of 30 epochs, reached at
epoch 26``. Its values are shown as values (a drop-epoch list, not the index the searcher once drew), drop epochs
past the epochs trained are marked as never applied, and the values fixed with ``--set`` are named.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aae_tune.cluster.browser import landing_url
from aae_tune.evaluate.scores import describe_test_scores
from aae_tune.search.lifecycle import resume_command
from aae_tune.search.results import STATUSES, TrialRow
from aae_tune.search.tracking import redact_uri
from aae_tune.search.values import differences, flatten, show_values

if TYPE_CHECKING:
    from aae_tune.search.request import SearchRequest
    from aae_tune.search.space import SearchSpace

PAPER_DATA = "the paper's 50K/10K/10K MNIST split"


def search_description(request: SearchRequest, data_caveat: str) -> list[str]:
    """The parent run's description while the search runs (markdown lines): space, budget, data."""
    space = request.space
    return [
        f"**{space.name}**: {space.description}",
        f"- budget: {request.num_samples} trials x {request.max_epochs} epochs, searcher {space.searcher.type}, "
        f"scheduler {space.scheduler.type}, seed {request.seed}{' (smoke)' if request.smoke else ''}",
        f"- data: {data_caveat or PAPER_DATA}",
        *(f"- {line}" for line in (request.source.describe(space.metric) if request.source else [])),
    ]


def score_text(metric: str, row: TrialRow, digits: str = ".2f") -> str:
    """A trial's score in words: the value, the epochs it is the best of, the epoch that reached it."""
    reached = f", reached at epoch {row.best_epoch}" if row.best_epoch is not None else ""
    epochs = f"{row.epochs} epoch{'' if row.epochs == 1 else 's'}"
    return f"{metric} = {row.best_valid:{digits}}, best of {epochs}{reached}"


def settings_in_effect(file_space: SearchSpace | None, space: SearchSpace,
                       smoke: bool = False) -> tuple[dict[str, Any], dict[str, Any]]:
    """(fixed, overrides): the values of the keys the space file searches that this search fixed (as its trials
    trained them), and every other setting that differs from the file (``--set``, or ``--train-best``'s source)."""
    if file_space is None:
        return {}, {}
    trained = flatten(space.experiment_config(smoke=smoke).to_dict())
    fixed = {k: trained[k] for k in file_space.params if k not in space.params and k in trained}
    pinned = {f"experiment.{k}" for k in fixed}
    changed = differences(file_space.to_dict(), space.to_dict())
    return fixed, {k: v for k, v in changed.items() if k not in pinned}


@dataclass
class SearchSummary:
    name: str
    experiment_dir: str
    tracking_uri: str
    experiment_name: str
    parent_run_id: str
    metric: str
    rows: list[TrialRow]
    best: TrialRow | None
    registered_model: str | None

    interrupted: bool = False
    note: str = ""
    recording_unfinished: bool = False  # trials done, MLflow unreachable while recording them
    finished_earlier: str = ""  # --resume of a finished search: its stored summary, printed again
    data_caveat: str = ""  # non-empty when the data is not the paper's: printed next to every figure
    experiment_id: str = ""
    fixed: dict[str, Any] = field(default_factory=dict)  # searched keys of the space file this search fixed
    overrides: dict[str, Any] = field(default_factory=dict)  # other settings that differ from the space file

    @classmethod
    def interrupted_search(cls, request: SearchRequest, parent_run_id: str, note: str = "",
                           recording_unfinished: bool = False) -> SearchSummary:
        return cls(
            name=request.name, experiment_dir=request.experiment_dir, tracking_uri=request.tracking_uri,
            experiment_name=request.experiment_name, parent_run_id=parent_run_id, metric=request.space.metric,
            rows=[], best=None, registered_model=None, interrupted=True, note=note,
            recording_unfinished=recording_unfinished,
        )

    @classmethod
    def already_finished(cls, request: SearchRequest, note: str) -> SearchSummary:
        return cls(
            name=request.name, experiment_dir=request.experiment_dir, tracking_uri=request.tracking_uri,
            experiment_name=request.experiment_name, parent_run_id="", metric=request.space.metric,
            rows=[], best=None, registered_model=None, finished_earlier=note,
        )

    def best_lines(self) -> list[str]:
        """The best trial's values and settings (after its score line): what was searched, what was fixed."""
        b = self.best
        if b is None:
            return []
        if b.config:
            lines = [f"searched values: {show_values(b.config, b.epochs)}"]
            if self.fixed:
                lines.append(f"fixed with --set: {show_values(self.fixed, b.epochs)}")
        elif self.fixed:
            lines = [f"searched values: none, all values fixed: {show_values(self.fixed, b.epochs)}"]
        else:
            lines = ["searched values: none (the space searches nothing)"]
        if self.overrides:
            lines.append(f"--set in effect (differences from the space file): {show_values(self.overrides)}")
        return lines

    def test_lines(self) -> list[str]:
        b = self.best
        if b is None:
            return []
        source = f"epoch-{b.best_epoch} checkpoint" if b.best_epoch is not None else "best checkpoint"
        return [f"{line}  (from the {source}; reported, never optimised)" for line in describe_test_scores(
            b.test_metrics)]

    def description(self, request: SearchRequest) -> str:
        """Markdown for the parent run's page: the space, the budget, the data and the best trial's figures."""
        lines = search_description(request, self.data_caveat)
        if self.best is not None:
            b = self.best
            lines.append(f"- best trial `{b.trial_id}` (MLflow run `{b.run_id}`): {score_text(self.metric, b)}; "
                         f"registered as `{self.registered_model}`")
            lines += [f"  - {line}" for line in (*self.best_lines(), *self.test_lines())]
        return "\n".join(lines)

    def browse_hint(self) -> str:
        """Where to look at the runs: the server's experiment page, or how to serve a local store first."""
        uri = redact_uri(self.tracking_uri)
        if uri.startswith(("http://", "https://")):
            return landing_url(uri, self.experiment_id)
        return f"mlflow ui --backend-store-uri {uri}, then {landing_url('http://127.0.0.1:5000', self.experiment_id)}"

    def render(self) -> str:
        if self.finished_earlier:
            return self.finished_earlier
        if self.interrupted:
            return (f"\n{self.note or 'search ' + self.name + ' was interrupted'}; its state is saved in "
                    f"{self.experiment_dir}.\ncontinue it with: {resume_command(self.name)}")
        counts = {s: sum(r.status == s for r in self.rows) for s in STATUSES}
        lines = [
            f"\n== search {self.name}: {len(self.rows)} trials ({counts['COMPLETED']} completed, "
            f"{counts['STOPPED']} stopped early, {counts['DIVERGED']} diverged, {counts['ERROR']} failed)",
        ]
        for r in self.rows:
            if r.status in ("DIVERGED", "ERROR"):
                last = ((r.error or "").strip().splitlines() or ["unknown error"])[-1]
                lines.append(f"   {r.status.lower()}: trial {r.trial_id}: {last}")
        if self.best is None:
            lines.append("   no trial reported a score: see the errors above and the Tune logs")
        else:
            b = self.best
            caveat = f"  [{self.data_caveat}]" if self.data_caveat else ""
            lines.append(f"best trial {b.trial_id} (MLflow run {b.run_id}): {score_text(self.metric, b)}{caveat}")
            lines += [f"   {line}" for line in self.best_lines()]
            lines += [f"   {line}{caveat}" for line in self.test_lines()]
        lines += [
            f"MLflow: {redact_uri(self.tracking_uri)}, experiment {self.experiment_name}, parent run "
            f"{self.parent_run_id}",
            f"   browse: {self.browse_hint()}",
            f"registered model: {self.registered_model or '-'}",
            f"Tune results: {self.experiment_dir}",
        ]
        return "\n".join(lines)
