"""What a number in a space file or on the command line may be, so that Ray, Optuna, numpy and torch accept it later.

The pre-flight must be as strict as what comes after it: a value those libraries refuse only once Ray has started
(and the search's MLflow parent run is open) is refused here, with the rule in words.
"""

from __future__ import annotations

import math
from typing import Any

# numpy's and torch's default integers: a count or bound beyond it overflows there
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
# numpy's RandomState and torch.manual_seed take seeds in [0, 2**32)
SEED_LIMIT = 2**32
# What an Optuna categorical holds (and its RDB storage serialises); lists and mappings are searched by their text
CATEGORICAL_TYPES = (type(None), bool, int, float, str)


def non_finite_paths(value: Any, path: str = "") -> list[str]:
    """``path: value`` of every NaN or infinite number in a nested structure of mappings and lists."""
    if isinstance(value, float) and not math.isfinite(value):
        return [f"{path}: {value}"]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in non_finite_paths(v, f"{path}.{k}" if path else str(k))]
    if isinstance(value, (list, tuple)):
        return [p for i, v in enumerate(value) for p in non_finite_paths(v, f"{path}[{i}]")]
    return []


def too_large_counts(values: dict[str, Any]) -> list[str]:
    """A problem for every integer of ``values`` that does not fit numpy's int64."""
    return [f"{key}: {value} is beyond what numpy and torch can count (at most {INT64_MAX})"
            for key, value in values.items()
            if isinstance(value, int) and not isinstance(value, bool) and not INT64_MIN <= value <= INT64_MAX]


def is_multiple(value: float, step: float) -> bool:
    """Ray Tune's own test for a quantized bound (``Float.quantized``): ``value / step`` is close to an integer."""
    ratio = value / step
    return math.isfinite(ratio) and math.isclose(ratio, round(ratio))


def step_problems(distribution: str, low: float, high: float, q: float) -> list[str]:
    """A quantized range's step: Ray Tune refuses bounds that are not multiples of it, and a step wider than the
    range leaves one value to draw."""
    if q > high - low:
        return [f"q: the step {q} is wider than the range [{low}, {high}]: every trial would draw the same value; use "
                "a smaller q or a choice"]
    off = [name for name, bound in (("low", low), ("high", high)) if not is_multiple(bound, q)]
    if not off:
        return []
    hint = f"e.g. low: {math.ceil(low / q) * q:g}, high: {math.floor(high / q) * q:g}" \
        if math.isfinite(low / q) and math.isfinite(high / q) else "use a larger q"
    return [f"{'/'.join(off)}: a {distribution} range needs bounds that are multiples of q = {q} (Ray Tune refuses "
            f"others); {hint}"]


def categorical_problems(values: tuple[Any, ...]) -> list[str]:
    """Values Optuna's categorical cannot hold: anything but numbers, strings, true/false and null."""
    odd = [v for v in values if not isinstance(v, CATEGORICAL_TYPES)]
    if not odd:
        return []
    return [f"values: {odd[0]!r} ({type(odd[0]).__name__}) cannot be searched; a choice holds numbers, strings, "
            "true/false and null (or lists and mappings, searched by their text). Quote it to search it as a string"]


def range_problems(distribution: str, low: float, high: float, q: float | None) -> list[str]:
    """The bounds (and step) of a uniform, loguniform, quniform, qloguniform or randint range."""
    given = {"low": low, "high": high} | ({"q": q} if q is not None else {})
    # Ray and Optuna sample finite ranges only (Ray, once started: "Uniform requires a upper bound")
    if infinite := non_finite_paths(given):
        return [f"{p} is not a finite number; give finite bounds (and step)" for p in infinite]
    errs = []
    if not low < high:
        errs.append(f"low/high: empty or inverted range [{low}, {high}]; low must be < high")
    elif not math.isfinite(high - low):
        errs.append(f"low/high: the range [{low}, {high}] is too wide to sample (high - low overflows to infinity); "
                    "narrow it")
    if distribution in ("loguniform", "qloguniform") and low <= 0:
        errs.append(f"low: a log range must be > 0 (log of {low} is undefined); use uniform or a low > 0")
    if distribution.startswith("q") and not (q and q > 0):
        errs.append(f"q: {distribution} needs a step q > 0")
    elif distribution.startswith("q") and not errs:
        errs += step_problems(distribution, low, high, q)
    if distribution == "randint":
        errs += integer_bound_problems(low, high)
    return errs


def integer_bound_problems(low: float, high: float) -> list[str]:
    if not (float(low).is_integer() and float(high).is_integer()):
        return ["low/high: randint needs integer bounds"]
    if low < INT64_MIN or high > INT64_MAX:
        return [f"low/high: randint bounds must lie within numpy's int64 [{INT64_MIN}, {INT64_MAX}], got "
                f"[{low:.0f}, {high:.0f}]"]
    return []


def choice_problems(distribution: str, values: tuple[Any, ...] | None, by_index: bool) -> list[str]:
    """The values of a choice or grid (``by_index``: list-valued ones, which Optuna searches by their text)."""
    if values is None or len(values) == 0:
        return [f"values: a {distribution} needs a non-empty list of values"]
    if infinite := non_finite_paths(list(values), "values"):
        return [f"{p} is not a finite number" for p in infinite]
    return [] if by_index else categorical_problems(values)
