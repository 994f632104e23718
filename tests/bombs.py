"""Small hostile inputs that expand enormously, shared by the unit and system tests of bounded parsing (issue 24).

Each costs kilobytes on disk; read naively, the YAML one expands to 9**9 values and the gzip one to hundreds of MB.
"""

from __future__ import annotations

import shutil
import struct
import zlib
from pathlib import Path

IDX_IMAGES_MAGIC = 0x00000803


def billion_laughs(levels: int = 9, width: int = 9, prefix: str = "lol") -> list[str]:
    """YAML lines ``<prefix>0: &<prefix>0 [lol]``, then each level a list of ``width`` aliases of the one below:
    the last anchor, ``*<prefix><levels>``, expands to width**levels strings."""
    lines = [f'{prefix}0: &{prefix}0 ["lol"]']
    for i in range(1, levels + 1):
        lines.append(f"{prefix}{i}: &{prefix}{i} [" + ", ".join([f"*{prefix}{i - 1}"] * width) + "]")
    return lines


def billion_laughs_space() -> str:
    """A search-space file (about 600 bytes) whose ``experiment.net.hidden`` is the billion-laughs list."""
    return "name: laughs\n" + "\n".join(billion_laughs()) + "\nexperiment:\n  net:\n    hidden: *lol9\n"


def billion_laughs_flow() -> str:
    """The same bomb as one flow mapping, for a ``--set key=value``."""
    return "{" + ", ".join(billion_laughs()) + "}"


def write_gzip_bomb(path: Path, zero_mib: int = 300, images: int = 10) -> Path:
    """A gzip file whose content is an IDX images header for ``images`` 28x28 images, followed by ``zero_mib`` MiB of
    zeros: about 1.3 MB on disk for the default 300 MiB. Compressed in a stream, so making it needs no such memory."""
    compressor = zlib.compressobj(1, zlib.DEFLATED, 31)  # level 1: 3x faster than 9 on zeros; 31: gzip framing
    zeros = bytes(1 << 20)
    with open(path, "wb") as f:
        f.write(compressor.compress(struct.pack(">IIII", IDX_IMAGES_MAGIC, images, 28, 28)))
        for _ in range(zero_mib):
            f.write(compressor.compress(zeros))
        f.write(compressor.flush())
    return path


def mnist_with_gzip_bomb(folder: Path, mnist_dir: Path) -> Path:
    """The four real MNIST files in ``folder``, except the training images: a gzip bomb under the same name."""
    folder.mkdir(parents=True, exist_ok=True)
    for f in mnist_dir.glob("*-ubyte.gz"):
        shutil.copyfile(f, folder / f.name)
    write_gzip_bomb(folder / "train-images-idx3-ubyte.gz")
    return folder
