"""Download the four official MNIST files into the user cache, safely and once.

Why it is built this way:

* Many Ray Tune trials (separate processes) may start at the same moment on an empty
  cache. An exclusive ``fcntl.flock`` on ``<cache>/.lock`` serialises them; whoever gets
  the lock second re-checks the cache and finds the files already there, so each file is
  fetched once per machine.
* A file only appears under its final name after it was completely received and its MD5
  matched (temp file in the same directory + ``os.replace``, which is atomic). Readers
  never see a half-written file, and a failure leaves nothing behind.
* Network errors (DNS, refused, timeout, HTTP error, short transfer) move on to the next
  mirror; if every mirror fails that way, :class:`DownloadUnavailable` lets the caller
  fall back to the embedded subset. A checksum mismatch is different: the data exists but
  is wrong, so it is a hard :class:`DataError` and never silently replaced.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import logging
import os
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import BinaryIO

from aae_tune.errors import DataError

try:  # POSIX only; elsewhere parallel first downloads are merely wasteful, not wrong (os.replace).
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger("aae_tune.data")

CACHE_ENV = "AAE_TUNE_CACHE_DIR"
MIRROR_ENV = "AAE_TUNE_MNIST_MIRROR"
DEFAULT_MIRRORS: tuple[str, ...] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
# MD5s published with the official files (as used by torchvision and the mirrors above).
PUBLISHED_MD5: dict[str, str] = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
DOWNLOAD_NAMES: tuple[str, ...] = tuple(PUBLISHED_MD5)
DEFAULT_TIMEOUT = 60.0  # seconds per connect/read, not per file
_CHUNK = 1 << 20
_PART_SUFFIX = ".part"


class DownloadUnavailable(DataError):
    """Every mirror failed with a network error, so no download is possible right now."""


def default_cache_dir() -> Path:
    """``$AAE_TUNE_CACHE_DIR``, else ``$XDG_CACHE_HOME/aae_tune/mnist``, else ``~/.cache/aae_tune/mnist``."""
    explicit = os.environ.get(CACHE_ENV)
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "aae_tune" / "mnist"


def resolve_mirrors(mirrors: Sequence[str] | None = None) -> list[str]:
    """Mirror base URLs: the argument, else ``$AAE_TUNE_MNIST_MIRROR`` (comma-separated), else defaults."""
    if mirrors is None:
        env = os.environ.get(MIRROR_ENV, "")
        mirrors = [m for m in (part.strip() for part in env.split(",")) if m] or list(DEFAULT_MIRRORS)
    if isinstance(mirrors, str):  # a lone string would otherwise be iterated per character
        mirrors = [mirrors]
    result = [m.strip() for m in mirrors if m and m.strip()]
    if not result:
        raise DataError(f"no MNIST mirror configured; pass mirrors=[...] or set {MIRROR_ENV}")
    return result


def resolve_checksums(checksums: Mapping[str, str] | None = None) -> dict[str, str]:
    """Published MD5s, overridden per file by ``checksums`` (keys with or without ``.gz``)."""
    result = dict(PUBLISHED_MD5)
    for name, digest in (checksums or {}).items():
        key = name if name.endswith(".gz") else name + ".gz"
        if key not in result:
            raise DataError(
                f"checksums has an unknown MNIST file name {name!r}; expected one of {DOWNLOAD_NAMES}"
            )
        result[key] = digest.strip().lower()
    return result


def md5_of(path: Path) -> str:
    """Hex MD5 of a file, read in chunks."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def verified_cache_files(cache_dir: Path, checksums: Mapping[str, str]) -> dict[str, Path]:
    """The cached ``.gz`` files whose MD5 matches; files that are absent or differ are left out.

    Only files this module downloaded (and thus verified) belong in the cache, so checking
    the MD5 here (about 20 ms for all four) also catches files damaged after download.
    """
    found: dict[str, Path] = {}
    for name in DOWNLOAD_NAMES:
        path = cache_dir / name
        if path.is_file():
            actual = md5_of(path)
            if actual == checksums[name]:
                found[name] = path
            else:
                logger.warning("cached %s has MD5 %s, not %s: ignoring it", path, actual, checksums[name])
    return found


@contextlib.contextmanager
def cache_lock(cache_dir: Path) -> Iterator[None]:
    """Exclusive inter-process lock on ``<cache_dir>/.lock`` (released when the block exits)."""
    if fcntl is None:  # pragma: no cover - Windows
        yield
        return
    with open(cache_dir / ".lock", "a+b") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            logger.info("waiting for another process downloading MNIST into %s", cache_dir)
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


class _NetworkError(Exception):
    """A transfer failed for reasons that another mirror (or a later retry) might not have."""


def _write(out: BinaryIO, block: bytes, cache_dir: Path) -> None:
    """Write to the temp file; a disk problem is a DataError, not a reason to try another mirror."""
    try:
        out.write(block)
    except OSError as exc:
        raise DataError(
            f"cannot write to the MNIST cache {cache_dir}: {exc}; free some space or set {CACHE_ENV}"
        ) from exc


def _fetch(url: str, cache_dir: Path, name: str, timeout: float) -> tuple[Path, str]:
    """Stream ``url`` into a temp file in ``cache_dir``; return (temp path, MD5). Nothing left on error."""
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{name}.", suffix=_PART_SUFFIX, dir=cache_dir)
    except OSError as exc:
        raise DataError(
            f"cannot write to the MNIST cache {cache_dir}: {exc}; set {CACHE_ENV} to a writable folder"
        ) from exc
    tmp = Path(tmp_name)
    digest = hashlib.md5(usedforsecurity=False)
    received = 0
    try:
        with os.fdopen(fd, "wb") as out:
            request = urllib.request.Request(url, headers={"User-Agent": "aae_tune"})
            try:
                with urllib.request.urlopen(request, timeout=timeout) as response:
                    length = response.headers.get("Content-Length")
                    while block := response.read(_CHUNK):
                        digest.update(block)
                        _write(out, block, cache_dir)
                        received += len(block)
            # OSError covers socket, SSL and timeout errors; disk errors were turned into DataError.
            except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
                raise _NetworkError(str(exc) or type(exc).__name__) from exc
            # A connection cut mid-file is a network problem, not a checksum problem.
            if length is not None and length.isdigit() and received != int(length):
                raise _NetworkError(f"transfer ended after {received} of {length} bytes")
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp, digest.hexdigest()


def _download_one(name: str, mirrors: Sequence[str], expected: str, cache_dir: Path, timeout: float) -> None:
    """Fetch ``name`` from the first mirror that delivers it with the expected MD5."""
    network_errors: list[str] = []
    mismatches: list[str] = []
    for mirror in mirrors:
        url = mirror.rstrip("/") + "/" + name
        logger.info("downloading %s from %s", name, url)
        start = time.monotonic()
        try:
            tmp, actual = _fetch(url, cache_dir, name, timeout)
        except _NetworkError as exc:
            logger.warning("download of %s failed: %s", url, exc)
            network_errors.append(f"{url}: {exc}")
            continue
        if actual != expected:
            tmp.unlink(missing_ok=True)
            logger.error("%s from %s has MD5 %s, expected %s", name, url, actual, expected)
            mismatches.append(f"{url} gave MD5 {actual}")
            continue
        os.replace(tmp, cache_dir / name)
        size = (cache_dir / name).stat().st_size
        logger.info("saved %s (%d bytes, MD5 ok) in %.1f s", cache_dir / name, size, time.monotonic() - start)
        return
    if mismatches:
        raise DataError(
            f"MD5 mismatch for {name}: expected {expected}, but "
            + "; ".join(mismatches)
            + (f" (other mirrors failed: {'; '.join(network_errors)})" if network_errors else "")
            + ". Nothing was saved. The mirror serves different content: try another mirror via "
            f"{MIRROR_ENV}, or put the official files in a folder and set AAE_TUNE_DATA_DIR"
        )
    raise DownloadUnavailable(f"could not download {name} from any mirror: " + "; ".join(network_errors))


def _remove_stale_parts(cache_dir: Path) -> None:
    """Delete temp files left by a process that was killed mid-download (safe: we hold the lock)."""
    for stale in cache_dir.glob(f".*{_PART_SUFFIX}"):
        logger.info("removing stale partial download %s", stale)
        stale.unlink(missing_ok=True)


def ensure_downloaded(
    cache_dir: Path,
    mirrors: Sequence[str],
    checksums: Mapping[str, str],
    timeout: float = DEFAULT_TIMEOUT,
) -> tuple[dict[str, Path], int]:
    """Make sure the four verified ``.gz`` files are in ``cache_dir``.

    Returns the paths by file name and how many files this call actually downloaded
    (0 when another process finished the job while we waited for the lock).

    Raises:
        DownloadUnavailable: every mirror failed with a network error for some file.
        DataError: MD5 mismatch, or the cache directory is not writable.
    """
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(
            f"cannot create the MNIST cache directory {cache_dir}: {exc}; "
            f"set {CACHE_ENV} to a writable folder"
        ) from exc
    downloaded = 0
    with cache_lock(cache_dir):
        _remove_stale_parts(cache_dir)
        # Re-check under the lock: a parallel process may have fetched the files meanwhile.
        present = verified_cache_files(cache_dir, checksums)
        for name in DOWNLOAD_NAMES:
            if name not in present:
                _download_one(name, mirrors, checksums[name], cache_dir, timeout)
                downloaded += 1
    return {name: cache_dir / name for name in DOWNLOAD_NAMES}, downloaded
