"""The GPU code path, forced on a machine without one: the device and resource decisions are the only
GPU-specific code (everything after them is the CPU code with another torch device)."""

import numpy as np
import pytest
import ray
import torch

from aae_tune.evaluate import parallel as evaluate
from aae_tune.model.io import resolve_device
from aae_tune.model.registry import build_model
from aae_tune.search.cli import build_parser
from aae_tune.search.driver import trial_resources
from aae_tune.search.request import build_request


@pytest.fixture
def cuda_visible(monkeypatch):
    """What a process sees when Ray assigned it a GPU (CUDA_VISIBLE_DEVICES set): torch reports CUDA."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)


def request(tmp_path, *flags):
    args = build_parser().parse_args(["--space", "likelihood_mnist", "--smoke", "--storage-path",
                                      str(tmp_path / "ray_results"), "--tracking-uri",
                                      f"sqlite:///{tmp_path}/mlflow.db", *flags])
    return build_request(args)


def test_trials_train_on_cuda_when_ray_gave_them_a_gpu(cuda_visible):
    assert resolve_device(None) == torch.device("cuda")
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device("cpu") == torch.device("cpu")  # an explicit device always wins


def test_trials_train_on_cpu_without_a_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device(None) == torch.device("cpu")


def test_trial_resources_default_to_one_gpu_when_the_cluster_has_gpus(tmp_path, monkeypatch):
    req = request(tmp_path)
    assert req.gpus_per_trial is None
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 16.0, "GPU": 4.0})
    assert trial_resources(req) == {"cpu": 1.0, "gpu": 1.0}
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 2.0})
    assert trial_resources(req) == {"cpu": 1.0, "gpu": 0.0}


def test_fractional_gpus_per_trial_are_passed_through(tmp_path, monkeypatch):
    monkeypatch.setenv("RAY_OVERRIDE_RESOURCES", '{"GPU": 4}')  # the pre-flight refuses GPUs a local Ray lacks
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 16.0, "GPU": 4.0})
    assert trial_resources(request(tmp_path, "--gpus-per-trial", "0.25")) == {"cpu": 1.0, "gpu": 0.25}
    assert trial_resources(request(tmp_path, "--gpus-per-trial", "0")) == {"cpu": 1.0, "gpu": 0.0}


@pytest.mark.parametrize(("gpus", "workers", "share"), [
    (0, 4, 0.0), (1, 4, 0.25), (1, 3, 0.3333), (2, 1, 1.0), (8, 4, 1.0), (1, 100_000, 1e-4),
])
def test_parzen_task_gpu_share(gpus, workers, share):
    assert evaluate.task_gpu_fraction(gpus, workers) == share


def test_parzen_task_device(cuda_visible):
    assert evaluate.task_device() == torch.device("cuda")


def test_parzen_task_device_on_cpu_uses_one_thread(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    threads = torch.get_num_threads()
    try:
        assert evaluate.task_device() == torch.device("cpu")
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)


def test_parzen_tasks_ask_ray_for_a_gpu_share_when_the_cluster_has_gpus(monkeypatch, tiny_config):
    """parallel_parzen_run requests GPU shares from Ray iff the cluster has GPUs (Ray itself is faked)."""
    model = build_model(tiny_config, 784)
    asked = []

    def fake_pass(files_ref, points, points_ref, sigmas, *, seed, n_samples, shard_size, workers, num_gpus, bar):
        asked.append(num_gpus)
        return np.zeros((len(sigmas), len(points))), n_samples, 1.0, ["node-a", "node-b"]

    monkeypatch.setattr(evaluate, "_run_pass", fake_pass)
    monkeypatch.setattr(ray, "is_initialized", lambda: True)
    monkeypatch.setattr(ray, "put", lambda value: value)
    points = np.zeros((4, 784), dtype=np.float32)
    for resources, expected in (({"CPU": 4.0, "GPU": 1.0}, 0.25), ({"CPU": 4.0}, 0.0)):
        monkeypatch.setattr(ray, "cluster_resources", lambda r=resources: r)
        asked.clear()
        run = evaluate.parallel_parzen_run(model, points, points, n_samples=10)
        assert asked == [expected, expected]  # both passes
        assert run.nodes == ["node-a", "node-b"] and len(run.task_nodes) == 4
