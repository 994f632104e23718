"""Tests for aae_tune.data on real MNIST: parsing, source resolution, downloads, offline fallback.

No network mocks: downloads go to a real HTTP server on 127.0.0.1 serving copies of the
shared MNIST files, and "offline" is a real refused connection on a closed local port.
"""

from __future__ import annotations

import collections
import gzip
import http.server
import logging
import multiprocessing
import re
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from aae_tune.data import DataError, DataSplits, load_mnist
from aae_tune.data import download as dl
from aae_tune.data.idx import read_idx
from aae_tune.data.mnist import MNIST_FILES
from tests.helpers import closed_port

GZ_NAMES = [f"{name}.gz" for name in MNIST_FILES.values()]


# ---------------------------------------------------------------------------------------------- helpers
@pytest.fixture(scope="session")
def shared_md5(mnist_dir: Path) -> dict[str, str]:
    """MD5s of the shared copies (train-images was recompressed, so it differs from the published one)."""
    lines = (mnist_dir / "MD5SUMS").read_text().split("\n")
    sums = {name.lstrip("*"): digest for digest, name in (line.split() for line in lines if line.strip())}
    assert set(sums) == set(GZ_NAMES)
    return sums


def _copy_all(src: Path, dst: Path, skip: tuple[str, ...] = ()) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    for name in GZ_NAMES:
        if name not in skip:
            shutil.copyfile(src / name, dst / name)
    return dst


def _assert_same(a: DataSplits, b: DataSplits) -> None:
    for field in ("train_x", "train_y", "valid_x", "valid_y", "test_x", "test_y"):
        assert np.array_equal(getattr(a, field), getattr(b, field)), field


@pytest.fixture
def no_data_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """conftest points AAE_TUNE_DATA_DIR at the shared files; cache/download tests must not see it."""
    for var in ("AAE_TUNE_DATA_DIR", "AAE_TUNE_CACHE_DIR", "AAE_TUNE_MNIST_MIRROR"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def server(tmp_path: Path, mnist_dir: Path) -> Iterator[SimpleNamespace]:
    """A real HTTP mirror on 127.0.0.1 serving copies of the four files, counting GETs per file."""
    root = _copy_all(mnist_dir, tmp_path / "www")
    counts: collections.Counter[str] = collections.Counter()
    lock = threading.Lock()
    state = SimpleNamespace(delay=0.0)

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def do_GET(self) -> None:
            with lock:
                counts[self.path.lstrip("/")] += 1
            time.sleep(state.delay)  # lets parallel clients really overlap
            super().do_GET()

        def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield SimpleNamespace(
            url=f"http://127.0.0.1:{httpd.server_address[1]}/", root=root, counts=counts, state=state
        )
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


# ------------------------------------------------------------------------------------------- real MNIST
def test_real_mnist_paper_split(mnist: DataSplits, mnist_dir: Path) -> None:
    assert mnist.is_full
    assert mnist.source == f"directory {mnist_dir}"
    for part, n in (("train", 50000), ("valid", 10000), ("test", 10000)):
        x, y = getattr(mnist, f"{part}_x"), getattr(mnist, f"{part}_y")
        assert x.shape == (n, 784) and x.dtype == np.float32
        assert y.shape == (n,) and y.dtype == np.int64
        assert x.min() >= 0.0 and x.max() <= 1.0 and x.max() == 1.0
        assert set(np.unique(y)) == set(range(10))
    counts = np.bincount(mnist.train_y, minlength=10)
    assert ((counts > 4000) & (counts < 6000)).all(), counts
    assert np.bincount(mnist.test_y).min() > 1000 * 0.7

    # valid is official train[50000:60000], compared against the raw parser, not our own split code.
    raw_images = read_idx(mnist_dir / "train-images-idx3-ubyte.gz")
    raw_labels = read_idx(mnist_dir / "train-labels-idx1-ubyte.gz")
    assert raw_images.shape == (60000, 28, 28) and raw_images.dtype == np.uint8
    for i in (0, 1, 9999):
        assert np.array_equal(mnist.valid_x[i], raw_images[50000 + i].reshape(784) / np.float32(255))
    assert np.array_equal(mnist.train_x[123] * 255, raw_images[123].reshape(784).astype(np.float32))
    assert np.array_equal(mnist.valid_y, raw_labels[50000:])
    assert np.array_equal(mnist.test_y, read_idx(mnist_dir / "t10k-labels-idx1-ubyte.gz"))


def test_raw_uncompressed_files(tmp_path: Path, mnist_dir: Path, mnist: DataSplits) -> None:
    for name in GZ_NAMES:
        (tmp_path / name.removesuffix(".gz")).write_bytes(gzip.decompress((mnist_dir / name).read_bytes()))
    _assert_same(load_mnist(tmp_path), mnist)
    # Compression is detected from the magic bytes, not the name: raw bytes behind a .gz name work.
    (tmp_path / "t10k-labels-idx1-ubyte").rename(tmp_path / "t10k-labels-idx1-ubyte.gz")
    assert np.array_equal(read_idx(tmp_path / "t10k-labels-idx1-ubyte.gz"), mnist.test_y)


# ---------------------------------------------------------------------------------------- corrupt input
def _dir_with(tmp_path: Path, mnist_dir: Path, name: str, content: bytes) -> Path:
    """The four real files, except ``name`` (without .gz) which gets ``content`` (stored raw)."""
    data = _copy_all(mnist_dir, tmp_path / "data", skip=(f"{name}.gz",))
    (data / name).write_bytes(content)
    return data


def _raw(mnist_dir: Path, name: str) -> bytes:
    return gzip.decompress((mnist_dir / f"{name}.gz").read_bytes())


def test_truncated_gzip(tmp_path: Path, mnist_dir: Path) -> None:
    data = _copy_all(mnist_dir, tmp_path / "data")
    path = data / "train-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:10000])
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte\.gz is truncated or not a valid gzip"):
        load_mnist(data)


def test_bad_magic(tmp_path: Path, mnist_dir: Path) -> None:
    raw = bytearray(_raw(mnist_dir, "t10k-labels-idx1-ubyte"))
    raw[3] = 0x03  # now claims to be a 3-dim (images) file
    data = _dir_with(tmp_path, mnist_dir, "t10k-labels-idx1-ubyte", bytes(raw))
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte is not an IDX labels file"):
        load_mnist(data)
    raw[0] = 0x42
    (data / "t10k-labels-idx1-ubyte").write_bytes(bytes(raw))
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte is not an IDX"):
        read_idx(data / "t10k-labels-idx1-ubyte")


def test_payload_shorter_than_header(tmp_path: Path, mnist_dir: Path) -> None:
    raw = _raw(mnist_dir, "t10k-images-idx3-ubyte")
    data = _dir_with(tmp_path, mnist_dir, "t10k-images-idx3-ubyte", raw[:-100])
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte is truncated.*7840000.*7839900"):
        load_mnist(data)


def test_image_label_count_mismatch(tmp_path: Path, mnist_dir: Path) -> None:
    # 10000 test labels next to 60000 training images.
    data = _dir_with(
        tmp_path, mnist_dir, "train-labels-idx1-ubyte", _raw(mnist_dir, "t10k-labels-idx1-ubyte")
    )
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte.* 60000 images .*train-labels-idx1-ubyte"):
        load_mnist(data)


def test_explicit_dir_missing_files(tmp_path: Path, mnist_dir: Path) -> None:
    data = _copy_all(
        mnist_dir, tmp_path / "data", skip=("t10k-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz")
    )
    with pytest.raises(DataError, match="missing train-labels-idx1-ubyte.*t10k-images-idx3-ubyte") as info:
        load_mnist(data)
    assert "train-images" not in str(info.value)
    with pytest.raises(DataError, match="not a directory"):
        load_mnist(tmp_path / "nope")


# -------------------------------------------------------------------------------------- source order
def test_env_data_dir_without_fallback(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, mnist_dir: Path
) -> None:
    monkeypatch.setenv("AAE_TUNE_DATA_DIR", str(tmp_path))  # an empty folder
    # An explicit choice that is broken must raise, even though the embedded fallback is allowed.
    with pytest.raises(DataError, match=r"environment variable AAE_TUNE_DATA_DIR\) is missing train-images"):
        load_mnist(allow_embedded=True)
    assert load_mnist(mnist_dir).source == f"directory {mnist_dir}"  # the argument beats the env var


@pytest.mark.usefixtures("no_data_env")
def test_cache_dir_resolution(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert dl.default_cache_dir() == tmp_path / "xdg" / "aae_tune" / "mnist"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert dl.default_cache_dir() == Path.home() / ".cache" / "aae_tune" / "mnist"
    monkeypatch.setenv("AAE_TUNE_CACHE_DIR", str(tmp_path / "c"))
    assert dl.default_cache_dir() == tmp_path / "c"
    assert dl.resolve_mirrors() == list(dl.DEFAULT_MIRRORS)
    monkeypatch.setenv("AAE_TUNE_MNIST_MIRROR", "http://a/, http://b/")
    assert dl.resolve_mirrors() == ["http://a/", "http://b/"]
    assert dl.resolve_mirrors(["http://c/"]) == ["http://c/"]


@pytest.mark.usefixtures("no_data_env")
def test_env_cache_dir_is_used(monkeypatch, tmp_path: Path, mnist_dir: Path, shared_md5, mnist) -> None:
    cache = _copy_all(mnist_dir, tmp_path / "cache")
    monkeypatch.setenv("AAE_TUNE_CACHE_DIR", str(cache))
    splits = load_mnist(download=False, allow_embedded=False, checksums=shared_md5)
    assert splits.source == f"cache {cache}"
    _assert_same(splits, mnist)


# --------------------------------------------------------------------------------------------- download
@pytest.mark.usefixtures("no_data_env")
def test_download_then_cache(server: SimpleNamespace, tmp_path: Path, shared_md5, mnist, caplog) -> None:
    cache = tmp_path / "cache"
    kwargs = dict(cache_dir=cache, mirrors=[server.url], checksums=shared_md5)
    with caplog.at_level(logging.INFO, logger="aae_tune.data"):
        first = load_mnist(**kwargs)
    assert first.source == f"download -> {cache}" and first.is_full
    _assert_same(first, mnist)
    assert dict(server.counts) == {name: 1 for name in GZ_NAMES}
    assert sorted(p.name for p in cache.iterdir()) == sorted([*GZ_NAMES, ".lock"])
    assert "downloading train-images-idx3-ubyte.gz" in caplog.text

    second = load_mnist(**kwargs)
    assert second.source == f"cache {cache}"
    assert sum(server.counts.values()) == 4  # no new request
    _assert_same(second, mnist)


@pytest.mark.usefixtures("no_data_env")
def test_checksum_mismatch_raises_and_leaves_nothing(
    server: SimpleNamespace, tmp_path: Path, shared_md5
) -> None:
    target = server.root / "train-labels-idx1-ubyte.gz"
    blob = bytearray(target.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    target.write_bytes(bytes(blob))
    cache = tmp_path / "cache"
    # allow_embedded stays True: wrong content must never degrade into the offline fallback.
    with pytest.raises(DataError, match=r"MD5 mismatch for train-labels-idx1-ubyte\.gz") as info:
        load_mnist(cache_dir=cache, mirrors=[server.url], checksums=shared_md5)
    message = str(info.value)
    assert shared_md5["train-labels-idx1-ubyte.gz"] in message and server.url in message
    # No partial or temp file; only the good file downloaded before the bad one stays.
    assert sorted(p.name for p in cache.iterdir()) == [".lock", "train-images-idx3-ubyte.gz"]


@pytest.mark.usefixtures("no_data_env")
def test_parallel_processes_download_once(server: SimpleNamespace, tmp_path: Path, shared_md5) -> None:
    server.state.delay = 0.2
    cache = tmp_path / "cache"
    ctx = multiprocessing.get_context("spawn")
    kwargs = dict(cache_dir=str(cache), mirrors=[server.url], checksums=shared_md5)
    procs = [ctx.Process(target=load_mnist, kwargs=kwargs) for _ in range(2)]
    for proc in procs:
        proc.start()
    for proc in procs:  # start both first so that they race for the lock
        proc.join(60)
    assert [proc.exitcode for proc in procs] == [0, 0]
    assert dict(server.counts) == {name: 1 for name in GZ_NAMES}
    assert sorted(p.name for p in cache.iterdir()) == sorted([*GZ_NAMES, ".lock"])


# ---------------------------------------------------------------------------------------------- offline
@pytest.mark.usefixtures("no_data_env")
def test_offline_falls_back_to_embedded(tmp_path: Path, mnist_dir: Path, caplog) -> None:
    mirror = f"http://127.0.0.1:{closed_port()}/"
    with caplog.at_level(logging.WARNING, logger="aae_tune.data"):
        splits = load_mnist(cache_dir=tmp_path / "cache", mirrors=[mirror])
    assert "embedded" in splits.source and not splits.is_full
    said = [r.getMessage() for r in caplog.records if "NOT comparable" in r.getMessage()]
    assert len(said) == 1 and "small 5k subset" in said[0].lower() and "--data-dir" in said[0]  # once
    assert (len(splits.train_y), len(splits.valid_y), len(splits.test_y)) == (4000, 500, 500)
    for y, per_class in ((splits.train_y, 400), (splits.valid_y, 50), (splits.test_y, 50)):
        assert y.dtype == np.int64 and np.array_equal(np.bincount(y), [per_class] * 10)
    for x in (splits.train_x, splits.valid_x, splits.test_x):
        assert x.dtype == np.float32 and x.shape[1] == 784 and x.min() >= 0 and x.max() <= 1
    assert not list((tmp_path / "cache").glob(".*.part"))

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="aae_tune.data"):
        again = load_mnist(cache_dir=tmp_path / "cache", download=False)
    assert "NOT comparable" in caplog.text
    _assert_same(splits, again)  # deterministic
    # Real MNIST, not synthetic: every embedded image occurs in the official training set.
    official = read_idx(mnist_dir / "train-images-idx3-ubyte.gz").reshape(60000, 784)
    known = {row.tobytes() for row in official}
    for x in (splits.train_x, splits.test_x):
        assert all(row.tobytes() in known for row in np.rint(x * 255).astype(np.uint8))


@pytest.mark.usefixtures("no_data_env")
def test_offline_without_embedded_says_how_to_fix(tmp_path: Path) -> None:
    mirror = f"http://127.0.0.1:{closed_port()}/"
    with pytest.raises(DataError) as info:
        load_mnist(cache_dir=tmp_path / "cache", mirrors=[mirror], allow_embedded=False)
    message = str(info.value)
    for hint in ("AAE_TUNE_DATA_DIR", "data_dir", "network", mirror):
        assert hint in message
    assert re.search(r"refused|Errno", message)


def test_a_cut_dataset_says_which_splits_were_cut_and_what_each_holds(mnist):
    # a subset smaller than the cut keeps what it has: --smoke's "5000" of a 4000-image subset is 4000
    assert mnist.head(5000).source.endswith("(train 5000 of 50000)")
    small = mnist.head(200, 50, 50).head(300)
    assert small.source.endswith("(train 200 of 50000, valid 50 of 10000, test 50 of 10000) (train 200 of 200)")
