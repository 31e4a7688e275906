"""``memfs://``: a Beam FileSystem with the semantics of an object store, kept in a local folder.

It behaves like ``gs://`` and ``s3://`` do, not like a local disk, so that a run against it
proves the pipeline only relies on what every Beam filesystem offers:

* keys are flat: there are no folders, ``mkdirs`` does nothing, ``exists`` is true for objects
  only (never for a "folder" prefix), ``delete`` removes objects, or every object under a
  prefix that ends with ``/`` (as ``GCSFileSystem``/``S3FileSystem`` do);
* an object appears only when its writer is closed; ``rename`` is copy-then-delete.

Objects live as files of one flat folder, ``$MEMFS_ROOT/<quoted bucket/key>``. The folder is
taken from the environment on every call, so worker processes that inherit the environment
(multi-process DirectRunner, LOOPBACK) see the same store. Beam finds the class by its scheme
among ``FileSystem`` subclasses once this module is imported: in the driver by the test, on
workers through ``--beam_plugins=tests.memfs.MemFileSystem``.
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from typing import BinaryIO
from urllib.parse import quote, unquote

from apache_beam.io.filesystem import (
    BeamIOError,
    CompressedFile,
    CompressionTypes,
    FileMetadata,
    FileSystem,
)

__all__ = ["MemFileSystem", "store_root"]

PREFIX = "memfs://"


def store_root() -> str:
    root = os.environ.get("MEMFS_ROOT") or os.path.join(tempfile.gettempdir(), "beam-memfs")
    os.makedirs(root, exist_ok=True)
    return root


def _object_file(path: str) -> str:
    if not path.startswith(PREFIX):
        raise ValueError(f"not a {PREFIX} path: {path!r}")
    name = quote(path[len(PREFIX):], safe="")
    if len(name) > 250:
        raise ValueError(f"key too long for this test store: {path!r}")
    return os.path.join(store_root(), name)


class _ObjectWriter(io.FileIO):
    """Writes to a hidden temporary file; the object appears, whole, on close."""

    def __init__(self, final: str) -> None:
        self._final = final
        self._partial = f"{final}.{uuid.uuid4().hex}.partial"
        super().__init__(self._partial, "wb")

    def close(self) -> None:
        if not self.closed:
            super().close()
            os.replace(self._partial, self._final)


class MemFileSystem(FileSystem):
    """The ``memfs://`` scheme (see the module docstring)."""

    @classmethod
    def scheme(cls) -> str:
        return "memfs"

    def join(self, basepath: str, *paths: str) -> str:
        if not basepath.startswith(PREFIX):
            raise ValueError(f"not a {PREFIX} path: {basepath!r}")
        path = basepath
        for part in paths:
            path = path.rstrip("/") + "/" + part.lstrip("/")
        return path

    def split(self, path: str) -> tuple[str, str]:
        path = path.strip()
        if not path.startswith(PREFIX):
            raise ValueError(f"not a {PREFIX} path: {path!r}")
        last = path.rfind("/")
        if last < len(PREFIX):
            return path, ""
        return path[:last], path[last + 1:]

    def mkdirs(self, path: str) -> None:
        """Object stores have no folders."""

    def has_dirs(self) -> bool:
        return False

    def _objects(self) -> Iterator[tuple[str, str]]:
        root = store_root()
        for name in os.listdir(root):
            if not name.endswith(".partial"):
                yield PREFIX + unquote(name), os.path.join(root, name)

    def _list(self, dir_or_prefix: str) -> Iterator[FileMetadata]:
        for path, local in self._objects():
            if path.startswith(dir_or_prefix):
                stat = os.stat(local)
                yield FileMetadata(path, stat.st_size, stat.st_mtime)

    def create(self, path: str, mime_type: str = "application/octet-stream",
               compression_type: str = CompressionTypes.AUTO) -> BinaryIO:
        raw = _ObjectWriter(_object_file(path))
        compression_type = FileSystem._get_compression_type(path, compression_type)
        if compression_type == CompressionTypes.UNCOMPRESSED:
            return raw  # type: ignore[return-value]
        return CompressedFile(raw, compression_type=compression_type)  # type: ignore[return-value]

    def open(self, path: str, mime_type: str = "application/octet-stream",
             compression_type: str = CompressionTypes.AUTO) -> BinaryIO:
        local = _object_file(path)
        if not os.path.isfile(local):
            raise BeamIOError("Open operation failed", {path: FileNotFoundError(path)})
        raw = open(local, "rb")
        compression_type = FileSystem._get_compression_type(path, compression_type)
        if compression_type == CompressionTypes.UNCOMPRESSED:
            return raw
        return CompressedFile(raw, compression_type=compression_type)  # type: ignore[return-value]

    def copy(self, source_file_names: list[str], destination_file_names: list[str]) -> None:
        assert len(source_file_names) == len(destination_file_names)
        errors = {}
        for source, destination in zip(source_file_names, destination_file_names):
            try:
                final = _object_file(destination)
                partial = f"{final}.{uuid.uuid4().hex}.partial"
                shutil.copyfile(_object_file(source), partial)
                os.replace(partial, final)
            except Exception as exc:  # noqa: BLE001 - reported as Beam does
                errors[(source, destination)] = exc
        if errors:
            raise BeamIOError("Copy operation failed", errors)

    def rename(self, source_file_names: list[str], destination_file_names: list[str]) -> None:
        self.copy(source_file_names, destination_file_names)
        self.delete(source_file_names)

    def exists(self, path: str) -> bool:
        return os.path.isfile(_object_file(path))

    def size(self, path: str) -> int:
        return self.metadata(path).size_in_bytes

    def last_updated(self, path: str) -> float:
        return self.metadata(path).last_updated_in_seconds

    def checksum(self, path: str) -> str:
        return str(self.size(path))

    def metadata(self, path: str) -> FileMetadata:
        try:
            stat = os.stat(_object_file(path))
        except OSError as exc:
            raise BeamIOError("Metadata operation failed", {path: exc}) from exc
        return FileMetadata(path, stat.st_size, stat.st_mtime)

    def delete(self, paths: list[str]) -> None:
        """Objects by exact key; every object under a prefix ending with ``/``; a missing key is
        not an error (what ``GCSFileSystem.delete`` does)."""
        errors = {}
        for path in paths:
            targets = [p for p, _ in self._objects() if p.startswith(path)] if path.endswith("/") else [path]
            for target in targets:
                try:
                    os.remove(_object_file(target))
                except FileNotFoundError:
                    pass
                except OSError as exc:
                    errors[target] = exc
        if errors:
            raise BeamIOError("Delete operation failed", errors)
