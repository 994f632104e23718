"""cluster/: launcher files pass Ray's own validation, KubeRay manifests have what the operator needs, every search
command line in them is a valid ``aae_tune.search`` invocation, and no file holds a credential."""

import copy
import re
import shlex

import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

from aae_tune.schema import parse_overrides
from aae_tune.search.cli import build_parser
from aae_tune.search.space import load_space
from tests.helpers import REPO_ROOT

CLUSTER = REPO_ROOT / "cluster"
LAUNCHER_FILES = ["aws-gpu.yaml", "gcp-gpu.yaml"]
SEARCH_PREFIX = ["python", "-m", "aae_tune.search"]


def load(name: str):
    return yaml.safe_load((CLUSTER / name).read_text())


def cluster_files():
    return sorted(p for p in CLUSTER.rglob("*") if p.is_file())


def check_search_command(command: str) -> None:
    """The words after ``python -m aae_tune.search`` parse with the real parser and name a valid space."""
    words = shlex.split(command)
    start = next(i for i in range(len(words)) if words[i : i + 3] == SEARCH_PREFIX)
    args = build_parser().parse_args(words[start + 3 :])  # argparse exits (SystemExit) on a bad flag
    load_space(args.space, parse_overrides(args.overrides))  # the space and its --set overrides are valid
    assert args.address == "auto", "on a cluster the driver must join it, not start a local Ray"
    assert "://" in args.storage_path or args.storage_path.startswith("/mnt/"), "storage must be shared"
    assert args.tracking_uri.startswith("http"), "a cluster search logs to the team MLflow server"
    assert args.gpus_per_trial is not None and 0 < args.gpus_per_trial <= 1, "GPU share must be explicit"
    assert args.max_concurrent and args.num_samples and args.name


@pytest.mark.parametrize("name", LAUNCHER_FILES)
def test_launcher_file_passes_rays_validation(name):
    config = load(name)
    validate_config(prepare_config(copy.deepcopy(config)))  # defaults merged exactly as `ray up` does
    nodes = config["available_node_types"]
    head = nodes[config["head_node_type"]]
    assert head["resources"].get("GPU", 0) == 0
    gpu_types = [n for key, n in nodes.items() if key != config["head_node_type"]]
    assert gpu_types and all(n["resources"]["GPU"] >= 1 and n["max_workers"] >= 1 for n in gpu_types)
    node_configs = str([n["node_config"] for n in gpu_types])
    assert re.search(r"spot|preemptible", node_configs), "a spot / preemptible worker type"
    # CPU torch on the head, the CUDA build on GPU workers, both before the package.
    assert "whl/cpu" in " ".join(config["head_setup_commands"])
    assert not any("whl/cpu" in c for c in config["worker_setup_commands"])
    for commands in (config["head_setup_commands"], config["worker_setup_commands"]):
        torch_at = next(i for i, c in enumerate(commands) if "torch==" in c)
        assert torch_at < next(i for i, c in enumerate(commands) if "aae_tune" in c)


def test_validation_catches_a_broken_launcher_file():
    """Guard against a validator that accepts anything: an unknown key and a missing head type are refused."""
    config = load("aws-gpu.yaml")
    bad = copy.deepcopy(config) | {"max_wokers": 3}
    with pytest.raises(Exception, match="max_wokers"):
        validate_config(prepare_config(bad))
    bad = copy.deepcopy(config) | {"head_node_type": "nope"}
    with pytest.raises(ValueError):
        validate_config(prepare_config(bad))


@pytest.mark.parametrize("name", LAUNCHER_FILES)
def test_launcher_file_comments_every_key(name):
    """A one-line comment right above every key down to the cloud's instance settings (list items excepted)."""
    lines = (CLUSTER / name).read_text().splitlines()
    missing = [
        line.strip() for i, line in enumerate(lines)
        if re.match(r"^(\s{4})*[A-Za-z_][\w.-]*:", line) and len(line) - len(line.lstrip()) <= 12
        and not lines[i - 1].lstrip().startswith("#")
    ]
    assert not missing, missing


def test_kuberay_manifests():
    cluster = load("kuberay/raycluster.yaml")
    job = load("kuberay/rayjob.yaml")
    assert (cluster["apiVersion"], cluster["kind"]) == ("ray.io/v1", "RayCluster")
    assert (job["apiVersion"], job["kind"]) == ("ray.io/v1", "RayJob")
    spec = cluster["spec"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", spec["rayVersion"])
    head = spec["headGroupSpec"]
    assert "rayStartParams" in head and head["template"]["spec"]["containers"][0]["image"]
    groups = spec["workerGroupSpecs"]
    assert groups
    for group in groups:
        assert {"groupName", "rayStartParams", "template", "minReplicas", "maxReplicas"} <= set(group)
        assert group["minReplicas"] <= group["maxReplicas"]
        container = group["template"]["spec"]["containers"][0]
        assert int(container["resources"]["limits"]["nvidia.com/gpu"]) >= 1
    # The job runs on this cluster, and every pod mounts the same shared storage the job writes to.
    assert job["spec"]["clusterSelector"]["ray.io/cluster"] == cluster["metadata"]["name"]
    check_search_command(job["spec"]["entrypoint"])
    claim = load("kuberay/storage.yaml")
    assert claim["kind"] == "PersistentVolumeClaim" and "ReadWriteMany" in claim["spec"]["accessModes"]
    pods = [head["template"]["spec"]] + [g["template"]["spec"] for g in groups]
    for pod in pods:
        claims = [v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"] if "persistentVolumeClaim" in v]
        assert claims == [claim["metadata"]["name"]]


@pytest.mark.parametrize("name", LAUNCHER_FILES)
def test_launcher_job_command_is_a_valid_search(name):
    check_search_command(load(name)["metadata"]["submit_search"])


def test_every_search_command_line_in_cluster_files_is_valid():
    """Also commands in comments and docs under cluster/: whatever a user may copy must parse."""
    found = 0
    for path in cluster_files():
        text = path.read_text(errors="replace")
        if path.suffix in (".yaml", ".yml"):  # folded scalars span lines: search the parsed values
            text = "\n".join(_strings(list(yaml.safe_load_all(text))))
        for match in re.finditer(r"python -m aae_tune\.search(?: [^\n'\"`]*)?", text):
            if " --" in match.group(0):
                check_search_command(match.group(0))
                found += 1
    assert found >= 3


def _strings(node):
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)


KEY_PATTERNS = {
    "AWS access key id": r"\b(AKIA|ASIA)[0-9A-Z]{16}\b",
    "AWS secret key assignment": r"(?i)aws_secret_access_key\s*[:=]\s*\S+",
    "private key": r"-----BEGIN [A-Z ]*PRIVATE KEY-----",
    "GCP service-account key": r'"private_key(_id)?"\s*:',
    "GitHub / Slack token": r"\b(ghp_[A-Za-z0-9]{30,}|xox[abp]-[A-Za-z0-9-]{10,})\b",
    "password in a URI": r"://[^/\s:@]+:[^/\s@$]+@",
    "literal password value": r"(?i)password[\"']?\s*[:=]\s*[\"']?(?![$<{?\s])[^\s#\"']{4,}",
    "long random token": r"\b[A-Za-z0-9+/]{40,}={0,2}\b",
}


def test_no_credentials_in_cluster_files():
    hits = []
    for path in cluster_files():
        for lineno, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            for what, pattern in KEY_PATTERNS.items():
                if re.search(pattern, line):
                    hits.append(f"{path.relative_to(REPO_ROOT)}:{lineno}: {what}: {line.strip()[:80]}")
    assert not hits, "\n".join(hits)


def test_credential_patterns_catch_keys():
    samples = ["aws_access_key_id = AKIAABCDEFGHIJKLMNOP", "password: hunter22",
               "uri: postgresql://mlflow:s3cret@db/mlflow", "-----BEGIN RSA PRIVATE KEY-----"]
    for sample in samples:
        assert any(re.search(p, sample) for p in KEY_PATTERNS.values()), sample
    fine = ["POSTGRES_PASSWORD: ${MLFLOW_DB_PASSWORD:?export MLFLOW_DB_PASSWORD first}",
            "PGPASSWORD: ${MLFLOW_DB_PASSWORD}", "secretKeyRef: {name: mlflow-db, key: password}"]
    for sample in fine:
        assert not any(re.search(p, sample) for p in KEY_PATTERNS.values()), sample
