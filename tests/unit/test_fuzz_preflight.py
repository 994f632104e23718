"""Fuzzing the pre-flight as a test (issue 24, item 7; docs/4-reliability.md, "Bad input").

Hypothesis derives space files from the shipped ones by mutation (keys deleted or renamed, values of the wrong type,
NaN, infinite, huge or negative, swapped bounds, aliases and alias bombs, deep nesting, unknown distributions and
``extends:`` targets, garbage, non-UTF-8 and empty files) and draws ``--set`` overrides from real keys and junk.
Every case must be a dry run that either prints the resolved space (exit 0, and ``make_request`` accepts the same
input) or prints one ``error:`` line (exit 2); never an escaped exception, a started Ray or a written file.
"""

from __future__ import annotations

import contextlib
import copy
import io
import math
import os
import tempfile
from pathlib import Path
from unittest import mock

import pytest
import ray
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from aae_tune.schema import parse_overrides
from aae_tune.search.api import make_request
from aae_tune.search.cli import main
from aae_tune.search.signing import KEY_ENV, KEY_FILE_ENV
from aae_tune.search.space import SPACES_DIR

SHIPPED_TEXT = {p.stem: p.read_bytes() for p in sorted(SPACES_DIR.glob("*.yaml"))}
SHIPPED = {name: yaml.safe_load(text) for name, text in SHIPPED_TEXT.items()}
SPACE_FILE = "space.yaml"  # inside the example's folder, which is also the working folder

# CI runs the same examples every time (derandomized; no example database written into the checkout), in well under
# a minute; AAE_TUNE_FUZZ_EXAMPLES=5000 fuzzes longer, with fresh random examples each run.
LONG_RUN = int(os.environ.get("AAE_TUNE_FUZZ_EXAMPLES", "0"))
FUZZ = settings(derandomize=not LONG_RUN, max_examples=LONG_RUN or 150, database=None, deadline=None, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.large_base_example])


def node_paths(tree, prefix: tuple = ()) -> list[tuple]:
    """Every path (tuple of keys and indices) into a parsed YAML tree, the root excluded."""
    children = tree.items() if isinstance(tree, dict) else enumerate(tree) if isinstance(tree, list) else ()
    return [p for key, child in children for p in [(*prefix, key), *node_paths(child, (*prefix, key))]]


def dotted_keys() -> list[str]:
    """``--set`` keys the shipped files have, also as bare experiment fields (``code_dim=8`` pins that field)."""
    keys = [".".join(p) for tree in SHIPPED.values() for p in node_paths(tree) if all(isinstance(k, str) for k in p)]
    return sorted({*keys, *(key.removeprefix("experiment.") for key in keys)})


PATHS = {name: node_paths(tree) for name, tree in SHIPPED.items()}
REAL_KEYS = dotted_keys()

SPECIAL = [math.nan, math.inf, -math.inf, 10**30, 2**63, -(2**63) - 1, -1, -0.5, 0, 0.0, 1e308, -1e308, 5e-324, 1e16,
           1e-5, True, False, None, "", "nan", ".inf", "1e400", "~", "uniform", "choice"]
HUGE_INTS = st.integers(300, 420).map(lambda digits: 10**digits)  # beyond a float, within what YAML converts
SCALARS = st.one_of(st.sampled_from(SPECIAL), st.sampled_from(SPECIAL), HUGE_INTS, st.integers(), st.floats(),
                    st.text(max_size=12), st.dates())
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.text(max_size=6) | st.integers() | st.none(), inner, max_size=3),
                      max_leaves=6)
JUNK_KEYS = st.one_of(st.text(max_size=8), st.integers(), st.none(), st.sampled_from(["experiment", "params", "low"]))
EXTENDS = st.sampled_from([*SHIPPED, "likelihood_mnsit", "no_such_space", "no_such.yaml", SPACE_FILE, "storage",
                           "/dev/null", "/", "", "../../etc/passwd", "x" * 300, "a\0b", 5, ["likelihood_mnist"], {}]) \
    | st.text(max_size=12)
DISTRIBUTIONS = st.one_of(st.sampled_from(["uniform", "loguniform", "quniform", "qloguniform", "randint", "choice",
                                           "grid", "gaussian", "normal", "Uniform", ""]), VALUES)


def nested(depth: int, level) -> object:
    """``level`` applied ``depth`` times: deep nesting, or a "billion laughs" when each level shares one list (the
    YAML dumper writes a shared object as an anchor and aliases)."""
    value = "lol"
    for _ in range(depth):
        value = level(value)
    return value


MISSING = object()


def at(tree, path: tuple):
    """The node at ``path``, or MISSING once an earlier mutation removed it (or replaced a node above it)."""
    for key in path:
        if isinstance(tree, dict) and key in tree or isinstance(tree, list) and isinstance(key, int) \
                and key < len(tree):
            tree = tree[key]
        else:
            return MISSING
    return tree


def mutate_node(draw, tree, paths: list[tuple]) -> None:
    """One mutation of a node: deleted, renamed, replaced, deeply nested, an alias bomb or shared with another."""
    path = draw(st.sampled_from(paths))
    parent, key = at(tree, path[:-1]), path[-1]
    if at(tree, path) is MISSING:
        return
    kind = draw(st.sampled_from(["delete", "rename", "replace", "replace", "deep", "bomb", "share"]))
    if kind == "delete":
        del parent[key]
    elif kind == "rename" and isinstance(parent, dict):
        typo = str(key)[:-1] if draw(st.booleans()) else draw(JUNK_KEYS)
        parent[typo] = parent.pop(key)
    elif kind == "deep":
        parent[key] = nested(draw(st.integers(20, 60)), draw(st.sampled_from([lambda v: [v], lambda v: {"a": v}])))
    elif kind == "bomb":
        width = draw(st.integers(2, 9))
        parent[key] = nested(draw(st.integers(2, 9)), lambda v: [v] * width)
    elif kind == "share":  # the same object twice: the dump writes an anchor and an alias (a valid file, often)
        other = at(tree, draw(st.sampled_from(paths)))
        if isinstance(other, (dict, list)):
            parent[key] = other
    else:
        parent[key] = draw(VALUES)


def mutate_space(draw, tree: dict) -> None:
    """One mutation aimed at a space's own rules: swapped bounds, an unknown distribution, an ``extends:``."""
    params = tree.get("params") if isinstance(tree.get("params"), dict) else {}
    kind = draw(st.sampled_from(["swap", "distribution", "extends"]))
    if kind == "extends" or not params:
        tree["extends"] = draw(EXTENDS)
        return
    spec = params[draw(st.sampled_from(list(params)))]  # keys may be of any type: no sorting
    if not isinstance(spec, dict):
        return
    if kind == "swap" and "low" in spec and "high" in spec:
        spec["low"], spec["high"] = spec["high"], spec["low"]
    elif kind == "distribution":
        spec["distribution"] = draw(DISTRIBUTIONS)


@st.composite
def space_files(draw, max_mutations: int = 4) -> bytes:
    """The bytes of a space file: a shipped one mutated, garbage, or empty; often damaged after dumping."""
    name = draw(st.sampled_from(sorted(SHIPPED)))
    form = draw(st.sampled_from(["mutated"] * 6 + ["shipped", "empty", "garbage"]))
    if form != "mutated":
        return SHIPPED_TEXT[name] if form == "shipped" else b"" if form == "empty" else draw(st.binary(max_size=300))
    tree = copy.deepcopy(SHIPPED[name])
    for _ in range(draw(st.integers(1, max_mutations))):
        if draw(st.booleans()):
            mutate_node(draw, tree, PATHS[name])
        else:
            mutate_space(draw, tree)
    text = yaml.safe_dump(tree, sort_keys=False, allow_unicode=True, default_flow_style=draw(st.booleans()))
    damage = draw(st.sampled_from(["none"] * 5 + ["truncate", "insert", "utf16"]))
    cut = draw(st.integers(0, len(text)))
    if damage == "truncate":
        return text[:cut].encode()
    if damage == "insert":
        return text[:cut].encode() + draw(st.binary(min_size=1, max_size=8)) + text[cut:].encode()
    return text.encode("utf-16" if damage == "utf16" else "utf-8")


def yaml_value_text(value) -> str:
    """A value as a user types it after ``--set KEY=``: YAML on one line."""
    return yaml.safe_dump(value, default_flow_style=True, width=10**9).removesuffix("\n...\n").strip()


# Keys the files have (twice the weight: junk is refused at once), whole sections (which later keys then write
# into), real keys with a junk tail, and junk.
SECTIONS = ["experiment", "params", "smoke", "scheduler", "budget"]
SET_KEYS = st.one_of(*[st.sampled_from(REAL_KEYS)] * 2, st.sampled_from(SECTIONS),
                     st.builds("{}.{}".format, st.sampled_from(REAL_KEYS), st.text(max_size=6)),
                     st.text(min_size=1, max_size=12), st.sampled_from([".", "params.", "extends"]))
# Mostly values YAML reads: one it refuses (or a pair without "=") refuses the command line before the space.
SET_VALUES = st.one_of(*[VALUES.map(yaml_value_text)] * 3, st.text(max_size=20),
                       st.integers(300, 5000).map("1".__mul__),
                       st.sampled_from(["[", "{a: 1", "*a", "&a [1, *a]", "!!python/object/apply:os.system [ls]",
                                        "!!binary aGk=", "1.0e+16", "\"\\0\"", "{distribution: randint, low: 1}"]))
PAIRS = st.builds("{}{}{}".format, SET_KEYS, st.sampled_from(["="] * 20 + ["", ":"]), SET_VALUES)


def first_per_key(pairs: list[str]) -> list[str]:
    """One pair per key, so that make_request's dict of overrides means what the --set list means."""
    by_key: dict[str, str] = {}
    for pair in pairs:
        by_key.setdefault(pair.partition("=")[0].strip(), pair)
    return list(by_key.values())


OVERRIDES = st.lists(PAIRS, max_size=3).map(first_per_key)


def run_dry(argv: list[str]) -> tuple[int, str, str]:
    """``main(argv)``: exit code, stdout, stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    out.getvalue().encode()  # what a UTF-8 terminal prints (a lone surrogate fails there; stderr escapes it)
    return code, out.getvalue(), err.getvalue()


@contextlib.contextmanager
def example_folder():
    """A fresh folder, also the working folder, holding the signing key's path (no key in the environment): anything
    a dry run writes, relative or not, lands in it."""
    with tempfile.TemporaryDirectory() as folder, contextlib.chdir(folder), \
            mock.patch.dict(os.environ, {KEY_FILE_ENV: f"{folder}/config/signing.key"}):
        os.environ.pop(KEY_ENV, None)
        (Path(folder) / "storage").mkdir()
        yield Path(folder)


def check_accepted(out: str, space: str, pairs: list[str], smoke: bool, options: dict[str, str]) -> None:
    """The resolved space was printed, and the Python API accepts the same input."""
    printed = yaml.safe_load(out)  # the comment header is YAML comments
    request = make_request(space, overrides=dict(parse_overrides(pairs)), smoke=smoke, **options)
    assert printed["name"] == request.space.name, out


def check_refused(code: int, out: str, err: str) -> None:
    """Exit 2, nothing on stdout, stderr opening with the one ``error:`` line (its problems follow, indented)."""
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and out == "", (code, out, err)
    assert err.startswith("error: ") and len(errors) == 1 and "Traceback" not in err, err


def check_dry_run(space: bytes, pairs: list[str], smoke: bool) -> int:
    """The invariant of one case: accepted or refused cleanly, and neither Ray nor a written file."""
    ray_was_up = ray.is_initialized()  # in a whole-suite run, tests/system's session fixture may have started it
    with example_folder() as tmp, mock.patch.object(ray, "init", side_effect=AssertionError("a dry run started Ray")):
        (tmp / SPACE_FILE).write_bytes(space)
        options = {"storage_path": str(tmp / "storage"), "tracking_uri": f"sqlite:///{tmp}/mlflow.db"}
        argv = ["--space", str(tmp / SPACE_FILE), "--dry-run", "--storage-path", options["storage_path"],
                "--tracking-uri", options["tracking_uri"], *(["--smoke"] if smoke else []),
                *(f"--set={pair}" for pair in pairs)]  # --set=PAIR: a pair starting with "-" stays a value
        code, out, err = run_dry(argv)
        if code == 0:
            check_accepted(out, str(tmp / SPACE_FILE), pairs, smoke, options)
        else:
            check_refused(code, out, err)
        assert sorted(os.listdir(tmp)) == [SPACE_FILE, "storage"] and not os.listdir(tmp / "storage"), "left files"
    assert ray.is_initialized() == ray_was_up, "a dry run started Ray"
    return code


def check_and_count(space: bytes, pairs: list[str], smoke: bool) -> None:
    """The invariant; the mix of accepted and refused cases shows in ``--hypothesis-show-statistics``."""
    event("accepted" if check_dry_run(space, pairs, smoke) == 0 else "refused")


@FUZZ
@given(space=space_files(), smoke=st.booleans())
def test_fuzzed_space_files(space, smoke):
    check_and_count(space, [], smoke)


@FUZZ
@given(space=st.sampled_from(sorted(SHIPPED_TEXT.values())) | space_files(max_mutations=1), pairs=OVERRIDES,
       smoke=st.booleans())
def test_fuzzed_overrides(space, pairs, smoke):
    check_and_count(space, pairs, smoke)


LIKELIHOOD = (SPACES_DIR / "likelihood_mnist.yaml").read_bytes()


# Bugs this test found (each escaped the real command line as a traceback), as minimal inputs: (id, space file,
# --set pairs). Each must now be accepted or refused like any other input.
FOUND_BY_FUZZING = [
    ("yaml-reader-error-in-file", b"\x00", []),  # PyYAML's reader checks characters before parsing starts
    ("yaml-reader-error-in-set", LIKELIHOOD, ["description=\x01"]),
    ("space-name-too-long", b"extends: " + b"x" * 300 + b"\n", []),  # Path.exists(): ENAMETOOLONG
    ("extends-with-params-not-a-mapping", b"extends: likelihood_mnist\nparams: [1]\n", []),
    ("set-into-an-empty-experiment", b"name: x\nexperiment:\n", ["code_dim=3"]),
    ("set-into-a-list-experiment", b"name: x\nexperiment: [1]\n", ["prior.std=3"]),
    ("int-too-large-for-a-float", b"name: x\nexperiment: {prior: {std: 1" + b"0" * 309 + b"}}\n", []),
    ("param-key-not-a-string", b"name: x\nparams: {1: {distribution: choice, values: [8]}}\n", []),
    ("param-key-not-a-string-with-set", LIKELIHOOD.replace(b"params:\n", b"params:\n  1: {distribution: grid}\n"),
     ["params.code_dim.low=1"]),
    ("api-number-that-yaml-reads-as-text", LIKELIHOOD, ["budget.num_samples=1.0e+16"]),  # make_request's JSON
]


@pytest.mark.parametrize(("case", "space", "pairs"), FOUND_BY_FUZZING, ids=[c[0] for c in FOUND_BY_FUZZING])
def test_found_by_fuzzing(case, space, pairs):
    check_dry_run(space, pairs, smoke=False)
