"""A search on S3, for real: a moto S3 server on 127.0.0.1 holds the Tune results and checkpoints
(--storage-path s3://...) and the MLflow artifacts (--artifact-location s3://...). The search is SIGKILLed with its
Ray, resumed and finalised there, and ends with one parent run and one run per trial, as on a local disk."""

import shutil
import subprocess
import sys

import pytest

from tests.helpers import closed_port, kill_after_epochs, resume_cleanly, search_runs, start, wait_for_port

BUCKET = "aae-bucket"
pytestmark = pytest.mark.skipif(shutil.which("moto_server") is None, reason="moto[server] not installed ([test] extra)")


@pytest.fixture(scope="module")
def s3_env():
    """A moto S3 server on loopback with one bucket; the environment that points boto3, pyarrow and MLflow at it."""
    port = closed_port()
    server = subprocess.Popen([shutil.which("moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_ENDPOINT_URL": endpoint, "MLFLOW_S3_ENDPOINT_URL": endpoint}
    try:
        with pytest.MonkeyPatch.context() as patch:  # the search subprocesses and boto3 here inherit it
            for key, value in env.items():
                patch.setenv(key, value)
            wait_for_port(port, "moto server")
            import boto3

            boto3.client("s3").create_bucket(Bucket=BUCKET)
            yield boto3.client("s3")
    finally:
        server.terminate()
        server.wait(timeout=30)


def keys(s3, prefix: str) -> list[str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return [obj["Key"] for page in pages for obj in page.get("Contents", [])]


def test_search_on_s3_survives_a_driver_kill_and_finishes(s3_env, tmp_path):
    tracking = f"sqlite:///{tmp_path}/mlflow.db"
    cmd = [sys.executable, "-m", "aae_tune.search", "--space", "likelihood_mnist", "--smoke", "--name", "on-s3",
           "--num-samples", "2", "--max-epochs", "3", "--max-concurrent", "1", "--storage-path", f"s3://{BUCKET}/tune",
           "--artifact-location", f"s3://{BUCKET}/mlflow", "--tracking-uri", tracking, "--final-samples", "300",
           "--top-k", "1", "--seed", "0"]
    kill_after_epochs(start(cmd, tmp_path), tracking, "on-s3", epochs=2)
    assert any("checkpoint_" in k for k in keys(s3_env, "tune/on-s3/"))  # Tune wrote its checkpoints to S3
    resumed = resume_cleanly(cmd, tmp_path, tracking, "on-s3", trials=2, max_epochs=3)
    _, _, trials = search_runs(tracking, "on-s3")
    assert all(t.info.artifact_uri.startswith(f"s3://{BUCKET}/mlflow/") for t in trials)
    artifacts = keys(s3_env, "mlflow/")
    assert any(k.endswith("figures/samples.png") for k in artifacts) and any(k.endswith("MLmodel") for k in artifacts)
    assert any(k.endswith("aae_search.json") for k in keys(s3_env, "tune/on-s3/"))
    assert "registered model: models:/aae-likelihood_mnist/" in resumed.stdout


def test_missing_bucket_is_one_clear_error_and_writes_nothing(s3_env, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "aae_tune.search", "--space", "likelihood_mnist", "--smoke",
                           "--storage-path", "s3://no-such-bucket/tune", "--tracking-uri",
                           f"sqlite:///{tmp_path}/mlflow.db"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2 and "bucket 'no-such-bucket' does not exist" in proc.stderr, proc.stderr[-2000:]
    assert list(tmp_path.iterdir()) == []
