"""YAML a user hands over (space files, config files, ``--set`` values), parsed with bounded cost.

``yaml.safe_load`` is safe from code execution, not from cost. An alias (``*a``) shares the node of its anchor,
so loading a few hundred bytes of nested aliases ("billion laughs") is cheap, but everything that reads the result
afterwards (validation, error messages that repr a value, a YAML dump) walks every path through the shared nodes:
nine levels of nine aliases are 9**9 values, minutes and gigabytes. Here the composer counts every node as if the
aliases were written out and refuses the input once a limit is passed, before anything is constructed; the
nesting depth is bounded too (the composer and constructor recurse per level), and a file is never read past its
byte limit (a 2 GB file, ``/dev/zero`` or a FIFO cost at most that limit).

Every refusal is a ``ConfigError`` naming the input and the limit.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from aae_tune.errors import ConfigError

__all__ = ["FILE_LIMITS", "VALUE_LIMITS", "YamlLimits", "load_yaml_text", "read_bounded_bytes", "read_yaml_file"]


@dataclass(frozen=True)
class YamlLimits:
    """What one YAML input may cost. Nodes and characters are counted with every alias expanded."""

    max_bytes: int
    max_aliases: int = 100  # a shipped space uses none
    max_depth: int = 32  # a shipped space nests 6 levels deep
    max_nodes: int = 100_000  # the largest shipped space has 233
    max_chars: int = 4 << 20  # scalar characters: an alias of a long string repeats that string


FILE_LIMITS = YamlLimits(max_bytes=1 << 20)  # 1 MiB: the largest shipped space is under 5 KB
# One --set value, or one searched value read back from MLflow: a number, a name, a short list.
VALUE_LIMITS = YamlLimits(max_bytes=64 << 10, max_nodes=10_000, max_chars=256 << 10)


class _Refused(Exception):
    """A limit was passed while composing; carries the user-facing problem (the caller names the input)."""


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader whose composer counts depth, alias uses, and nodes and scalar characters as if every alias
    were written out, and stops at the first limit passed."""

    def __init__(self, stream: str | bytes, limits: YamlLimits):
        super().__init__(stream)
        self.limits = limits
        self.depth = self.aliases = self.nodes = self.chars = 0
        self.expanded: dict[int, tuple[int, int]] = {}  # id(node) -> (nodes, chars) of its finished subtree

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        if self.check_event(yaml.AliasEvent):
            self._count_alias(self.peek_event())
            return super().compose_node(parent, index)
        self.depth += 1
        if self.depth > self.limits.max_depth:
            raise _Refused(f"nests deeper than {self.limits.max_depth} levels (at {_where(self.peek_event())}); "
                           "a config needs only a few levels: flatten it")
        nodes_before, chars_before = self.nodes, self.chars
        self._add(1, 0, self.peek_event())
        node = super().compose_node(parent, index)
        if isinstance(node, yaml.ScalarNode):
            self._add(0, len(node.value), node.start_mark)
        self.expanded[id(node)] = (self.nodes - nodes_before, self.chars - chars_before)
        self.depth -= 1
        return node

    def _count_alias(self, event: yaml.AliasEvent) -> None:
        self.aliases += 1
        if self.aliases > self.limits.max_aliases:
            raise _Refused(f"uses more than {self.limits.max_aliases} aliases (*name, at {_where(event)}); write "
                           "the values out instead of referring to anchors")
        target = self.anchors.get(event.anchor)
        if target is None:
            return  # an undefined alias: the composer reports it as invalid YAML
        if id(target) not in self.expanded:  # the anchored node is still being composed: it contains itself
            raise _Refused(f"alias *{event.anchor} at {_where(event)} refers to a node that contains it; a config "
                           "cannot be a recursive structure")
        nodes, chars = self.expanded[id(target)]
        self._add(nodes, chars, event)

    def _add(self, nodes: int, chars: int, at: Any) -> None:
        self.nodes += nodes
        self.chars += chars
        if self.nodes > self.limits.max_nodes:
            raise _Refused(f"holds more than {self.limits.max_nodes} values once its aliases are expanded (passed "
                           f"at {_where(at)}); a config holds a few hundred: write the values out, without nested "
                           "aliases")
        if self.chars > self.limits.max_chars:
            raise _Refused(f"holds more than {self.limits.max_chars} characters of values once its aliases are "
                           f"expanded (passed at {_where(at)}); write long values once, without aliases to them")


def _where(event_or_mark: Any) -> str:
    mark = getattr(event_or_mark, "start_mark", event_or_mark)
    return f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "its end"


def _parse(stream: str | bytes, limits: YamlLimits, source: str) -> Any:
    """One YAML document -> Python values (what ``yaml.safe_load`` returns), or a ConfigError."""
    try:
        loader = _BoundedLoader(stream, limits)  # PyYAML's reader checks the characters here already
    except yaml.YAMLError as exc:
        raise ConfigError([f"not valid YAML: {exc}"], source) from exc
    try:
        return loader.get_single_data()
    except _Refused as exc:
        raise ConfigError([str(exc)], source) from None
    except yaml.YAMLError as exc:
        raise ConfigError([f"not valid YAML: {exc}"], source) from exc
    except ValueError as exc:  # e.g. an integer of more digits than Python converts (sys.get_int_max_str_digits)
        raise ConfigError([f"not valid YAML: a value cannot be converted ({exc})"], source) from exc
    finally:
        loader.dispose()


def load_yaml_text(text: str, source: str, limits: YamlLimits = VALUE_LIMITS) -> Any:
    """Parse YAML text (a ``--set`` value, a value read back from MLflow) within ``limits``.

    Raises ConfigError(source): the text is too long, passes a limit, or is not valid YAML (then with the
    ``yaml.YAMLError`` as ``__cause__``, for callers that word a syntax error their own way)."""
    if len(text) > limits.max_bytes:
        raise ConfigError([f"is {len(text)} characters long, over the limit of {limits.max_bytes} for one value; "
                           "put long settings in a file instead"], source)
    return _parse(text, limits, source)


def read_yaml_file(path: str | os.PathLike[str], source: str | None = None, limits: YamlLimits = FILE_LIMITS) -> Any:
    """Read and parse a YAML file within ``limits`` (never reading more than ``limits.max_bytes`` + 1 bytes).

    Raises ConfigError(source, default: the path) when the file cannot be read, is too large, passes a limit or is
    not valid YAML."""
    source = source or str(path)
    return _parse(read_bounded_bytes(path, limits.max_bytes, source), limits, source)


def read_bounded_bytes(path: str | os.PathLike[str], max_bytes: int, source: str) -> bytes:
    """The content of ``path``, refused (ConfigError) once it holds more than ``max_bytes``: a regular file by its
    size before reading, anything else (a FIFO, a device such as /dev/zero) after reading ``max_bytes`` + 1."""
    try:
        # O_NONBLOCK: opening a FIFO that no process writes to would otherwise wait forever. Reads block again
        # below, and a FIFO without a writer then reads as empty.
        fd = os.open(Path(path), os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise ConfigError([f"cannot read {path}: {exc.strerror}"], source) from exc
    try:
        os.set_blocking(fd, True)
        size = os.fstat(fd)
        if stat.S_ISREG(size.st_mode) and size.st_size > max_bytes:
            raise ConfigError([_too_large(f"is {size.st_size} bytes", max_bytes)], source)
        data = _read_at_most(fd, max_bytes + 1)
    except OSError as exc:  # a directory reads as EISDIR
        raise ConfigError([f"cannot read {path}: {exc.strerror}"], source) from exc
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        raise ConfigError([_too_large(f"holds more than {max_bytes} bytes", max_bytes)], source)
    return data


def _read_at_most(fd: int, limit: int) -> bytes:
    """Up to ``limit`` bytes; one read of a pipe may return less than asked, so read until EOF or the limit."""
    parts, total = [], 0
    while total < limit:
        part = os.read(fd, min(limit - total, 1 << 20))
        if not part:
            break
        parts.append(part)
        total += len(part)
    return b"".join(parts)


def _too_large(what: str, max_bytes: int) -> str:
    mib = max_bytes / (1 << 20)
    return f"{what}; at most {max_bytes} bytes ({mib:g} MiB) are accepted: check the path names the right file"
