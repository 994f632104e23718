"""Every setting of a search, typed and with its default, in one place: ``SearchOptions``.

The command line (``aae_tune.search.cli``) parses its flags into one, its argparse defaults read from here; the
Python API (``aae_tune.search.api``) builds one from its keyword arguments. ``aae_tune.search.request`` then
validates it against the space, the stores and the cluster. What the options alone can tell (a value of the wrong
type, a count below 1, --resume without --name) is found here, without reading the space or touching the disk.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, fields
from numbers import Integral, Real
from types import NoneType
from typing import Any, get_args, get_type_hints

from aae_tune.errors import ConfigError
from aae_tune.schema import suggest
from aae_tune.search.resources import check_pending_timeout, check_seed
from aae_tune.search.space import NAME_PATTERN

# A --set KEY=VALUE text as typed (its value YAML), or a (dotted key, value) pair from the Python API (its value
# taken as it is: no text round trip)
Override = str | tuple[str, Any]
# Counts a flag may leave to the space's budget (None); given, each must be at least 1
COUNTS = ("num_samples", "max_epochs", "max_concurrent", "top_k", "final_samples")


@dataclass(frozen=True)
class SearchOptions:
    """One search's settings as given (each field is the flag of the same name, ``--num-samples`` for
    ``num_samples``; ``overrides`` are the ``--set`` pairs). None leaves a setting to the space or the environment;
    ``aae_tune.search.request.build_request`` resolves and checks them."""

    space: str  # a shipped space name (e.g. likelihood_mnist) or a YAML path
    overrides: tuple[Override, ...] = ()
    num_samples: int | None = None  # trials (None: the space's budget; 1 with train_best)
    max_epochs: int | None = None  # epochs per trial, ASHA's max_t (None: the space's budget)
    max_concurrent: int | None = None  # trials running at once (None: the space's budget)
    seed: int = 0  # seeds the searcher, every trial and every sample
    data_dir: str | None = None  # the dataset's folder or file (None: its loader's default)
    tracking_uri: str | None = None  # MLflow (None: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db)
    artifact_location: str | None = None  # artifact root of an MLflow experiment this search creates
    storage_path: str = "ray_results"  # Tune's results: a local folder or a URI Ray accepts
    address: str | None = None  # an existing Ray cluster (None: a local Ray)
    dashboard: bool = False  # the local Ray's dashboard, on 127.0.0.1
    cpus_per_trial: float = 1.0  # CPUs Ray reserves for each trial; also its torch thread count
    gpus_per_trial: float | None = None  # None: one GPU per trial if the cluster has GPUs, else CPU only
    name: str | None = None  # the search's name (None: <space>-<UTC time>); needed by resume
    resume: bool = False  # continue the interrupted search called name
    optuna_storage: str | None = None  # the TPE study's SQLAlchemy URL (None: beside the MLflow store)
    warm_start: str | None = None  # an earlier search of the same space whose finished trials seed TPE
    train_best: str | None = None  # a finished search whose best num_samples configurations this one trains
    top_k: int | None = None  # best trials that get the test protocol (None: the space's)
    final_samples: int | None = None  # model samples for that protocol (None: the space's)
    pending_timeout: float | None = None  # seconds all trials may wait for resources (None: 600 locally)
    max_failures: int = 2  # restarts of a failed trial from its last checkpoint (-1: no limit)
    smoke: bool = False  # tiny budget and nets: an end-to-end check

    @classmethod
    def from_kwargs(cls, space: str | os.PathLike[str], /, **kwargs: Any) -> SearchOptions:
        """The Python API's keyword arguments as options; a name that is no option is refused, all at once, with
        the names that are. ``overrides`` is a mapping of dotted keys to values (or already a sequence of pairs)."""
        known = [f.name for f in fields(cls) if f.name != "space"]
        if unknown := [name for name in kwargs if name not in known]:
            problems = [f"{name}: not a search option{suggest(name, known)}" for name in unknown]
            raise ConfigError([*problems, f"the options are: {', '.join(known)}"], "search options")
        overrides = kwargs.get("overrides")
        if overrides is None or isinstance(overrides, Mapping):
            kwargs["overrides"] = tuple((overrides or {}).items())
        elif isinstance(overrides, list | tuple):
            kwargs["overrides"] = tuple(overrides)
        # paths were accepted as os.PathLike before the options were typed: keep taking them, stored as text
        values = {k: os.fspath(v) if isinstance(v, os.PathLike) else v for k, v in {"space": space, **kwargs}.items()}
        return cls(**values)

    @classmethod
    def from_namespace(cls, args: Any) -> SearchOptions:
        """The command line's parsed flags (an ``argparse.Namespace``): attributes no option has are ignored, and an
        option the namespace lacks (one built by hand before the option existed) keeps its default."""
        values = {f.name: getattr(args, f.name) for f in fields(cls) if hasattr(args, f.name)}
        return cls(**{**values, "overrides": tuple(values.get("overrides") or ())})

    def type_problems(self) -> list[str]:
        """Each value that is not of its field's type (only the Python API can pass one: argparse converts)."""
        hints = get_type_hints(type(self))
        problems = [f"{f.name}: expected {describe(hints[f.name])}, got {getattr(self, f.name)!r}"
                    for f in fields(self) if f.name != "overrides" and not fits(getattr(self, f.name), hints[f.name])]
        if not isinstance(self.overrides, tuple) or not all(is_override(o) for o in self.overrides):
            problems.append(f"overrides: expected a mapping of dotted keys to values (or --set KEY=VALUE texts), got "
                            f"{self.overrides!r}")
        return problems

    def range_problems(self) -> list[str]:
        """What the (well-typed) options alone rule out, with the command line's flag names."""
        problems = [f"--{flag(k)}: must be >= 1, got {v}" for k in COUNTS if (v := getattr(self, k)) is not None
                    and v < 1]
        if not self.cpus_per_trial > 0:
            problems.append(f"--cpus-per-trial: must be > 0, got {self.cpus_per_trial}")
        if self.gpus_per_trial is not None and self.gpus_per_trial < 0:
            problems.append(f"--gpus-per-trial: must be >= 0, got {self.gpus_per_trial}")
        if self.resume and not self.name:
            problems.append("--resume needs --name: the name of the search to continue")
        if self.name and not valid_name(self.name):  # empty: a name is made up, as for None
            problems.append(name_problem(self.name))
        if self.max_failures < -1:
            problems.append(f"--max-failures: must be >= 0 (or -1 for no limit), got {self.max_failures}")
        check_seed(self.seed, problems)
        check_pending_timeout(self.pending_timeout, problems)
        return problems


def option_defaults() -> dict[str, Any]:
    """Each option's default, by field name (``space`` has none: it is required)."""
    return {f.name: f.default for f in fields(SearchOptions) if f.default is not MISSING}


def flag(name: str) -> str:
    """The command-line spelling of an option, without its dashes: ``num_samples`` -> ``num-samples``."""
    return name.replace("_", "-")


def valid_name(name: str) -> bool:
    """A search name that is one folder under the storage path (never a path out of it)."""
    return bool(NAME_PATTERN.match(name)) and ".." not in name


def name_problem(name: str) -> str:
    return f"--name {name!r}: use letters, digits, '_', '-', '.' (no '/' or '..'), at most 100"


def fits(value: Any, hint: Any) -> bool:
    """Whether ``value`` is of the type ``hint`` (``int``, ``float | None``, ...). A bool is no number here (True
    is an int to Python, but ``num_samples=True`` is a mistake); numpy's numbers are (they register as numbers)."""
    for kind in get_args(hint) or (hint,):
        if kind is NoneType and value is None or kind is bool and isinstance(value, bool) or \
                kind is str and isinstance(value, str):
            return True
        number = Integral if kind is int else Real if kind is float else None
        if number is not None and isinstance(value, number) and not isinstance(value, bool):
            return True
    return False


def describe(hint: Any) -> str:
    words = {int: "an integer", float: "a number", str: "a string", bool: "True or False", NoneType: "None"}
    return " or ".join(words.get(kind, str(kind)) for kind in get_args(hint) or (hint,))


def is_override(value: Any) -> bool:
    return isinstance(value, str) or (isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str))
