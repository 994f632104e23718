"""Parser for the IDX format used by the official MNIST files.

Format (http://yann.lecun.com/exdb/mnist/): a 4-byte big-endian magic number
``0x00 0x00 <dtype> <ndim>``, then ``ndim`` big-endian uint32 dimension sizes,
then the payload in C order. MNIST uses dtype ``0x08`` (unsigned byte);
images have 3 dims ``(N, 28, 28)`` (magic ``0x00000803``), labels have 1 dim
``(N,)`` (magic ``0x00000801``).

Every way a file can be wrong (truncated download, HTML error page saved as
``.gz``, images and labels swapped, short payload) is turned into a
:class:`DataError` that names the file and says how to fix it, because a bare
``zlib.error`` or numpy reshape traceback deep inside a training trial tells
the user nothing.
"""

from __future__ import annotations

import gzip
import math
import os
import zlib
from pathlib import Path
from typing import Literal

import numpy as np

from aae_tune.errors import DataError

__all__ = [
    "IMAGES_MAGIC",
    "LABELS_MAGIC",
    "read_idx",
    "read_images",
    "read_labels",
    "to_float_pixels",
]

IMAGES_MAGIC = 0x00000803
LABELS_MAGIC = 0x00000801
_UBYTE = 0x08
_GZIP_MAGIC = b"\x1f\x8b"
IMAGE_SIDE = 28


def _read_bytes(path: Path) -> bytes:
    """Return the decompressed file content.

    Compression is detected from the gzip magic bytes rather than the file name,
    so a raw file that was saved with a ``.gz`` suffix (or the reverse) still works.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path} does not exist") from None
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc}") from exc
    if data[:2] != _GZIP_MAGIC:
        return data
    try:
        # One decompress call on the whole file: the fastest way with the stdlib.
        return gzip.decompress(data)
    except (EOFError, zlib.error, OSError) as exc:  # gzip.BadGzipFile is an OSError
        raise DataError(
            f"{path} is truncated or not a valid gzip file ({exc}); delete it and download again"
        ) from exc


def _kind_name(magic: int) -> str:
    if magic == IMAGES_MAGIC:
        return "that is the magic of an IDX images file"
    if magic == LABELS_MAGIC:
        return "that is the magic of an IDX labels file"
    return "not a known IDX magic number"


def read_idx(path: str | os.PathLike[str], expect: Literal["images", "labels"] | None = None) -> np.ndarray:
    """Read an IDX file (gzip or raw) into a uint8 array shaped as its header says.

    ``expect`` checks the magic number: ``"images"`` requires 0x00000803 (3 dims,
    28x28 images), ``"labels"`` requires 0x00000801. The result is a read-only view
    over the decompressed bytes (no copy); call ``.copy()`` if you need to write.

    Raises:
        DataError: naming ``path`` if the file is missing, truncated, has the wrong
            magic number, or its payload length differs from the header's dimensions.
    """
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise DataError(f"{path} is only {len(data)} bytes, too short to be an IDX file; download it again")
    magic = int.from_bytes(data[:4], "big")
    if expect is not None:
        wanted = IMAGES_MAGIC if expect == "images" else LABELS_MAGIC
        if magic != wanted:
            hint = (
                "check the images/labels file names are not swapped"
                if magic in (IMAGES_MAGIC, LABELS_MAGIC)
                else "replace it with the official MNIST file"
            )
            raise DataError(
                f"{path} is not an IDX {expect} file: magic number 0x{magic:08x} "
                f"({_kind_name(magic)}), expected 0x{wanted:08x}; {hint}"
            )
    elif data[0:2] != b"\x00\x00" or data[2] != _UBYTE or data[3] == 0:
        raise DataError(
            f"{path} is not an IDX uint8 file (magic number 0x{magic:08x}, expected 0x{IMAGES_MAGIC:08x} "
            f"for images or 0x{LABELS_MAGIC:08x} for labels); replace it with the official MNIST file"
        )
    ndim = data[3]
    header_len = 4 + 4 * ndim
    if len(data) < header_len:
        raise DataError(
            f"{path} is truncated inside its IDX header ({len(data)} bytes, header needs {header_len}); "
            "delete it and download again"
        )
    dims = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = math.prod(dims)
    actual = len(data) - header_len
    if actual != expected:
        problem = "truncated" if actual < expected else "longer than its header says"
        raise DataError(
            f"{path} is {problem}: header dims {dims} need {expected} payload bytes, "
            f"file has {actual}; delete it and download again"
        )
    if expect == "images" and dims[1:] != (IMAGE_SIDE, IMAGE_SIDE):
        raise DataError(
            f"{path} holds images of size {dims[1:]}, MNIST images are {IMAGE_SIDE}x{IMAGE_SIDE}; "
            "replace it with the official MNIST file"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header_len).reshape(dims)


def read_images(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX images file: uint8 array of shape (N, 28, 28)."""
    return read_idx(path, expect="images")


def read_labels(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX labels file: uint8 array of shape (N,)."""
    return read_idx(path, expect="labels")


def to_float_pixels(images: np.ndarray) -> np.ndarray:
    """Flatten uint8 images to (N, 784) float32 in [0, 1] (= uint8 / 255).

    Shared by every data source so the real files and the embedded subset use
    exactly the same pixel convention. One ``np.divide`` with a float32 output
    avoids a float64 intermediate (about 380 MB for the 60K training images).
    """
    flat = images.reshape(images.shape[0], -1)
    return np.divide(flat, np.float32(255.0), dtype=np.float32)
