"""Bad input: one clear error each, before Ray starts, exit code != 0, nothing half-written.

Every case runs the real command-line entry point in ONE fresh Python process (so "Ray was not started" is
checked in a process that never had Ray), from an empty working folder. Add a case by adding a row to CASES.
"""

import gzip
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from tests.bombs import billion_laughs_space, mnist_with_gzip_bomb
from tests.helpers import REPO_ROOT, closed_port

GOOD_SPACE = (REPO_ROOT / "search_spaces" / "likelihood_mnist.yaml").read_text()


def write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def strict_preflight_cases(tmp: Path, sp: list[str]) -> dict[str, tuple[list[str], str]]:
    """Issue 24: input the pre-flight once accepted and Ray, Optuna, numpy or MLflow refused after the search had
    started (a traceback, a parent run left RUNNING, or trials PENDING forever)."""
    storage = tmp / "strict_storage"
    (storage / "search-folder-taken").parent.mkdir()
    (storage / "search-folder-taken").write_text("a file where the search folder would go")
    (storage / "resumed" / "inside").mkdir(parents=True)
    not_sqlite = write(tmp / "not_sqlite.db", "plain text, not a database")
    same = f"sqlite:///{tmp}/shared.db"
    return {
        "infinite-bound": ([*sp, "--set", "params.prior.std.high=.inf"], "params.prior.std.high: inf is not a finite"),
        "nan-step": ([*sp, "--set", "params.prior.std={distribution: quniform, low: 1, high: 9, q: .nan}"],
                     "params.prior.std.q: nan is not a finite number"),
        "range-overflows": ([*sp, "--set", "params.optim.reconstruction.momentum.low=-1.0e+308",
                             "--set", "params.optim.reconstruction.momentum.high=1.0e+308"],
                            "high - low overflows to infinity"),
        "bounds-off-the-step": ([*sp, "--set", "params.prior.std={distribution: quniform, low: 1, high: 10, q: 4}"],
                                "a quniform range needs bounds that are multiples of q = 4.0"),
        "randint-beyond-int64": ([*sp, "--set", "params.code_dim={distribution: randint, low: 2, high: 1.0e+30}"],
                                 "randint bounds must lie within numpy's int64"),
        "unsearchable-choice": ([*sp, "--set", "params.code_dim={distribution: choice, values: [8, 2026-01-01]}"],
                                "(date) cannot be searched"),
        "infinite-reduction-factor": ([*sp, "--set", "scheduler.reduction_factor=.inf"],
                                      "reduction_factor: must be > 1 and at most 100"),
        "infinite-experiment-value": ([*sp, "--set", "prior.std=.inf"], "experiment.prior.std: inf is not a finite"),
        "smoke-typo-without-smoke": ([*sp, "--set", "smoke.net.hiden=[10]"], "smoke: net.hiden: unknown key"),
        "count-beyond-int64": ([*sp, "--num-samples", str(2**70)], "--num-samples: 1180591620717411303424 is beyond"),
        "negative-seed": ([*sp, "--seed", "-1"], "--seed: must be in [0, 4294967295]"),
        "seed-beyond-numpy": ([*sp, "--seed", str(2**40)], "--seed: must be in [0, 4294967295]"),
        "infinite-cpus": ([*sp, "--cpus-per-trial", "inf"], "--cpus-per-trial: must be a finite number"),
        "nan-gpus": ([*sp, "--gpus-per-trial", "nan"], "--gpus-per-trial: must be a finite number"),
        "split-gpus-above-one": ([*sp, "--gpus-per-trial", "1.5"], "must be a whole number of GPUs"),
        # more than any machine this runs on has: refused locally, where the trials would wait forever
        "gpus-the-local-ray-lacks": ([*sp, "--gpus-per-trial", "1024"], "--gpus-per-trial 1024: the local Ray would"),
        "cpus-the-local-ray-lacks": ([*sp, "--cpus-per-trial", "100000"], "--cpus-per-trial 100000: the local Ray"),
        "search-folder-is-a-file": ([*sp, "--storage-path", str(storage), "--name", "search-folder-taken"],
                                    "search-folder-taken is a file, not a search folder"),
        "optuna-shares-the-mlflow-file": ([*sp, "--tracking-uri", same, "--optuna-storage", same],
                                          "the same file as the MLflow store"),
        "optuna-storage-not-sqlite": ([*sp, "--optuna-storage", f"sqlite:///{not_sqlite}"],
                                      "not_sqlite.db is not a SQLite database"),
        "tracking-store-not-sqlite": ([*sp, "--tracking-uri", f"sqlite:///{not_sqlite}"],
                                      "not_sqlite.db is not a SQLite database"),
        "tracking-store-in-search-folder": ([*sp, "--storage-path", str(storage), "--name", "resumed",
                                             "--tracking-uri", f"sqlite:///{storage}/resumed/inside/mlflow.db"],
                                            "the MLflow store would lie in the search folder"),
        "search-name-is-the-tracking-store": ([*sp, "--storage-path", str(tmp), "--name", "shared.db",
                                               "--tracking-uri", same], "the MLflow store would lie in the search"),
    }


STRICT_PREFLIGHT_CASE_IDS = [
    "infinite-bound", "nan-step", "range-overflows", "bounds-off-the-step", "randint-beyond-int64",
    "unsearchable-choice", "infinite-reduction-factor", "infinite-experiment-value", "smoke-typo-without-smoke",
    "count-beyond-int64", "negative-seed", "seed-beyond-numpy", "infinite-cpus", "nan-gpus", "split-gpus-above-one",
    "gpus-the-local-ray-lacks", "cpus-the-local-ray-lacks", "search-folder-is-a-file", "optuna-shares-the-mlflow-file",
    "optuna-storage-not-sqlite", "tracking-store-not-sqlite", "tracking-store-in-search-folder",
    "search-name-is-the-tracking-store",
]


def make_cases(tmp: Path, mnist_dir: Path) -> dict[str, tuple[list[str], str]]:
    """case id -> (argv of `aae-tune`, text the error must contain)."""
    truncated = tmp / "truncated"
    truncated.mkdir()
    for f in mnist_dir.glob("*-ubyte.gz"):
        data = f.read_bytes()
        (truncated / f.name).write_bytes(data[: len(data) // 2] if f.name.startswith("train-images") else data)
    corrupt_idx = tmp / "corrupt_idx"
    corrupt_idx.mkdir()
    for f in mnist_dir.glob("*-ubyte.gz"):
        raw = gzip.decompress(f.read_bytes())
        (corrupt_idx / f.name).write_bytes(gzip.compress(raw[:-100] if f.name.startswith("t10k-images") else raw))
    wrong_svhn = tmp / "svhn_wrong_shape"
    wrong_svhn.mkdir()
    labels = np.arange(1, 11, dtype=np.uint8).reshape(-1, 1)
    scipy.io.savemat(wrong_svhn / "train_32x32.mat", {"X": np.zeros((32, 32, 10), np.uint8), "y": labels})
    scipy.io.savemat(wrong_svhn / "test_32x32.mat", {"X": np.zeros((32, 32, 3, 10), np.uint8), "y": labels})
    svhn = ["search", "--space", "semisupervised_svhn_1000"]
    space = ["--space", "likelihood_mnist"]
    sp = ["search", *space]
    return {
        "malformed-yaml": (["search", "--space", write(tmp / "m.yaml", "name: [x\n")], "not valid YAML"),
        "unknown-key": (["search", "--space", write(tmp / "u.yaml", GOOD_SPACE.replace("metric:", "metrc:"))],
                        "metrc: unknown key (did you mean 'metric'?)"),
        "wrong-type": ([*sp, "--set", "budget.max_epochs=lots"], "budget.max_epochs: expected an integer"),
        "inverted-range": ([*sp, "--set", "params.prior.std.low=20"], "empty or inverted range [20.0, 10.0]"),
        "empty-range": ([*sp, "--set", "params.prior.std.low=10.0"], "empty or inverted range [10.0, 10.0]"),
        "loguniform-over-0": ([*sp, "--set", "params.optim.reconstruction.lr.low=0"], "a log range must be > 0"),
        "unknown-distribution": ([*sp, "--set", "params.code_dim.distribution=gaussian"], "is not one of"),
        "unknown-space": (["search", "--space", "likelihood_mnsit"], "did you mean 'likelihood_mnist'"),
        "set-unknown-field": ([*sp, "--set", "code_dm=4"], "unknown field 'code_dm' (did you mean 'code_dim'?)"),
        "set-not-key-value": ([*sp, "--set", "code_dim"], "expected key=value"),
        "truncated-idx": ([*sp, "--data-dir", str(truncated)], "truncated or not a valid gzip file"),
        "short-idx-payload": ([*sp, "--data-dir", str(corrupt_idx)], "t10k-images-idx3-ubyte.gz"),
        "unreachable-address": ([*sp, "--address", f"127.0.0.1:{closed_port()}"], "no Ray cluster answers"),
        "unreachable-tracking": ([*sp, "--tracking-uri", f"http://127.0.0.1:{closed_port()}"],
                                 "MLflow server unreachable"),
        "bad-tracking-scheme": ([*sp, "--tracking-uri", "ftp://example/x"], "unsupported scheme"),
        "tracking-not-a-uri": ([*sp, "--tracking-uri", "mlflow.db"], "not a URI"),
        "resume-missing": ([*sp, "--resume", "--name", "never-ran"], "no search to resume"),
        "resume-without-name": ([*sp, "--resume"], "--resume needs --name"),
        "zero-trials": ([*sp, "--num-samples", "0"], "--num-samples: must be >= 1, got 0"),
        "negative-epochs": ([*sp, "--max-epochs", "-3"], "--max-epochs: must be >= 1, got -3"),
        "zero-cpus": ([*sp, "--cpus-per-trial", "0"], "--cpus-per-trial: must be > 0"),
        "negative-max-failures": ([*sp, "--max-failures", "-2"], "--max-failures: must be >= 0"),
        "path-traversal-name": ([*sp, "--name", "../../escape"], "no '/' or '..'"),
        "path-traversal-space-name": ([*sp, "--set", "name=../../escape"], "name: '../../escape' must be"),
        "storage-not-writable": ([*sp, "--storage-path", "/proc/aae_results"], "not writable"),
        "storage-is-a-file": ([*sp, "--storage-path", str(REPO_ROOT / "README.md" / "x")], "is a file, not a folder"),
        "incompatible-checkpoint": (["train", "--smoke", "--out", str(tmp / "ckpt"), "--resume",
                                     "--set", "code_dim=3"], "written for a different model (code_dim differ)"),
        "train-unknown-key": (["train", "--set", "net.hiden=[10]"], "did you mean 'hidden'"),
        "svhn-wrong-shape": ([*svhn, "--data-dir", str(wrong_svhn), "--set", "dataset.use_extra=false"],
                             "X has shape (32, 32, 10), expected (32, 32, 3"),
        "svhn-not-given": (svhn, "SVHN is never downloaded automatically"),
        "metric-not-reported": ([*sp, "--set", "metric=valid_error"], "is not reported by the likelihood model"),
        "train-best-unknown-search": ([*sp, "--train-best", "never-ran", "--tracking-uri",
                                       f"sqlite:///{tmp}/none.db"], "--train-best never-ran: no MLflow store at"),
        "pbt-with-tpe": ([*sp, "--set", "scheduler.type=pbt"], "pbt draws its own population"),
        "variant-inconsistent": (["search", "--space", "supervised_mnist", "--set", "num_labeled=100"],
                                 "the supervised model uses every label"),
        **strict_preflight_cases(tmp, sp),
        # issue 24, bounded parsing: 600 bytes of nested YAML aliases; a 1.3 MB gzip of 300 MB claiming 10 images
        "billion-laughs-space": (["search", "--space", write(tmp / "laughs.yaml", billion_laughs_space())],
                                 "values once its aliases are expanded"),
        "gzip-bomb-idx": ([*sp, "--data-dir", str(mnist_with_gzip_bomb(tmp / "gzip_bomb", mnist_dir))],
                          "train-images-idx3-ubyte.gz is longer than its header says"),
        # issue 24, a search's life: more than the disk holds; an unsigned folder (a planted tuner.pkl) to resume
        "storage-too-small": ([*sp, "--num-samples", "10000000"], "MiB are free there"),
        "pending-timeout-zero": ([*sp, "--pending-timeout", "0"], "--pending-timeout: must be a number of seconds > 0"),
        "resume-unsigned": ([*sp, "--storage-path", str(unsigned_search(tmp)), "--name", "old", "--resume"],
                            "carries no signed state"),
    }


def unsigned_search(tmp: Path) -> Path:
    """A folder that looks like a search to Tune (tuner.pkl, a record) but that no aae_tune driver signed."""
    folder = tmp / "unsigned" / "old"
    folder.mkdir(parents=True)
    (folder / "tuner.pkl").write_bytes(b"not a pickle this search wrote")
    (folder / "aae_search.json").write_text("{}")
    return folder.parent


RUNNER = """
import contextlib, io, json, sys
import ray
from aae_tune.cli import main
out = {}
for name, argv in json.loads(sys.argv[1]).items():
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse errors
            code = exc.code
    out[name] = {"code": code, "stderr": err.getvalue(), "ray": ray.is_initialized()}
print("RESULTS" + json.dumps(out))
"""


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory, mnist_dir):
    tmp = tmp_path_factory.mktemp("bad_input")
    # An existing checkpoint of the smoke config (2-D codes) for the incompatible-checkpoint case.
    from aae_tune.config import SMOKE_OVERRIDES, ExperimentConfig
    from aae_tune.data import load_mnist
    from aae_tune.train import Trainer

    small = load_mnist(mnist_dir).head(200, 50, 50)
    Trainer(ExperimentConfig.from_dict({**SMOKE_OVERRIDES, "code_dim": 2}), small).save(tmp / "ckpt")
    cases = make_cases(tmp, mnist_dir)
    workdir = tmp / "cwd"
    workdir.mkdir()
    proc = subprocess.run([sys.executable, "-c", RUNNER, json.dumps({k: v[0] for k, v in cases.items()})],
                          cwd=workdir, capture_output=True, text=True, timeout=600)
    assert "RESULTS" in proc.stdout, proc.stderr[-3000:]
    results = json.loads(proc.stdout.split("RESULTS", 1)[1])
    return cases, results, workdir


CASE_IDS = [
    "malformed-yaml", "unknown-key", "wrong-type", "inverted-range", "empty-range", "loguniform-over-0",
    "unknown-distribution", "unknown-space", "set-unknown-field", "set-not-key-value", "truncated-idx",
    "short-idx-payload", "unreachable-address", "unreachable-tracking", "bad-tracking-scheme", "tracking-not-a-uri",
    "resume-missing", "resume-without-name", "zero-trials", "negative-epochs", "zero-cpus", "negative-max-failures",
    "path-traversal-name",
    "svhn-wrong-shape", "svhn-not-given", "metric-not-reported", "variant-inconsistent", "train-best-unknown-search",
    "pbt-with-tpe",
    "path-traversal-space-name", "storage-not-writable", "storage-is-a-file", "incompatible-checkpoint",
    "train-unknown-key",
    *STRICT_PREFLIGHT_CASE_IDS,
    "billion-laughs-space", "gzip-bomb-idx", "storage-too-small", "pending-timeout-zero", "resume-unsigned",
]


@pytest.mark.parametrize("case", CASE_IDS)
def test_bad_input_is_one_clear_error_before_ray(outcomes, case):
    cases, results, workdir = outcomes
    assert set(CASE_IDS) == set(cases)
    result, expected = results[case], cases[case][1]
    assert result["code"] == 2, result
    assert expected in result["stderr"], result["stderr"]
    assert result["stderr"].startswith("error: ") and result["stderr"].count("error: ") == 1
    assert not result["ray"], "Ray was started before the input was checked"


def test_nothing_half_written(outcomes):
    _, _, workdir = outcomes
    assert sorted(p.name for p in workdir.iterdir()) == []  # no mlflow.db, no ray_results, no run folders
