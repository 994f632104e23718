"""Typed dataclass configs built from plain dicts (YAML, JSON, ``--set`` overrides).

Every problem in a dict is collected — unknown keys (with the nearest valid key), wrong types, bad ranges — and
raised as ONE ``ConfigError`` so a user fixes a file in one go instead of one error per run.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, TypeVar, get_args, get_origin

import yaml

from aae_tune.errors import ConfigError
from aae_tune.safe_yaml import VALUE_LIMITS, load_yaml_text

T = TypeVar("T")
INT64_LIMIT = 2**63


def suggest(name: str, options: list[str]) -> str:
    """' (did you mean X?)' for the closest option, or ''."""
    close = difflib.get_close_matches(name, options, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _type_name(tp: Any) -> str:
    if get_origin(tp) is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    return getattr(tp, "__name__", str(tp))


class _Problems(list):
    """Problem messages, counting type errors apart: range checks of a node run only on well-typed values."""

    type_errors = 0

    def bad_type(self, message: str) -> None:
        self.type_errors += 1
        self.append(message)


def _convert(value: Any, tp: Any, path: str, problems: _Problems) -> Any:
    """Convert ``value`` to type ``tp`` or record a problem (and return the value unchanged)."""
    origin = get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = get_args(tp)
        if value is None and type(None) in options:
            return None
        inner = [o for o in options if o is not type(None)]
        return _convert(value, inner[0], path, problems)
    if origin is Literal:
        if value not in get_args(tp):
            hint = suggest(str(value), [str(a) for a in get_args(tp)])
            problems.bad_type(f"{path}: {value!r} is not {_type_name(tp)}{hint}")
        return value
    if origin is tuple:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = [value]  # a single number where a list is expected: accept it
        if not isinstance(value, (list, tuple)):
            problems.bad_type(f"{path}: expected a list, got {type(value).__name__} {value!r}")
            return value
        item_tp = get_args(tp)[0]
        return tuple(_convert(v, item_tp, f"{path}[{i}]", problems) for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, Mapping):
            problems.bad_type(f"{path}: expected a mapping, got {type(value).__name__} {value!r}")
            return value
        key_tp, value_tp = get_args(tp)
        if key_tp is str and (bad := [k for k in value if not isinstance(k, str)]):
            problems.bad_type(f"{path}: keys must be names (strings), got {bad[0]!r}")
            return value
        return {k: _convert(v, value_tp, f"{path}.{k}", problems) for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            problems.bad_type(f"{path}: expected a mapping of {tp.__name__} fields, got {value!r}")
            return value
        return _build(tp, value, path, problems)
    if tp is bool:
        if not isinstance(value, bool):
            problems.bad_type(f"{path}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            else:
                problems.bad_type(f"{path}: expected an integer, got {value!r}")
                return value
        if not -INT64_LIMIT <= value < INT64_LIMIT:  # torch, numpy and Ray hold 64-bit integers at most
            problems.bad_type(f"{path}: {str(value)[:20]}... is too large for an integer setting")
        return value
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 (PyYAML) reads 1e-3 as a string: accept what float() accepts
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            problems.bad_type(f"{path}: expected a number, got {value!r}")
            return value
        try:
            return float(value)
        except OverflowError:  # an integer of 309 digits: no float holds it
            problems.bad_type(f"{path}: {str(value)[:20]}... is too large for a number")
            return value
    if tp is str:
        if not isinstance(value, str):
            problems.bad_type(f"{path}: expected a string, got {value!r}")
        return value
    return value


def _build(cls: type[T], data: Mapping[str, Any], path: str, problems: _Problems) -> T:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    type_errors_before = problems.type_errors
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        where = f"{path}.{key}" if path else str(key)
        if key not in fields:
            problems.append(f"{where}: unknown key{suggest(str(key), list(fields))}; valid keys: {', '.join(fields)}")
            continue
        kwargs[key] = _convert(value, hints[key], where, problems)
    try:
        obj = cls(**kwargs)
    except TypeError as exc:  # a required field is missing
        problems.bad_type(f"{path or cls.__name__}: {exc}")
        return data  # type: ignore[return-value]
    # Range checks only make sense once every field below this node has the right type.
    check = getattr(obj, "check", None)
    if callable(check) and problems.type_errors == type_errors_before:
        problems.extend(f"{path}.{p}" if path else p for p in check())
    return obj


def collect(cls: type[T], data: Mapping[str, Any] | None) -> tuple[T | None, list[str]]:
    """Build ``cls`` from ``data``: (object or None if any value has the wrong type, every problem found)."""
    problems = _Problems()
    obj = _build(cls, data or {}, "", problems)
    return (None if problems.type_errors else obj), list(problems)


def from_dict(cls: type[T], data: Mapping[str, Any] | None, source: str = "config") -> T:
    """Build dataclass ``cls`` from ``data``; raise one ConfigError listing every problem."""
    obj, problems = collect(cls, data)
    if problems:
        raise ConfigError(problems, source)
    return obj  # type: ignore[return-value]


def to_dict(obj: Any) -> dict[str, Any]:
    """Plain-python (JSON/YAML-safe) dict of a dataclass config; tuples become lists."""

    def plain(v: Any) -> Any:
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return plain(dataclasses.asdict(obj))


def set_path(data: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``a.b.c = value`` in a nested dict, creating intermediate dicts."""
    node = data
    *parents, last = dotted.split(".")
    for key in parents:
        child = node.get(key)
        if not isinstance(child, dict):
            child = {}
            node[key] = child
        node = child
    node[last] = value


def parse_overrides(pairs: list[str | tuple[str, Any]]) -> list[tuple[str, Any]]:
    """``key.sub=value`` strings (``--set``) -> (dotted key, YAML-parsed value); malformed pairs raise ConfigError.
    A (key, value) pair (the Python API's ``overrides``) is taken as it is: its value is no text to parse."""
    out, problems = [], []
    for pair in pairs:
        if isinstance(pair, tuple):
            out.append(pair)
            continue
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            problems.append(f"--set {pair!r}: expected key=value, e.g. --set optim.reconstruction.lr=0.01")
            continue
        shown = _shorten(pair)
        try:
            out.append((key.strip(), load_yaml_text(raw, f"--set {shown}", VALUE_LIMITS)))
        except ConfigError as exc:
            if isinstance(exc.__cause__, yaml.YAMLError):
                problems.append(f"--set {shown}: value is not valid YAML ({exc.__cause__.__class__.__name__})")
            else:
                problems.extend(f"--set {shown}: {p}" for p in exc.problems)
    if problems:
        raise ConfigError(problems, "command line")
    return out


def _shorten(pair: str, keep: int = 80) -> str:
    """``repr`` of a --set pair for a message, cut short: a refused value may be a 60 KB bomb."""
    return repr(pair) if len(pair) <= keep else f"{pair[:keep]!r}... ({len(pair)} characters)"
