"""Staging, the commit journal, crash recovery and the ledger of ingested files.

A run writes every new file under ``DIR/_staging/<run_id>/``, which no table glob reaches.
When the pipeline has succeeded and the run's checks pass, the driver writes one journal,
``DIR/_commits/<run_id>.json``: the files to move into the tables, the files they retire, and
the manifest. Writing the journal whole is the commit point. Applying it is idempotent (moves
of files that are still staged, deletes of files that still exist, then the manifest), so
after a crash at any point the next run either finishes the commit (journal readable) or
rolls it back (no journal, or a torn one: the staging folder is thrown away). Every step goes
through Beam's FileSystems, so the same holds on gs:// and s3://.

The ledger (``DIR/_ledger/``) lists every ingested file with its content checksum and the
partitions its rows went to: it makes files exactly-once, and tells a reprocessed file's
earlier rows where to be found.
"""

from __future__ import annotations

import hashlib
import os
import signal
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from transforms.files import delete, ensure_parent, list_files, read_json, write_json

__all__ = [
    "Journal",
    "Ledger",
    "LedgerEntry",
    "RunError",
    "StagedRun",
    "file_checksum",
    "read_json",
    "recover",
    "write_json",
]

# Fault injection for the crash tests: SIGKILL the process after this many commit steps.
_CRASH_ENV = "THROUGHPUT_CRASH_AFTER_COMMIT_STEPS"


class RunError(Exception):
    """What is wrong with the run itself (SPEC 3): the run fails and commits nothing."""


def file_checksum(path: str) -> str:
    """SHA-256 of a file's bytes as stored (compressed files are hashed compressed)."""
    digest = hashlib.sha256()
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
        while block := handle.read(8 << 20):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class StagedRun:
    """Where one run stages its files."""

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
        return manifest_path(self.output, self.run_id)

    @classmethod
    def begin(cls, output: str, run_id: str) -> StagedRun:
        """Check the output is writable and the run id is new; clear leftovers of a failed try."""
        staged = cls(output, run_id)
        if FileSystems.exists(staged.manifest_path):
            raise RunError(f"run {run_id} is already committed ({staged.manifest_path}); use another --run-id")
        try:
            delete([staged.root])
            write_json(FileSystems.join(staged.root, "_started.json"), {"run_id": run_id})
        except Exception as exc:  # any filesystem's error: the output cannot be written
            raise RunError(f"cannot write to output {output}: {exc}") from exc
        return staged

    def abort(self) -> None:
        """Throw the staged files away; the tables stay as they were."""
        delete([self.root])

    def final_path(self, staged_path: str) -> str:
        prefix = self.root.rstrip("/") + "/"
        if not staged_path.startswith(prefix):
            raise ValueError(f"{staged_path} is not staged under {self.root}")
        return FileSystems.join(self.output, staged_path[len(prefix):])


def manifest_path(output: str, run_id: str) -> str:
    return FileSystems.join(output, "_runs", f"{run_id}.json")


@dataclass
class Journal:
    """One run's commit: moves into the tables, files retired, and the manifest written last."""

    output: str
    run_id: str
    moves: list[tuple[str, str]] = field(default_factory=list)
    deletes: list[str] = field(default_factory=list)
    manifest: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of_staged(cls, staging: StagedRun, counts: dict[str, Any], manifest: dict[str, Any]) -> Journal:
        """The commit of what a pipeline staged and retired, as its counts report them."""
        moves = [(path, staging.final_path(path)) for path in sorted(counts.get("staged_files", []))]
        return cls(staging.output, staging.run_id, moves, sorted(set(counts.get("retired_files", []))), manifest)

    @property
    def path(self) -> str:
        return FileSystems.join(self.output, "_commits", f"{self.run_id}.json")

    def commit(self) -> str:
        """Write the journal (the commit point), then apply it; returns the manifest's path."""
        steps = _CrashCounter()
        steps.tick()
        write_json(self.path, {"run_id": self.run_id, "moves": self.moves, "deletes": self.deletes,
                               "manifest": self.manifest})
        steps.tick()
        return self.apply(steps)

    def apply(self, steps: _CrashCounter | None = None) -> str:
        """Finish the commit; safe to repeat after a crash at any point."""
        steps = steps or _CrashCounter(disabled=True)
        for source, destination in self.moves:
            if FileSystems.exists(source):
                ensure_parent(destination)
                FileSystems.rename([source], [destination])
            elif not FileSystems.exists(destination):
                raise RuntimeError(f"commit {self.run_id}: {source} is neither staged nor in place")
            steps.tick()
        for path in self.deletes:
            delete([path])
            steps.tick()
        target = manifest_path(self.output, self.run_id)
        write_json(target, self.manifest)
        steps.tick()
        delete([FileSystems.join(self.output, "_staging", self.run_id)])
        delete([self.path])
        return target

    @classmethod
    def load(cls, path: str, output: str) -> Journal | None:
        """The journal at ``path``, or None when it is torn (the crash came before the commit point)."""
        try:
            data = read_json(path)
            return cls(output, data["run_id"], [tuple(m) for m in data["moves"]], list(data["deletes"]),
                       data["manifest"])
        except (ValueError, KeyError, TypeError):
            return None


class _CrashCounter:
    """Counts commit steps and kills the process at the step the crash tests ask for."""

    def __init__(self, disabled: bool = False) -> None:
        limit = None if disabled else os.environ.get(_CRASH_ENV)
        self._limit = int(limit) if limit else None
        self._done = 0

    def tick(self) -> None:
        self._done += 1
        if self._limit is not None and self._done >= self._limit:
            os.kill(os.getpid(), signal.SIGKILL)


def recover(output: str) -> list[str]:
    """Finish or roll back what a crashed run left; returns a line per action, for the log."""
    actions = []
    for path in list_files(FileSystems.join(output, "_commits", "*.json")):
        journal = Journal.load(path, output)
        if journal is None:
            run_id = FileSystems.split(path)[1][: -len(".json")]
            delete([FileSystems.join(output, "_staging", run_id), path])
            actions.append(f"rolled back run {run_id} (its commit journal was incomplete)")
        else:
            journal.apply()
            actions.append(f"finished the commit of run {journal.run_id}")
    staging = FileSystems.join(output, "_staging")
    prefix = staging.rstrip("/") + "/"
    leftovers = sorted({path[len(prefix):].split("/", 1)[0] for path in list_files(FileSystems.join(staging, "**"))})
    for run_id in leftovers:
        delete([FileSystems.join(staging, run_id)])
        actions.append(f"rolled back uncommitted run {run_id}")
    return actions


@dataclass(frozen=True)
class LedgerEntry:
    """One ingested file: where, what (checksum), by which run, and where its rows went."""

    path: str
    sha256: str
    run_id: str
    partitions: tuple[tuple[str, str], ...] = ()


@dataclass
class Ledger:
    """The ingested files of an output folder (``DIR/_ledger/ledger-<n>.json``, the highest n current)."""

    output: str
    entries: dict[str, LedgerEntry] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, output: str) -> Ledger:
        files = list_files(FileSystems.join(output, "_ledger", "ledger-*.json"))
        entries: dict[str, LedgerEntry] = {}
        if files:
            for item in read_json(files[-1]):
                entries[item["path"]] = LedgerEntry(item["path"], item["sha256"], item["run_id"],
                                                    tuple(tuple(p) for p in item["partitions"]))
        return cls(output, entries, files)

    def next_path(self) -> str:
        number = int(self.files[-1].rsplit("ledger-", 1)[1][:-len(".json")]) + 1 if self.files else 1
        return FileSystems.join(self.output, "_ledger", f"ledger-{number:010d}.json")

    def ingested(self, path: str, sha256: str) -> bool:
        entry = self.entries.get(path)
        return entry is not None and entry.sha256 == sha256

    def updated(self, new: Sequence[LedgerEntry]) -> list[dict[str, Any]]:
        merged = dict(self.entries)
        for entry in new:
            merged[entry.path] = entry
        return [{"path": e.path, "sha256": e.sha256, "run_id": e.run_id, "partitions": [list(p) for p in e.partitions]}
                for e in sorted(merged.values(), key=lambda e: e.path)]
