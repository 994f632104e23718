"""Search, then train long: the best K configurations of a finished search, trained again for a longer budget.

``python -m aae_tune.search --space likelihood_mnist --train-best SEARCH --num-samples K --max-epochs 200`` is
the multi-fidelity loop's second half: cheap trials (ASHA rungs, short budgets) rank the configurations, and the
K best by *validation* score (test figures never choose anything) are trained from scratch in a new search of
the same MLflow experiment — the source search's resolved space (its file and ``--set`` overrides, as logged on
its parent run), every trial run to the end (FIFO) and scored with the space's full test protocol. It is a
search like any other: ``--resume`` continues it, and its parent run names the search and the trials it came
from.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import yaml

from aae_tune.mlflow_store import mlflow_client, sqlite_path
from aae_tune.names import (
    ROLE_PARENT,
    ROLE_TRIAL,
    TAG_CONFIG_NOW,
    TAG_ROLE,
    TAG_SEARCH,
    TAG_SOURCE_RUN,
    TAG_SOURCE_TRIALS,
    TAG_TRAINED_FROM,
    TAG_TRIAL,
    experiment_name,
)
from aae_tune.safe_yaml import load_yaml_text, read_yaml_file
from aae_tune.search.space import SearchSpace, load_space

SPACE_ARTIFACT = "space.yaml"  # the resolved space on a search's parent run (SearchTracker.log_space)


@dataclass(frozen=True)
class Source:
    """Where a long run's configurations come from."""

    search: str  # the finished search's name
    parent_run_id: str
    trials: tuple[str, ...]  # its best trials' ids, best first
    scores: tuple[float, ...]  # their best validation scores
    points: tuple[dict[str, Any], ...]  # their sampled values, in Tune's config form (list choices as their text)

    def describe(self, metric: str) -> list[str]:
        pairs = ", ".join(f"{t} ({metric} {s:.4g})" for t, s in zip(self.trials, self.scores, strict=True))
        return [f"Trains the best {len(self.trials)} configuration(s) of search {self.search!r} (parent run "
                f"{self.parent_run_id}) again from scratch, ranked by validation score: {pairs}. Trial k of this "
                "search is the k-th of them."]


def load_source(tracking_uri: str, space_name: str, search: str, k: int, overrides: list[tuple[str, Any]],
                problems: list[str]) -> tuple[SearchSpace | None, Source | None]:
    """The source search's space (with ``overrides`` applied, then FIFO over K fixed points) and its K best
    configurations; problems go to ``problems``."""
    where = f"--train-best {search}"
    path = sqlite_path(tracking_uri)
    if path is not None and not path.is_file():  # reading must not create an empty store
        problems.append(f"{where}: no MLflow store at {path}; give the --tracking-uri the search recorded to")
        return None, None
    client = mlflow_client(tracking_uri)
    experiment = client.get_experiment_by_name(experiment_name(space_name))
    runs = client.search_runs([experiment.experiment_id], f"tags.{TAG_SEARCH} = '{search}'", max_results=10_000) \
        if experiment is not None else []
    parents = [r for r in runs if r.data.tags.get(TAG_ROLE) == ROLE_PARENT]
    if not parents:
        known = searches_of(client, experiment.experiment_id) if experiment is not None else []
        problems.append(f"{where}: no search of that name in MLflow experiment {experiment_name(space_name)!r} "
                        f"(searches there: {', '.join(known) or 'none'}); check the name, --space and --tracking-uri")
        return None, None
    parent = parents[0]
    if parent.info.status != "FINISHED":  # its ranking is partial: trials still queued, or never scored
        problems.append(f"{where}: that search has not finished (MLflow status {parent.info.status}); complete it "
                        f"first (the same command with --resume --name {search}), then train its best")
        return None, None
    space = source_space(client, parent.info.run_id, overrides, where, problems)
    if space is None:
        return None, None
    trials = [r for r in runs if r.data.tags.get(TAG_ROLE) == ROLE_TRIAL]
    ranked = rank_trials(client, trials, space)
    if len(ranked) < k:
        problems.append(f"{where}: it has {len(ranked)} trial(s) with a finite validation {space.metric}, fewer "
                        f"than the {k} asked for (--num-samples)")
        return space, None
    best = ranked[:k]
    source = Source(
        search=search, parent_run_id=parent.info.run_id, trials=tuple(r.data.tags[TAG_TRIAL] for _, r in best),
        scores=tuple(s for s, _ in best), points=tuple(sampled_values(r, space) for _, r in best),
    )
    return space, source


def searches_of(client: Any, experiment_id: str) -> list[str]:
    parents = client.search_runs([experiment_id], f"tags.{TAG_ROLE} = '{ROLE_PARENT}'", max_results=1000)
    return sorted({r.data.tags.get(TAG_SEARCH, "?") for r in parents})


def source_space(client: Any, run_id: str, overrides: list[tuple[str, Any]], where: str,
                 problems: list[str]) -> SearchSpace | None:
    """The space the source search ran (as logged), with this command's overrides; every trial runs to the end."""
    quiet = mock.patch.dict(os.environ, {"MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"})  # one small file
    with tempfile.TemporaryDirectory(prefix="aae_source_space_") as tmp, quiet:
        try:
            path = client.download_artifacts(run_id, SPACE_ARTIFACT, tmp)
        except Exception as exc:  # noqa: BLE001 - any missing or unreadable artifact is the same problem
            problems.append(f"{where}: its parent run {run_id} has no readable {SPACE_ARTIFACT} ({exc})")
            return None
        raw = read_yaml_file(path, f"{where}: {SPACE_ARTIFACT} of parent run {run_id}")
        raw["scheduler"], raw["searcher"] = {"type": "fifo"}, {"type": "random"}
        Path(path).write_text(yaml.safe_dump(raw, sort_keys=False))
        return load_space(path, overrides)


def rank_trials(client: Any, trials: list[Any], space: SearchSpace) -> list[tuple[float, Any]]:
    """(best validation score, run) of every trial with a finite score, best first."""
    ranked = []
    for run in trials:
        values = [m.value for m in client.get_metric_history(run.info.run_id, space.metric) if math.isfinite(m.value)]
        if values:
            ranked.append((max(values) if space.mode == "max" else min(values), run))
    ranked.sort(key=lambda pair: pair[0], reverse=space.mode == "max")
    return ranked


def sampled_values(run: Any, space: SearchSpace) -> dict[str, Any]:
    """A trial's searched values as Tune gave them to it. MLflow keeps params as text, so each is read back as
    YAML (numbers, lists, names), then as the searcher draws it (a list choice as its text; an older search logged
    its index). A PBT member trains from scratch with the values it ended on."""
    config = dict(run.data.params)
    config.update(json.loads(run.data.tags.get(TAG_CONFIG_NOW, "{}")))
    where = f"trial run {run.info.run_id}"
    return {key: space.encode(key, load_yaml_text(str(config[key]), f"{where}: param {key}"))
            for key in space.params if key in config}


def source_tags(source: Source) -> dict[str, str]:
    """Tags that link a long run's parent run to the search it came from (MLflow UI: filter on them)."""
    return {TAG_TRAINED_FROM: source.search, TAG_SOURCE_RUN: source.parent_run_id,
            TAG_SOURCE_TRIALS: json.dumps(list(source.trials))}
