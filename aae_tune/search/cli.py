"""``python -m aae_tune.search --space likelihood_mnist``: the search service's command line.

Every setting is checked before Ray starts (``aae_tune.search.request``), then the data (by its loader); any
problem is one message with exit code 2. Exit codes (``aae_tune.search.lifecycle.EXIT_CODES``): 0 done (or
``--resume`` of a finished search: its summary again), 1 no trial reported a score, 2 refused before anything
started (bad input, an unsigned or altered storage path, another driver running the search), 3 trials done but the
MLflow record unfinished (``--resume`` completes it), 4 failed after it started (recorded; ``--resume`` continues
it), 130 interrupted by Ctrl-C, SIGTERM or a storage that cannot be written (``--resume`` continues it).
"""

from __future__ import annotations

import argparse
import sys

from aae_tune.errors import ConfigError, DataError, SearchBusy, SearchFailed, UntrustedState, fail
from aae_tune.search.lifecycle import EXIT_CODES
from aae_tune.search.options import SearchOptions, option_defaults
from aae_tune.search.request import DEFAULT_TRACKING_URI, build_request, describe_request


def build_parser() -> argparse.ArgumentParser:
    """The flags, one per ``SearchOptions`` field (``--set`` fills ``overrides``) plus --dry-run; every default is
    the field's (set below), so the command line and the Python API cannot drift apart."""
    p = argparse.ArgumentParser(
        prog="python -m aae_tune.search",
        description="Search AAE hyperparameters with Ray Tune (ASHA + Optuna), tracked in MLflow.",
    )
    p.add_argument("--space", required=True, help="shipped space name (e.g. likelihood_mnist) or a YAML path")
    p.add_argument("--set", dest="overrides", action="append", metavar="KEY=VALUE",
                   help="override a field of the space file, e.g. --set budget.num_samples=4 --set code_dim=8")
    p.add_argument("--num-samples", type=int, help="trials (default: the space's budget)")
    p.add_argument("--max-epochs", type=int, help="epochs per trial, ASHA's max_t (default: the space's budget)")
    p.add_argument("--max-concurrent", type=int, help="trials running at once (default: the space's budget)")
    p.add_argument("--seed", type=int, help="seeds the searcher, every trial and every sample (default %(default)s)")
    p.add_argument("--data-dir", help="MNIST IDX folder (default: AAE_TUNE_DATA_DIR, cache, download, embedded); "
                   "the folder with SVHN's .mat files; or the .npz file of an 'array' dataset")
    p.add_argument("--tracking-uri",
                   help=f"MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else {DEFAULT_TRACKING_URI} in this "
                   "folder)")
    p.add_argument("--artifact-location", metavar="URI",
                   help="artifact root of the space's MLflow experiment when this search creates it (e.g. "
                   "s3://bucket/mlflow; default: the tracking server's)")
    p.add_argument("--storage-path", help="Tune results: local folder or a URI Ray accepts (default %(default)s)")
    p.add_argument("--address", help="connect to an existing Ray cluster (host:port, ray://host:port or auto)")
    p.add_argument("--dashboard", action="store_true",
                   help="start the local Ray's dashboard on 127.0.0.1 (a cluster from --address has its own)")
    p.add_argument("--cpus-per-trial", type=float,
                   help="CPUs Ray reserves for each trial; also its torch thread count (default %(default)s)")
    p.add_argument("--gpus-per-trial", type=float, help="fractional allowed; default 1 if the cluster has GPUs")
    p.add_argument("--name", help="search name, needed for --resume (default: <space>-<UTC time>)")
    p.add_argument("--resume", action="store_true", help="continue the interrupted search called --name")
    p.add_argument("--optuna-storage", metavar="URL",
                   help="SQLAlchemy URL of the TPE study (default: optuna.db beside a SQLite MLflow store, else in "
                   "--storage-path); open it with optuna-dashboard")
    p.add_argument("--warm-start", metavar="NAME",
                   help="seed TPE with the finished trials of the earlier search NAME of the same space")
    p.add_argument("--train-best", metavar="SEARCH",
                   help="train the best --num-samples (default 1) configurations of the finished search SEARCH "
                   "again for --max-epochs (ranked by validation score; its own space and overrides; FIFO)")
    p.add_argument("--top-k", type=int, help="best trials that get the full Table 1 Parzen protocol")
    p.add_argument("--final-samples", type=int, help="model samples for that protocol (paper: 10000)")
    p.add_argument("--pending-timeout", type=float, metavar="SECONDS",
                   help="stop the search when, for this long, no trial has run while some wait for resources (e.g. a "
                   "GPU the cluster lacks); default: 600 on a local Ray, none with --address (an autoscaler may add "
                   "nodes)")
    p.add_argument("--max-failures", type=int,
                   help="restarts of a failed trial from its last checkpoint (Tune's FailureConfig; -1: no limit; "
                   "default %(default)s)")
    p.add_argument("--smoke", "--smoke-test", dest="smoke", action="store_true",
                   help="tiny budget and nets: an end-to-end check for CI (--smoke-test: the Ray examples' spelling)")
    p.add_argument("--dry-run", action="store_true",
                   help="check everything, print the resolved space and the trial resources, start nothing")
    # argparse's append extends the default it is given: a list, copied per parse (the field's is an empty tuple)
    p.set_defaults(**{**option_defaults(), "overrides": list(option_defaults()["overrides"])})
    return p


def parse_options(argv: list[str] | None = None) -> tuple[SearchOptions, bool]:
    """The command line as ``SearchOptions``, and whether it asks for a dry run."""
    args = build_parser().parse_args(argv)
    return SearchOptions.from_namespace(args), args.dry_run


def main(argv: list[str] | None = None) -> int:
    options, dry_run = parse_options(argv)
    try:
        request = build_request(options)
        if dry_run:
            print(describe_request(request))
            return 0
        from aae_tune.search.driver import load_search_data
        from aae_tune.search.session import run_search

        data = load_search_data(request)  # before Ray: a data problem must not start a cluster
    except (ConfigError, DataError, UntrustedState) as exc:
        return fail(str(exc))

    try:
        summary = run_search(request, data)
    except SearchBusy as exc:
        return fail(str(exc), EXIT_CODES["refused"])
    except SearchFailed as exc:
        return fail(str(exc), EXIT_CODES["failed"])
    except KeyboardInterrupt:  # before the search started (or after it was recorded): nothing to save
        return fail(f"search {request.name}: interrupted", EXIT_CODES["interrupted"])
    print(summary.render())
    if summary.interrupted:
        return EXIT_CODES["recording unfinished" if summary.recording_unfinished else "interrupted"]
    if summary.finished_earlier:
        return EXIT_CODES["done"]
    return EXIT_CODES["done" if summary.best is not None else "no score"]


if __name__ == "__main__":
    sys.exit(main())
