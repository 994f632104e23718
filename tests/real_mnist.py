"""Where the tests find real MNIST: the product's own order, with this repository's ../shared copy as one source.

Order (first hit wins), resolved once per session before the first test runs (tests/conftest.py):

1. ``AAE_TUNE_DATA_DIR`` -- an explicit choice, so, as in the product, a folder lacking a file is an error;
2. ``../shared/data/mnist`` beside the checkout (CI has it; the product itself never looks there);
3. the user cache (``AAE_TUNE_CACHE_DIR``, ``$XDG_CACHE_HOME/aae_tune/mnist`` or ``~/.cache/aae_tune/mnist``),
   checked by the product's own code against the published MD5s;
4. a download into that cache by the product's downloader (published MD5s, file lock).

The result is pinned as ``AAE_TUNE_DATA_DIR`` for the session, so every load -- in the test process, in Ray
workers, in the commands the system tests start -- reads these very files. When nothing is found it points at a
folder that does not exist: a load nobody expected fails loudly (and is reported as a skip) instead of quietly
training on the 5,000-image embedded subset, whose figures mean something else.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from aae_tune.data import download as dl
from aae_tune.data.mnist import DATA_ENV, MNIST_FILES, find_mnist_files
from aae_tune.errors import DataError

GZ_NAMES = tuple(f"{name}.gz" for name in MNIST_FILES.values())
MD5SUMS = "MD5SUMS"  # tests/unit/test_data.py checks copies against it (the shared train-images was recompressed)
# Per connect / read. A firewall that drops packets then costs 2 mirrors x 20 s once per session, not 2 minutes.
DOWNLOAD_TIMEOUT = 20.0
HOW_TO_PROVIDE = (f"set {DATA_ENV} to a folder with the four official files, or put them in the user cache "
                  f"({dl.CACHE_ENV} or ~/.cache/aae_tune/mnist)")


@dataclass(frozen=True)
class RealMnist:
    """Where the session's real MNIST is, or why there is none."""

    folder: Path | None  # the four .gz files and an MD5SUMS of them
    origin: str  # where the files came from, or why none were found (short: it ends every skip line)
    broken: bool = False  # a wrong explicit choice or wrong data: an error to fix, not a machine without data
    detail: str = ""  # the download's own error, printed once at the end of the run rather than per test

    @property
    def skip_reason(self) -> str:
        return f"real MNIST not available ({self.origin}); {HOW_TO_PROVIDE}"

    def summary(self) -> str:
        """One line for the end of the run: where this session's MNIST came from, or why there was none."""
        where = f"from {self.origin}" if self.folder else f"not available: {self.origin}"
        return f"real MNIST {where}" + (f" -- {self.detail}" if self.detail else "")


def resolve(shared: Path, staging: Path, download: bool) -> RealMnist:
    """Real MNIST in the order above; ``staging`` (an empty folder) receives copies where a folder needs them."""
    explicit = os.environ.get(DATA_ENV)
    if explicit:
        return _explicit(Path(explicit).expanduser(), staging)
    if not find_mnist_files(shared)[1]:
        return RealMnist(_test_folder(shared, staging), f"{shared} (this repository's shared data)")
    cache = dl.default_cache_dir()
    sums = dl.resolve_checksums()
    cached = dl.verified_cache_files(cache, sums) if cache.is_dir() else {}
    if len(cached) == len(GZ_NAMES):
        return RealMnist(_test_folder(cache, staging), f"the user cache {cache}")
    why = f"{DATA_ENV} unset, no {shared}, the cache {cache} {_cache_problem(cache, cached)}"
    if not download:
        return RealMnist(None, f"{why} (no download tried: no selected test reads MNIST)")
    return _download(cache, sums, staging, why)


def _cache_problem(cache: Path, cached: dict[str, Path]) -> str:
    # A file that is there but not the published one (e.g. a recompressed copy) is ignored by the product too.
    absent = [name for name in GZ_NAMES if name not in cached and not (cache / name).is_file()]
    other = [name for name in GZ_NAMES if name not in cached and (cache / name).is_file()]
    if len(absent) == len(GZ_NAMES):
        return "is empty"
    return " and ".join(problem for problem in (
        f"lacks {', '.join(absent)}" if absent else "",
        f"holds {', '.join(other)} with an MD5 other than the published one" if other else "") if problem)


def _explicit(folder: Path, staging: Path) -> RealMnist:
    missing = find_mnist_files(folder)[1] if folder.is_dir() else ["the folder itself"]
    if missing:
        return RealMnist(None, f"{DATA_ENV}={folder} lacks {', '.join(missing)}", broken=True)
    return RealMnist(_test_folder(folder, staging), f"{folder} (from {DATA_ENV})")


def _download(cache: Path, sums: dict[str, str], staging: Path, why: str) -> RealMnist:
    try:
        dl.ensure_downloaded(cache, dl.resolve_mirrors(), sums, timeout=DOWNLOAD_TIMEOUT)
    except dl.DownloadUnavailable as exc:  # offline: the machine has no MNIST, which is no test failure
        return RealMnist(None, f"{why}, the download failed", detail=str(exc))
    except DataError as exc:  # a checksum mismatch or an unwritable cache: the product refuses, so do the tests
        return RealMnist(None, f"the download into {cache} was refused: {exc}", broken=True)
    return RealMnist(_test_folder(cache, staging), f"a download into the user cache {cache}")


def _test_folder(folder: Path, staging: Path) -> Path:
    """``folder`` itself if it holds the four .gz files and their MD5SUMS, else copies of them in ``staging``.

    The copies also keep the tests away from the user's own cache, which tests would otherwise read in place."""
    if all((folder / name).is_file() for name in (*GZ_NAMES, MD5SUMS)):
        return folder
    found, _ = find_mnist_files(folder)
    staging.mkdir(parents=True, exist_ok=True)
    lines = []
    for role, name in MNIST_FILES.items():
        target = staging / f"{name}.gz"
        _copy_gzipped(found[role], target)
        lines.append(f"{hashlib.md5(target.read_bytes(), usedforsecurity=False).hexdigest()}  {target.name}")
    (staging / MD5SUMS).write_text("\n".join(lines) + "\n")
    return staging


def _copy_gzipped(source: Path, target: Path) -> None:
    """The tests copy and read ``*.gz`` names; the product also accepts raw files, so compress those."""
    if source.name.endswith(".gz"):
        shutil.copyfile(source, target)
        return
    with open(source, "rb") as raw, gzip.GzipFile(target, "wb", mtime=0) as packed:
        shutil.copyfileobj(raw, packed)


def pin(real: RealMnist, sentinel: Path) -> None:
    """Every load this session reads the found files; with none, a folder that does not exist (never the 5K).

    A broken explicit choice stays as it is: the product's own error then names the user's folder."""
    if real.folder is not None:
        os.environ[DATA_ENV] = str(real.folder)
    elif not os.environ.get(DATA_ENV):
        os.environ[DATA_ENV] = str(sentinel)
