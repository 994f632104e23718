"""Where the tests take real MNIST from (tests/real_mnist.py): the product's order, ../shared, skip reasons.

The order only looks at file names and MD5s, so small stand-in files do (no real MNIST needed: these run anywhere).
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from aae_tune.data import download as dl
from aae_tune.data.mnist import DATA_ENV
from tests.helpers import closed_port
from tests.real_mnist import GZ_NAMES, MD5SUMS, pin, resolve


def _fill(folder: Path, *, md5sums: bool = False) -> dict[str, str]:
    """Four stand-in .gz files (and optionally their MD5SUMS) in ``folder``; returns their MD5s."""
    folder.mkdir(parents=True, exist_ok=True)
    sums = {}
    for name in GZ_NAMES:
        (folder / name).write_bytes(gzip.compress(name.encode(), mtime=0))
        sums[name] = hashlib.md5((folder / name).read_bytes(), usedforsecurity=False).hexdigest()
    if md5sums:
        (folder / MD5SUMS).write_text("".join(f"{digest}  {name}\n" for name, digest in sums.items()))
    return sums


def _md5sums(folder: Path) -> dict[str, str]:
    return {name: digest for digest, name in (line.split() for line in (folder / MD5SUMS).read_text().splitlines())}


@pytest.fixture
def machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A machine with nothing: no AAE_TUNE_DATA_DIR, an empty cache, every mirror refusing at once."""
    # conftest pins it for the session; set first so that the undo restores it even after pin() below wrote it.
    monkeypatch.setenv(DATA_ENV, "")
    monkeypatch.delenv(DATA_ENV)
    monkeypatch.setenv(dl.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setenv(dl.MIRROR_ENV, f"http://127.0.0.1:{closed_port()}/")
    return tmp_path


def test_the_environment_variable_comes_first_and_is_used_in_place(machine, monkeypatch):
    _fill(machine / "shared", md5sums=True)
    _fill(machine / "mine", md5sums=True)
    monkeypatch.setenv(DATA_ENV, str(machine / "mine"))
    real = resolve(machine / "shared", machine / "staging", download=True)
    assert real.folder == machine / "mine" and DATA_ENV in real.origin


def test_a_folder_without_md5sums_is_copied_with_one(machine, monkeypatch):
    sums = _fill(machine / "mine")
    monkeypatch.setenv(DATA_ENV, str(machine / "mine"))
    real = resolve(machine / "absent", machine / "staging", download=True)
    assert real.folder == machine / "staging" and _md5sums(real.folder) == sums
    assert not (machine / "mine" / MD5SUMS).exists()  # the user's folder is left as it was


def test_raw_files_are_gzipped_for_the_tests(machine, monkeypatch):
    mine = machine / "mine"
    mine.mkdir()
    for name in GZ_NAMES:
        (mine / name.removesuffix(".gz")).write_bytes(name.encode())
    monkeypatch.setenv(DATA_ENV, str(mine))
    real = resolve(machine / "absent", machine / "staging", download=True)
    assert all(gzip.decompress((real.folder / name).read_bytes()) == name.encode() for name in GZ_NAMES)


def test_an_incomplete_explicit_folder_is_an_error_not_a_skip(machine, monkeypatch):
    _fill(machine / "shared", md5sums=True)
    (machine / "mine").mkdir()
    monkeypatch.setenv(DATA_ENV, str(machine / "mine"))
    real = resolve(machine / "shared", machine / "staging", download=True)
    assert real.broken and real.folder is None and "train-images-idx3-ubyte[.gz]" in real.origin


def test_the_shared_copy_comes_before_the_cache(machine):
    _fill(machine / "shared", md5sums=True)
    assert resolve(machine / "shared", machine / "staging", download=True).folder == machine / "shared"


def test_a_verified_cache_is_copied_and_a_damaged_one_is_not_used(machine, monkeypatch):
    cache = machine / "cache"
    monkeypatch.setattr(dl, "PUBLISHED_MD5", _fill(cache))  # these stand-ins are "the published files"
    real = resolve(machine / "absent", machine / "staging", download=True)
    assert real.folder == machine / "staging" and "cache" in real.origin
    (cache / GZ_NAMES[1]).write_bytes(b"damaged")
    real = resolve(machine / "absent", machine / "staging2", download=True)
    assert real.folder is None and not real.broken
    assert f"holds {GZ_NAMES[1]} with an MD5 other than the published one" in real.origin


def test_offline_with_an_empty_cache_is_a_skip_reason_that_says_what_to_do(machine):
    real = resolve(machine / "absent", machine / "staging", download=True)
    assert real.folder is None and not real.broken
    for part in (f"{DATA_ENV} unset", f"{machine / 'cache'} is empty", "download failed", "user cache"):
        assert part in real.skip_reason, part
    assert "refused" in real.summary()  # the network's own error: once at the end of the run, not per test
    assert "no download tried" in resolve(machine / "absent", machine / "staging", download=False).origin


@pytest.fixture
def mirror(tmp_path: Path) -> Iterator[str]:
    """A real HTTP server on 127.0.0.1 serving the folder ``tmp_path / "www"``."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path / "www"))
    handler.log_message = lambda *args: None  # keep test output quiet
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


def test_the_download_goes_through_the_products_checks(machine, monkeypatch, mirror):
    monkeypatch.setenv(dl.MIRROR_ENV, mirror)
    monkeypatch.setattr(dl, "PUBLISHED_MD5", _fill(machine / "www"))
    real = resolve(machine / "absent", machine / "staging", download=True)
    assert real.folder == machine / "staging" and "download" in real.origin
    assert all((machine / "cache" / name).is_file() for name in GZ_NAMES)  # the product's cache, filled

    (machine / "www" / GZ_NAMES[0]).write_bytes(b"another file")
    (machine / "cache" / GZ_NAMES[0]).unlink()
    real = resolve(machine / "absent", machine / "staging2", download=True)
    assert real.broken and "MD5 mismatch" in real.origin  # wrong data is an error, as in the product


def test_pin_points_every_load_at_the_files_or_at_a_missing_folder(machine, monkeypatch):
    _fill(machine / "shared", md5sums=True)
    pin(resolve(machine / "shared", machine / "staging", download=False), machine / "none")
    assert os.environ[DATA_ENV] == str(machine / "shared")
    monkeypatch.delenv(DATA_ENV)
    pin(resolve(machine / "absent", machine / "staging", download=False), machine / "none")
    assert os.environ[DATA_ENV] == str(machine / "none")  # a load fails loudly instead of using the 5K subset
    monkeypatch.setenv(DATA_ENV, str(machine / "empty"))
    pin(resolve(machine / "absent", machine / "staging", download=False), machine / "none")
    assert os.environ[DATA_ENV] == str(machine / "empty")  # a broken explicit choice: the product's error names it
