"""Files of a search in its storage path, local or in cloud storage (``s3://``, ``gs://``, any URI pyarrow
opens), through the same ``pyarrow.fs`` filesystems Ray Tune uses for its checkpoints. An S3-compatible server
(MinIO, Ceph, moto) is reached with the usual ``AWS_ENDPOINT_URL`` and credentials variables."""

from __future__ import annotations

from typing import Any


def is_uri(path: str) -> bool:
    return "://" in path


def _filesystem(location: str) -> tuple[Any, str]:
    from pyarrow import fs

    return fs.FileSystem.from_uri(location)


def read_bytes(location: str, limit: int | None = None) -> bytes | None:
    """The bytes of the file at ``location`` (a local absolute path or a URI); None if there is none. With
    ``limit``, a larger file raises ``ValueError`` before it is read: what sits in a storage path is untrusted."""
    filesystem, path = _filesystem(location)
    return read_bytes_on(filesystem, path, limit, name=location)


def read_bytes_on(filesystem: Any, path: str, limit: int | None = None, name: str | None = None) -> bytes | None:
    """``read_bytes`` on a filesystem already in hand (a Tune checkpoint's or trial's ``pyarrow.fs``)."""
    from pyarrow import fs

    info = filesystem.get_file_info(path)
    if info.type != fs.FileType.File:
        return None
    if limit is not None and info.size is not None and info.size > limit:
        raise ValueError(f"{name or path} holds {info.size} bytes, more than the {limit} such a file can hold")
    with filesystem.open_input_stream(path) as stream:
        # never more than limit + 1 bytes, even from a file that grew since its size was read
        return stream.read() if limit is None else stream.read(limit + 1)


def read_text(location: str, limit: int | None = None) -> str | None:
    """The text of the file at ``location``; None if there is none."""
    data = read_bytes(location, limit)
    return None if data is None else data.decode()


def write_bytes(location: str, data: bytes) -> None:
    """Write ``data`` to ``location``, creating its folders (object stores have none to create). A local file is
    written beside its final name and renamed over it, so a reader never sees half of it and a failed write (a full
    disk) leaves the previous version in place; an object store's PUT is all-or-nothing by itself."""
    import os

    filesystem, path = _filesystem(location)
    filesystem.create_dir(path.rsplit("/", 1)[0], recursive=True)
    if is_uri(location):
        with filesystem.open_output_stream(path) as stream:
            stream.write(data)
        return
    temp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(temp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, path)
    finally:
        if os.path.exists(temp):
            os.remove(temp)


def write_text(location: str, text: str) -> None:
    write_bytes(location, text.encode())


def list_files(location: str) -> dict[str, int]:
    """The regular files directly in the folder ``location`` (name -> size); empty if there is no such folder."""
    from pyarrow import fs

    filesystem, path = _filesystem(location)
    selector = fs.FileSelector(path, allow_not_found=True, recursive=False)
    return {info.base_name: info.size for info in filesystem.get_file_info(selector) if info.type == fs.FileType.File}


def list_folders(location: str) -> list[str]:
    """The names of the folders directly in ``location``."""
    from pyarrow import fs

    filesystem, path = _filesystem(location)
    selector = fs.FileSelector(path, allow_not_found=True, recursive=False)
    return [info.base_name for info in filesystem.get_file_info(selector) if info.type == fs.FileType.Directory]


def delete_file(location: str) -> None:
    """Remove a file; a file that is already gone is not an error."""
    from pyarrow import fs

    filesystem, path = _filesystem(location)
    if filesystem.get_file_info(path).type == fs.FileType.File:
        filesystem.delete_file(path)


def check_storage_uri(uri: str, problems: list[str]) -> None:
    """The URI's filesystem answers and its bucket exists, with the credentials and endpoint of this process."""
    from pyarrow import ArrowException, fs

    try:
        filesystem, path = _filesystem(uri)
        bucket = path.split("/", 1)[0]
        if filesystem.get_file_info(bucket).type != fs.FileType.Directory:
            problems.append(f"--storage-path {uri}: bucket {bucket!r} does not exist; create it first")
    except (ArrowException, OSError, ValueError) as exc:
        problems.append(f"--storage-path {uri}: cannot reach it ({exc}); check the URI, the credentials and, for an "
                        "S3-compatible server, AWS_ENDPOINT_URL")
