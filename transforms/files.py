"""Small file helpers over Beam's FileSystems, shared by the transforms and the commit."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

__all__ = [
    "DamagedFile",
    "created",
    "delete",
    "ensure_parent",
    "exists",
    "list_files",
    "read_json",
    "read_parquet",
    "write_json",
    "write_parquet",
]

_RAW = CompressionTypes.UNCOMPRESSED  # our files are never compressed as a whole; never guess by name


class DamagedFile(Exception):
    """A file of the output that cannot be read as what it should be; the message names it."""


def list_files(pattern: str) -> list[str]:
    """Paths matching a glob, sorted; none when the folder does not exist.

    A listing error is raised, never taken for an empty folder: on an object store an empty
    answer would make the index or the ledger look empty.
    """
    try:
        return sorted(m.path for m in FileSystems.match([pattern])[0].metadata_list)
    except Exception as exc:  # BeamIOError, whatever the filesystem
        raise OSError(f"cannot list {pattern}: {exc}") from exc


def exists(path: str) -> bool:
    return bool(FileSystems.exists(path))


def ensure_parent(path: str) -> None:
    """Make the folder of ``path`` where the filesystem has folders (for a rename: ``create``
    makes its own, locally, and an object store has none, so a write needs no call of this)."""
    parent, _ = FileSystems.split(path)
    if parent and not FileSystems.exists(parent):
        try:
            FileSystems.mkdirs(parent)
        except OSError:  # made meanwhile, or a store without folders
            pass


def delete(paths: list[str]) -> None:
    """Delete what exists of ``paths`` (folders recursively).

    On an object store (gs://, s3://) a folder is no object: ``exists`` is false for it and
    deleting its name deletes nothing, so the files under it are found by listing.
    """
    existing = []
    for path in paths:
        existing.extend([path] if FileSystems.exists(path) else list_files(FileSystems.join(path, "**")))
    if existing:
        FileSystems.delete(existing)


def read_json(path: str) -> Any:
    """A JSON file of the output; ``DamagedFile`` naming it when it is not whole JSON."""
    with FileSystems.open(path, compression_type=_RAW) as handle:
        data = handle.read()
    try:
        return json.loads(data.decode("utf-8"))
    except ValueError as exc:
        raise DamagedFile(f"{path} is damaged (not whole JSON: {exc})") from None


def write_json(path: str, data: Any) -> None:
    with FileSystems.create(path, compression_type=_RAW) as handle:
        handle.write(json.dumps(data, indent=1).encode("utf-8"))


def read_parquet(path: str, columns: list[str] | None = None) -> pa.Table:
    """A Parquet file of the output; ``DamagedFile`` naming it when it is not readable Parquet."""
    with FileSystems.open(path, compression_type=_RAW) as handle:
        try:
            return pq.read_table(handle, columns=columns)
        except (pa.ArrowException, OSError) as exc:
            raise DamagedFile(f"{path} is damaged (not a readable Parquet file: {exc})") from None


@contextmanager
def created(path: str) -> Iterator[pa.NativeFile]:
    """A new file, written through a 1 MiB Arrow buffer.

    Parquet and Arrow IPC writers write a piece per buffer or page, and each piece written
    straight to Beam's file object is a Python call: buffered, a spill file's writes took half
    the time and a partition's Parquet file 10% less."""
    with FileSystems.create(path, compression_type=_RAW) as handle, \
            pa.output_stream(handle, buffer_size=1 << 20) as stream:
        yield stream


def write_parquet(table: pa.Table, path: str, repeating: Sequence[str]) -> None:
    """Write ``table`` as zstd Parquet, dictionary-encoding only the ``repeating`` columns."""
    with created(path) as stream:
        pq.write_table(table, stream, compression="zstd", use_dictionary=list(repeating))
