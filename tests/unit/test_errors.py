"""Every user-facing error survives pickling intact: Ray pickles a trial's exception to the driver, and a class
whose constructor takes other arguments than its message came back garbled (one "problem" per character)."""

import inspect
import pickle

import cloudpickle
import pytest

from aae_tune import errors

ERROR_CLASSES = sorted(
    (cls for _, cls in inspect.getmembers(errors, inspect.isclass)
     if issubclass(cls, BaseException) and cls.__module__ == errors.__name__),
    key=lambda cls: cls.__name__,
)


def example(cls: type[BaseException]) -> BaseException:
    """An instance built from the class's own signature: lists of problems where it takes a list, text elsewhere
    (a class that keeps the built-in constructor has no signature to read: it takes the message)."""
    try:
        parameters = inspect.signature(cls).parameters.values()
    except ValueError:
        parameters = []
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    required = [p for p in parameters if p.default is p.empty and p.kind in positional]
    args = [["first thing wrong", "second thing wrong"] if "list" in str(p.annotation) else f"what {p.name} says"
            for p in required]
    return cls(*(args or ["what went wrong and how to fix it"]))


def test_the_module_defines_error_classes():
    assert {"ConfigError", "DataError", "TrainingDiverged"} <= {cls.__name__ for cls in ERROR_CLASSES}


@pytest.mark.parametrize("dumps, loads", [(pickle.dumps, pickle.loads), (cloudpickle.dumps, pickle.loads)],
                         ids=["pickle", "cloudpickle"])
@pytest.mark.parametrize("cls", ERROR_CLASSES, ids=lambda cls: cls.__name__)
def test_error_round_trips_through_pickle(cls, dumps, loads):
    original = example(cls)
    original.add_note("a note added on the way")
    copy = loads(dumps(original))
    assert type(copy) is cls
    assert str(copy) == str(original)
    assert copy.args == original.args
    assert vars(copy) == vars(original)  # problems, source, notes


def test_config_error_keeps_its_problems_through_pickle():
    copy = pickle.loads(pickle.dumps(errors.ConfigError(["seed: must be >= 0"], "search space 'x'")))
    assert copy.problems == ["seed: must be >= 0"] and copy.source == "search space 'x'"
    assert str(copy) == "search space 'x' has 1 problem(s):\n  - seed: must be >= 0"
