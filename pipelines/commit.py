"""Staging and committing a run's output through Beam's FileSystems.

The pipeline writes everything under ``DIR/_staging/<run_id>/``, which no table glob reaches
(``task_completed/**`` does not look there). Only when the pipeline has succeeded and the run's
checks pass are the staged files moved into the tables and the manifest written, last; a run
that fails leaves the tables as they were.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from apache_beam.io.filesystems import FileSystems

__all__ = ["RunError", "StagedRun", "read_json", "write_json"]


class RunError(Exception):
    """What is wrong with the run itself (SPEC 3): the run fails and commits nothing."""


def read_json(path: str) -> Any:
    with FileSystems.open(path) as handle:
        return json.loads(handle.read().decode("utf-8"))


def write_json(path: str, data: Any) -> None:
    _ensure_parent(path)
    with FileSystems.create(path) as handle:
        handle.write(json.dumps(data, indent=2, sort_keys=False).encode("utf-8"))


def _ensure_parent(path: str) -> None:
    parent, _ = FileSystems.split(path)
    if parent and not FileSystems.exists(parent):
        try:
            FileSystems.mkdirs(parent)
        except OSError:  # made meanwhile by another writer, or a store without folders
            pass


@dataclass(frozen=True)
class StagedRun:
    """Where one run stages its files, and how they are committed or thrown away."""

    output: str
    run_id: str

    @property
    def root(self) -> str:
        return FileSystems.join(self.output, "_staging", self.run_id)

    @property
    def counts_path(self) -> str:
        return FileSystems.join(self.root, "_counts.json")

    @property
    def manifest_path(self) -> str:
        return FileSystems.join(self.output, "_runs", f"{self.run_id}.json")

    @classmethod
    def begin(cls, output: str, run_id: str) -> StagedRun:
        """Check the output is writable and the run id is new; clear leftovers of a failed try."""
        staged = cls(output, run_id)
        if FileSystems.exists(staged.manifest_path):
            raise RunError(f"run {run_id} is already committed ({staged.manifest_path}); use another --run-id")
        try:
            if FileSystems.exists(staged.root):
                FileSystems.delete([staged.root])
            write_json(FileSystems.join(staged.root, "_started.json"), {"run_id": run_id})
        except Exception as exc:  # any filesystem's error: the output cannot be written
            raise RunError(f"cannot write to output {output}: {exc}") from exc
        return staged

    def abort(self) -> None:
        """Throw the staged files away; the tables stay as they were."""
        if FileSystems.exists(self.root):
            FileSystems.delete([self.root])

    def commit(self, staged_files: list[str], manifest: dict[str, Any]) -> str:
        """Move the staged files into the tables, then write the manifest; returns its path."""
        sources = sorted(staged_files)
        prefix = self.root.rstrip("/") + "/"
        destinations = [FileSystems.join(self.output, path[len(prefix):]) for path in sources]
        for destination in destinations:
            _ensure_parent(destination)
        if sources:
            FileSystems.rename(sources, destinations)
        write_json(self.manifest_path, manifest)
        self.abort()
        return self.manifest_path
