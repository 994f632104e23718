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

import math
import os
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Literal

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


# Largest payload an IDX header may declare. MNIST's training images are 47 MB and the largest IDX sets in use
# (EMNIST's) under 1 GB; 2 GiB is far above those, and a header claiming more is corrupt or hostile: refused
# before a byte of payload is read, so a tiny file cannot make the reader allocate or decompress more.
MAX_PAYLOAD_BYTES = 2**31
_IN_CHUNK = 16 << 20  # compressed bytes handed to zlib at a time: all of MNIST's largest file, one zlib call


class _GunzipStream:
    """The decompressed content of a gzip file (one or more members), produced only as far as it is read: zlib
    inflates with an output cap, so a small file that would expand to gigabytes costs what was asked for."""

    def __init__(self, compressed: BinaryIO, size: int):
        self.compressed = compressed
        # a read reserves all it asks for: no more than the file holds (small files, bombs), at most _IN_CHUNK
        self.chunk = min(_IN_CHUNK, max(size, 1 << 16))
        self.inflater = zlib.decompressobj(wbits=31)  # 31: gzip framing; zlib checks each member's CRC and length
        self.pending = b""  # compressed input not yet inflated

    def read(self, n: int) -> bytes:
        parts, wanted = [], n
        while wanted > 0 and self._has_input():
            part = self.inflater.decompress(self.pending, wanted)
            self.pending = self.inflater.unconsumed_tail
            parts.append(part)
            wanted -= len(part)
        return b"".join(parts)

    def _has_input(self) -> bool:
        """Whether compressed input is left to inflate; EOFError if the file ends inside a member."""
        if self.inflater.eof:
            return self._next_member()
        if not self.pending:
            self.pending = self.compressed.read(self.chunk)
            if not self.pending:
                raise EOFError("compressed data ended before the end-of-stream marker was reached")
        return True

    def _next_member(self) -> bool:
        """After a member's end, start the next one, skipping zero padding (as gzip.decompress does); False at EOF."""
        rest = self.inflater.unused_data.lstrip(b"\x00")
        while not rest:
            chunk = self.compressed.read(self.chunk)
            if not chunk:
                return False
            rest = chunk.lstrip(b"\x00")
        self.inflater, self.pending = zlib.decompressobj(wbits=31), rest
        return True


@contextmanager
def _open_content(path: Path) -> Iterator[tuple[BinaryIO | _GunzipStream, int | None]]:
    """The file's content as a stream, decompressed on the fly if it is gzip, and the size of a raw file (None for
    gzip: its decompressed size is only known by decompressing, which goes no further than the header allows).

    Compression is detected from the gzip magic bytes rather than the file name, so a raw file that was saved with
    a ``.gz`` suffix (or the reverse) still works."""
    try:
        f = open(path, "rb")  # noqa: SIM115 - closed by the with below
    except FileNotFoundError:
        raise DataError(f"{path} does not exist") from None
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc}") from exc
    with f:
        size = os.fstat(f.fileno()).st_size
        if f.peek(2)[:2] == _GZIP_MAGIC:
            yield _GunzipStream(f, size), None
        else:
            yield f, size


def _read(stream: BinaryIO | _GunzipStream, n: int, path: Path) -> bytes:
    """Up to ``n`` bytes of the (decompressed) content, fewer only at its end."""
    try:
        return stream.read(n)
    except (EOFError, zlib.error) as exc:
        raise DataError(
            f"{path} is truncated or not a valid gzip file ({exc}); delete it and download again"
        ) from exc
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc}") from exc


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
    with _open_content(path) as (stream, raw_size):
        head = _read(stream, 4, path)
        magic = _check_magic(head, path, expect)
        ndim = head[3]
        header_len = 4 + 4 * ndim
        dims_bytes = _read(stream, 4 * ndim, path)
        if len(dims_bytes) < 4 * ndim:
            raise DataError(
                f"{path} is truncated inside its IDX header ({4 + len(dims_bytes)} bytes, header needs "
                f"{header_len}); delete it and download again"
            )
        dims = tuple(int.from_bytes(dims_bytes[4 * i : 4 + 4 * i], "big") for i in range(ndim))
        expected = math.prod(dims)
        if expected > MAX_PAYLOAD_BYTES:
            raise DataError(
                f"{path} has an IDX header (magic 0x{magic:08x}) declaring dims {dims}, {expected} payload bytes: "
                f"more than the {MAX_PAYLOAD_BYTES} accepted; the file is corrupt, replace it with the official one"
            )
        # a raw file is read no further than its size: file.read(n) would reserve all n bytes the header claims
        payload = _read(stream, expected if raw_size is None else min(expected, raw_size), path)
        extra = _read(stream, 1, path)  # for gzip also reaches the end: a bad CRC or length is reported here
    _check_payload_size(path, dims, len(payload), len(extra), raw_size, header_len)
    if expect == "images" and dims[1:] != (IMAGE_SIDE, IMAGE_SIDE):
        raise DataError(
            f"{path} holds images of size {dims[1:]}, MNIST images are {IMAGE_SIDE}x{IMAGE_SIDE}; "
            "replace it with the official MNIST file"
        )
    array = np.frombuffer(payload, dtype=np.uint8).reshape(dims)
    array.flags.writeable = False  # one reader's array is shared, e.g. by every trial through Ray's object store
    return array


def _check_magic(head: bytes, path: Path, expect: Literal["images", "labels"] | None) -> int:
    """The magic number of a header's first 4 bytes; DataError if it is not the IDX kind expected."""
    if len(head) < 4:
        raise DataError(f"{path} is only {len(head)} bytes, too short to be an IDX file; download it again")
    magic = int.from_bytes(head[:4], "big")
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
    elif head[0:2] != b"\x00\x00" or head[2] != _UBYTE or head[3] == 0:
        raise DataError(
            f"{path} is not an IDX uint8 file (magic number 0x{magic:08x}, expected 0x{IMAGES_MAGIC:08x} "
            f"for images or 0x{LABELS_MAGIC:08x} for labels); replace it with the official MNIST file"
        )
    return magic


def _check_payload_size(path: Path, dims: tuple[int, ...], got: int, extra: int, raw_size: int | None,
                        header_len: int) -> None:
    """DataError unless the payload is exactly what the header's dims need. A gzip file is decompressed no
    further than one byte past that, so its excess is reported as 'more', not counted."""
    expected = math.prod(dims)
    if got == expected and not extra:
        return
    if got < expected:
        problem, holds = "truncated", f"file has {got}"
    elif raw_size is not None:
        problem, holds = "longer than its header says", f"file has {raw_size - header_len}"
    else:
        problem, holds = "longer than its header says", f"file holds more (decompression stopped at {got + extra})"
    raise DataError(
        f"{path} is {problem}: header dims {dims} need {expected} payload bytes, {holds}; delete it and download again"
    )


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
