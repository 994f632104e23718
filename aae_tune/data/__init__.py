"""MNIST loading for aae_tune: the paper's 50000/10000/10000 split of the official files.

Public API: :func:`load_mnist`, :class:`MnistSplits`, :class:`DataError`. Every data
problem (missing, corrupt, failed download) raises :class:`DataError` with a message that
names the file and how to fix it. Deliberately free of Ray/MLflow so that any process
(trial worker, CLI, test) can import it cheaply.
"""

from aae_tune.data.idx import DataError
from aae_tune.data.mnist import MnistSplits, load_mnist

__all__ = ["DataError", "MnistSplits", "load_mnist"]
