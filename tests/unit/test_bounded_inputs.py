"""Tiny hostile inputs cost little (issue 24): each gets one clear error before any large allocation.

Boundedness is asserted on memory, never on time: tracemalloc's peak for what Python allocates (YAML nodes, bytes
from a gzip file), and an address-space cap for torch's allocations (a model declared by a config.json), under
which a regression fails at once with a plain allocation error instead of taking the machine's memory.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import struct
import subprocess
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from aae_tune.config import SMOKE_OVERRIDES, ExperimentConfig, load_experiment_config
from aae_tune.data.idx import MAX_PAYLOAD_BYTES, read_idx, read_images
from aae_tune.errors import CheckpointError, ConfigError, DataError
from aae_tune.model.io import MAX_CONFIG_BYTES, load_model_files, save_model_files
from aae_tune.model.registry import build_model
from aae_tune.names import CHECKPOINT_FILE, CONFIG_FILE, STATE_FILE
from aae_tune.safe_yaml import FILE_LIMITS, VALUE_LIMITS, load_yaml_text, read_yaml_file
from aae_tune.schema import parse_overrides
from aae_tune.search.space import available_spaces, load_space, resolve_space_path
from tests.bombs import billion_laughs, billion_laughs_flow, billion_laughs_space, write_gzip_bomb

MiB = 1 << 20


@contextmanager
def python_peak() -> Iterator[list[int]]:
    """Peak bytes Python allocated inside the block (``peak[0]`` once it has ended)."""
    peak: list[int] = []
    tracemalloc.start()
    try:
        yield peak
    finally:
        peak.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()


@contextmanager
def address_space_cap(headroom: int) -> Iterator[None]:
    """Caps this process's address space at its current size + ``headroom``: a larger allocation fails at once."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    current = int(Path("/proc/self/statm").read_text().split()[0]) * resource.getpagesize()
    resource.setrlimit(resource.RLIMIT_AS, (current + headroom, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


@contextmanager
def hang_guard(seconds: int = 120) -> Iterator[None]:
    """Turns a hang (a blocking open of a FIFO) into a failure; not a speed check: the bound is generous."""
    def fail(*_: object) -> None:
        raise AssertionError(f"still blocked after {seconds} s")

    previous = signal.signal(signal.SIGALRM, fail)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


# ------------------------------------------------------------------------------------------------ YAML
def test_billion_laughs_space_file_is_refused_before_it_expands(tmp_path: Path) -> None:
    path = tmp_path / "laughs.yaml"
    path.write_text(billion_laughs_space())
    assert path.stat().st_size < 1000
    with python_peak() as peak, pytest.raises(ConfigError) as info:
        load_space(str(path))
    assert info.value.source == str(path)
    assert f"more than {FILE_LIMITS.max_nodes} values once its aliases are expanded" in str(info.value)
    assert peak[0] < 5 * MiB  # 9**9 list entries would be gigabytes


def test_billion_laughs_config_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "laughs.yaml"
    path.write_text("\n".join(billion_laughs()) + "\nnet:\n  hidden: *lol9\n")
    with python_peak() as peak, pytest.raises(ConfigError, match="once its aliases are expanded") as info:
        load_experiment_config(str(path), [])
    assert info.value.source == str(path)
    assert peak[0] < 5 * MiB


def test_billion_laughs_in_a_set_value_is_refused() -> None:
    with python_peak() as peak, pytest.raises(ConfigError) as info:
        parse_overrides([f"net.hidden={billion_laughs_flow()}"])
    (problem,) = info.value.problems
    assert problem.startswith("--set 'net.hidden={lol0") and "characters)" in problem  # the value is cut short
    assert f"more than {VALUE_LIMITS.max_nodes} values once its aliases are expanded" in problem
    assert peak[0] < 5 * MiB
    with pytest.raises(ConfigError, match="once its aliases are expanded"):
        load_experiment_config(None, [f"net.hidden={billion_laughs_flow()}"])


def test_few_aliases_and_merge_keys_still_load() -> None:
    text = "base: &base {lr: 0.1, momentum: 0.9}\nrecon: {<<: *base, lr: 0.01}\nadv: *base\n"
    assert load_yaml_text(text, "test", FILE_LIMITS) == {
        "base": {"lr": 0.1, "momentum": 0.9}, "recon": {"lr": 0.01, "momentum": 0.9},
        "adv": {"lr": 0.1, "momentum": 0.9}}


def test_alias_uses_are_counted() -> None:
    text = "a: &a 1\nb: [" + ", ".join(["*a"] * (FILE_LIMITS.max_aliases + 1)) + "]\n"
    with pytest.raises(ConfigError, match=f"uses more than {FILE_LIMITS.max_aliases} aliases"):
        load_yaml_text(text, "test", FILE_LIMITS)


def test_an_alias_of_a_long_string_counts_its_characters() -> None:
    text = "a: &a '" + "x" * 60_000 + "'\nb: [" + ", ".join(["*a"] * 80) + "]\n"
    with pytest.raises(ConfigError, match=f"more than {FILE_LIMITS.max_chars} characters"):
        load_yaml_text(text, "test", FILE_LIMITS)


def test_a_recursive_alias_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"alias \*a at line 1, column 11 refers to a node that contains it"):
        load_yaml_text("a: &a [1, *a]", "test", FILE_LIMITS)


@pytest.mark.parametrize("flow", [True, False])
def test_deep_nesting_is_refused(tmp_path: Path, flow: bool) -> None:
    depth = 10_000 if flow else 1_000  # the composer recurses per level: unbounded, a RecursionError
    text = "[" * depth + "]" * depth if flow else "".join(f"{' ' * i}k:\n" for i in range(depth))
    path = tmp_path / "deep.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=f"nests deeper than {FILE_LIMITS.max_depth} levels"):
        read_yaml_file(path)
    with pytest.raises(ConfigError, match="nests deeper than"):
        parse_overrides(["code_dim=" + "[" * 100 + "]" * 100])


def test_a_file_over_the_size_limit_is_refused_without_reading_it(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    with open(path, "wb") as f:
        f.truncate(2 << 30)  # a sparse 2 GiB file: costs no disk
    with python_peak() as peak, pytest.raises(ConfigError, match=r"is 2147483648 bytes; at most 1048576 bytes"):
        load_space(str(path))
    assert peak[0] < MiB


def test_an_endless_device_is_read_no_further_than_the_limit() -> None:
    with python_peak() as peak, pytest.raises(ConfigError, match="holds more than 1048576 bytes") as info:
        load_experiment_config("/dev/zero", [])
    assert info.value.source == "/dev/zero"
    assert peak[0] < 4 * FILE_LIMITS.max_bytes


def test_a_fifo_is_read_no_further_than_the_limit(tmp_path: Path) -> None:
    fifo = tmp_path / "space.yaml"
    os.mkfifo(fifo)
    keep_open = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)  # a reader from the start: the writer's open cannot block
    writer = subprocess.Popen(["sh", "-c", f"head -c {3 * FILE_LIMITS.max_bytes} /dev/zero > '{fifo}'"],
                              stderr=subprocess.DEVNULL)
    try:
        with hang_guard(), pytest.raises(ConfigError, match="holds more than 1048576 bytes"):
            read_yaml_file(fifo)
    finally:
        os.close(keep_open)  # the last reader gone: the writer stops on a broken pipe
        writer.wait(60)


def test_a_fifo_without_writer_does_not_block(tmp_path: Path) -> None:
    fifo = tmp_path / "config.yaml"
    os.mkfifo(fifo)
    with hang_guard():
        assert read_yaml_file(fifo) is None  # as an empty file


def test_a_long_set_value_is_refused_by_length() -> None:
    with python_peak() as peak, pytest.raises(ConfigError) as info:
        parse_overrides(["net.hidden=" + "1" * (VALUE_LIMITS.max_bytes + 1)])
    (problem,) = info.value.problems
    assert f"is {VALUE_LIMITS.max_bytes + 1} characters long, over the limit of {VALUE_LIMITS.max_bytes}" in problem
    assert len(problem) < 400
    assert peak[0] < MiB


def test_a_number_too_long_to_convert_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="not valid YAML: a value cannot be converted"):
        parse_overrides(["code_dim=" + "9" * 5000])


def test_set_syntax_errors_keep_their_message() -> None:
    with pytest.raises(ConfigError, match=r"--set 'code_dim=\[1': value is not valid YAML \(ParserError\)"):
        parse_overrides(["code_dim=[1"])


@pytest.mark.parametrize("name", available_spaces())
def test_every_shipped_space_is_within_the_limits(name: str) -> None:
    raw = read_yaml_file(resolve_space_path(name))
    assert isinstance(raw, dict) and raw


# ------------------------------------------------------------------------------------------- model files
def small_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(ExperimentConfig.from_dict(SMOKE_OVERRIDES), 784).eval()


def widen(config: dict, width: int) -> dict:
    return {**config, "net": {**config["net"], "hidden": [width]}}


def test_a_config_declaring_a_huge_layer_is_refused_before_allocating(tmp_path: Path) -> None:
    save_model_files(small_model(), tmp_path)
    payload = json.loads((tmp_path / CONFIG_FILE).read_text())
    (tmp_path / CONFIG_FILE).write_text(json.dumps({**payload, "config": widen(payload["config"], 10_000_000)}))
    assert (tmp_path / CONFIG_FILE).stat().st_size < 2048
    # Building that model would take 2 x 31 GB (encoder and decoder); this cap fails anything over 1 GiB.
    with address_space_cap(1 << 30), pytest.raises(CheckpointError) as info:
        load_model_files(tmp_path, device="cpu")
    message = str(info.value)
    assert message.startswith(f"{tmp_path} ({STATE_FILE} against {CONFIG_FILE}): weights do not fit")
    assert "shape mismatches: encoder.net.0.weight (file (128, 784), config (10000000, 784))" in message
    assert "unexpected keys: encoder.net.4.weight" in message  # every kind of mismatch in the one error


def test_a_trainer_checkpoint_declaring_a_huge_layer_is_refused(tmp_path: Path) -> None:
    model = small_model()
    config = widen(model.cfg.to_dict(), 10_000_000)
    torch.save({"config_json": json.dumps(config), "data_dim": 784, "model": model.state_dict()},
               tmp_path / CHECKPOINT_FILE)
    with address_space_cap(1 << 30), pytest.raises(CheckpointError, match=f"{CHECKPOINT_FILE}: weights do not fit"):
        load_model_files(tmp_path, device="cpu")


def test_a_huge_data_dim_is_refused_before_allocating(tmp_path: Path) -> None:
    save_model_files(small_model(), tmp_path)
    payload = json.loads((tmp_path / CONFIG_FILE).read_text())
    (tmp_path / CONFIG_FILE).write_text(json.dumps({**payload, "data_dim": 10**9}))
    with address_space_cap(1 << 30), pytest.raises(CheckpointError, match=r"missing keys|shape mismatches"):
        load_model_files(tmp_path, device="cpu")


@pytest.mark.parametrize("data_dim", [0, -5, "784", 784.5])
def test_a_bad_data_dim_is_a_checkpoint_error(tmp_path: Path, data_dim: object) -> None:
    save_model_files(small_model(), tmp_path)
    payload = json.loads((tmp_path / CONFIG_FILE).read_text())
    (tmp_path / CONFIG_FILE).write_text(json.dumps({**payload, "data_dim": data_dim}))
    with pytest.raises(CheckpointError, match="data_dim must be a positive integer"):
        load_model_files(tmp_path, device="cpu")


def test_an_oversized_config_json_is_refused_unread(tmp_path: Path) -> None:
    save_model_files(small_model(), tmp_path)
    with open(tmp_path / CONFIG_FILE, "ab") as f:
        f.truncate(2 << 30)
    with python_peak() as peak, pytest.raises(CheckpointError, match=f"at most {MAX_CONFIG_BYTES} bytes"):
        load_model_files(tmp_path, device="cpu")
    assert peak[0] < MiB


def test_a_config_json_that_is_not_json_is_a_checkpoint_error(tmp_path: Path) -> None:
    save_model_files(small_model(), tmp_path)
    (tmp_path / CONFIG_FILE).write_text("{not json")
    with pytest.raises(CheckpointError, match="its config is not valid JSON"):
        load_model_files(tmp_path, device="cpu")


def test_model_files_round_trip_exactly(tmp_path: Path) -> None:
    model = small_model()
    save_model_files(model, tmp_path / "files")
    torch.save({"config_json": json.dumps(model.cfg.to_dict()), "data_dim": 784, "model": model.state_dict()},
               (tmp_path / "ckpt").mkdir() or tmp_path / "ckpt" / CHECKPOINT_FILE)
    x = torch.rand(32, 784, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = model.decode(model.encode(x))
    for folder in ("files", "ckpt"):
        loaded = load_model_files(tmp_path / folder, device="cpu")
        assert not loaded.training
        assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in model.state_dict().items())
        with torch.no_grad():
            assert torch.equal(loaded.decode(loaded.encode(x)), expected)


# ---------------------------------------------------------------------------------------------- IDX data
@pytest.fixture(scope="module")
def gzip_bomb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_gzip_bomb(tmp_path_factory.mktemp("bomb") / "train-images-idx3-ubyte.gz")


def test_a_gzip_bomb_is_refused_once_past_its_header(gzip_bomb: Path) -> None:
    assert gzip_bomb.stat().st_size < 2 * MiB  # 300 MiB once decompressed
    with python_peak() as peak, pytest.raises(DataError) as info:
        read_images(gzip_bomb)
    assert str(info.value).startswith(f"{gzip_bomb} is longer than its header says: header dims (10, 28, 28) need "
                                      "7840 payload bytes, file holds more")
    assert peak[0] < 4 * gzip_bomb.stat().st_size + MiB


@pytest.mark.parametrize("compressed", [True, False])
def test_a_header_declaring_an_absurd_size_is_refused(tmp_path: Path, compressed: bool) -> None:
    if compressed:
        path = write_gzip_bomb(tmp_path / "x.gz", zero_mib=1, images=1 << 30)
    else:
        path = tmp_path / "x"
        path.write_bytes(struct.pack(">IIII", 0x803, 1 << 30, 28, 28) + bytes(1000))
    with python_peak() as peak, pytest.raises(DataError, match=f"more than the {MAX_PAYLOAD_BYTES} accepted"):
        read_idx(path, expect="images")
    assert peak[0] < MiB


def test_a_raw_header_claiming_more_than_the_file_holds_reads_only_the_file(tmp_path: Path) -> None:
    path = tmp_path / "t10k-images-idx3-ubyte"
    path.write_bytes(struct.pack(">IIII", 0x803, 2_000_000, 28, 28) + bytes(784))  # 1.5 GB claimed, 1 image held
    with python_peak() as peak, pytest.raises(DataError, match=r"is truncated: .* need 1568000000 payload bytes, "
                                                                r"file has 784"):
        read_images(path)
    assert peak[0] < MiB
