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


def read_text(location: str) -> str | None:
    """The text of the file at ``location`` (a local absolute path or a URI); None if there is none."""
    from pyarrow import fs

    filesystem, path = _filesystem(location)
    if filesystem.get_file_info(path).type != fs.FileType.File:
        return None
    with filesystem.open_input_stream(path) as stream:
        return stream.read().decode()


def write_text(location: str, text: str) -> None:
    """Write ``text`` to ``location``, creating its folders (object stores have none to create)."""
    filesystem, path = _filesystem(location)
    filesystem.create_dir(path.rsplit("/", 1)[0], recursive=True)
    with filesystem.open_output_stream(path) as stream:
        stream.write(text.encode())


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
