"""How a searched value is shown to the searcher and to people: one text per choice, the same everywhere.

Optuna's categoricals hold scalars only, so a choice with list or mapping values (the learning-rate schedule's drop
epochs: ``[[], [10], [50]]``) cannot go to the searcher as it is. It goes as the text of each value (``"[50]"``),
not as an index: Tune's table, the trial's MLflow params, the Optuna study (and optuna-dashboard) then show what was
tried, and ``decode_choice`` turns the text back into the value the trial trains with. Searches started before
this (and their MLflow params, Optuna studies) hold the value's index instead: both read back.

Nothing here imports the rest of the package: the space, the report and the summary all use it.
"""

from __future__ import annotations

import json
from typing import Any

DROP_SUFFIX = "drop_epochs"  # schedule keys: a drop at epoch e changes training only if more than e epochs ran


def is_listed(values: tuple[Any, ...] | list[Any] | None) -> bool:
    """A choice the searcher gets as texts: one of its values is a list or a mapping."""
    return any(isinstance(v, (list, tuple, dict)) for v in values or ())


def choice_text(value: Any) -> str:
    """A choice's value as the searcher and people see it: strings as they are, anything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value)


def searched_values(values: tuple[Any, ...]) -> list[Any]:
    """What Tune and Optuna draw from for a choice or grid: the values, or their texts for a listed choice."""
    return [choice_text(v) for v in values] if is_listed(values) else list(values)


def decode_choice(values: tuple[Any, ...], drawn: Any) -> Any:
    """The value a trial trains with, from what the searcher drew (a text, or an older search's index)."""
    if not is_listed(values):
        return drawn
    if isinstance(drawn, str):
        by_text = {choice_text(v): v for v in values}
        if drawn in by_text:
            return by_text[drawn]
    if isinstance(drawn, int) and not isinstance(drawn, bool) and 0 <= drawn < len(values):
        return values[drawn]  # a search started before choices went by text
    return drawn


def encode_choice(values: tuple[Any, ...], value: Any) -> Any:
    """What the searcher draws for ``value`` (read back from MLflow params or an Optuna study, possibly an older
    search's index): the inverse of ``decode_choice``."""
    if not is_listed(values):
        return value
    texts = [choice_text(v) for v in values]
    text = value if isinstance(value, str) else choice_text(list(value) if isinstance(value, tuple) else value)
    if text in texts:
        return text
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(values):
        return texts[value]
    return value


def duplicate_texts(values: tuple[Any, ...]) -> list[str]:
    """Texts that two values of a listed choice share (a string spelled like a list): they could not be told apart."""
    if not is_listed(values):
        return []
    texts = [choice_text(v) for v in values]
    return sorted({t for t in texts if texts.count(t) > 1})


def never_applied(key: str, value: Any, epochs: int) -> list[int]:
    """The drop epochs of a schedule key that changed nothing: a drop at epoch e applies from epoch e + 1, so with
    ``epochs`` trained every e >= epochs never happened."""
    if not key.endswith(DROP_SUFFIX) or not isinstance(value, (list, tuple)):
        return []
    return [e for e in value if isinstance(e, (int, float)) and e >= epochs]


def show_value(key: str, value: Any, epochs: int | None = None) -> str:
    """``key=value`` for a person, saying which drop epochs lay beyond the ``epochs`` trained (shown, not clipped:
    the configuration is what --train-best trains again, longer, where those drops do happen)."""
    text = f"{key}={choice_text(list(value)) if isinstance(value, tuple) else choice_text(value)}"
    late = never_applied(key, value, epochs) if epochs is not None else []
    if late:
        which = ", ".join(str(e) for e in late)
        text += f" (drop at epoch {which}: not reached in {epochs} epoch{'' if epochs == 1 else 's'}, never applied)"
    return text


def show_values(values: dict[str, Any], epochs: int | None = None) -> str:
    return ", ".join(show_value(k, v, epochs) for k, v in sorted(values.items())) or "-"


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"optim": {"lr": 1}} -> {"optim.lr": 1} (an empty mapping has no leaves)."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def differences(base: dict[str, Any], now: dict[str, Any]) -> dict[str, Any]:
    """The dotted leaves of ``now`` that ``base`` lacks or holds otherwise (e.g. a resolved space against its file)."""
    flat_base, flat_now = flatten(base), flatten(now)
    return {k: v for k, v in flat_now.items() if k not in flat_base or flat_base[k] != v}
