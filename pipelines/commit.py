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
earlier rows where to be found. It also lists the key index's files, so that a lost or a
stray index file is found, never taken for an empty or a bigger index.

Every path comes from ``transforms.layout.OutputLayout``, and every delete and rename goes
through it, so nothing outside the output is ever touched.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import signal
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from pipelines.errors import DamagedOutput, RunError
from transforms.files import DamagedFile, list_files, read_json, write_json
from transforms.layout import INDEX, LAYOUT_VERSION, LEDGER, OutputLayout

__all__ = [
    "Journal",
    "Ledger",
    "LedgerEntry",
    "StagedRun",
    "file_checksum",
    "recover",
]

# Fault injection for the crash tests: SIGKILL the process after this many commit steps.
_CRASH_ENV = "THROUGHPUT_CRASH_AFTER_COMMIT_STEPS"


def file_checksum(path: str, also: Callable[[bytes], None] | None = None) -> str:
    """SHA-256 of a file's bytes as stored (compressed files are hashed compressed).

    A gzip file is also inflated on the way, every member to its end, so that a truncated or
    corrupt one is found here, before anything of it is read: ``OSError`` saying what is wrong.
    ``also`` sees every block too (the same pass finds where to split the file).
    """
    digest = hashlib.sha256()
    check = _GzipCheck() if path.lower().endswith(".gz") else None
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
        while block := handle.read(8 << 20):
            digest.update(block)
            if also is not None:
                also(block)
            if check is not None:
                check.feed(block)
    if check is not None:
        check.finish()
    return digest.hexdigest()


class _GzipCheck:
    """Inflates a gzip stream fed in blocks, keeping nothing, to prove it whole."""

    def __init__(self) -> None:
        self._inflate = zlib.decompressobj(wbits=31)

    def feed(self, data: bytes) -> None:
        while data:
            try:
                self._inflate.decompress(data, 1 << 20)
            except zlib.error as exc:
                raise OSError(f"it is not a valid gzip file ({exc})") from None
            if self._inflate.eof:
                data = self._inflate.unused_data
                if data:  # a further gzip member
                    self._inflate = zlib.decompressobj(wbits=31)
            else:
                data = self._inflate.unconsumed_tail

    def finish(self) -> None:
        if not self._inflate.eof:
            raise OSError("it is a truncated gzip file (it ends before its end-of-stream marker)")


@dataclass(frozen=True)
class StagedRun:
    """Where one run stages its files: a folder laid out like the output itself."""

    layout: OutputLayout
    run_id: str

    @property
    def output(self) -> str:
        return self.layout.root

    @property
    def area(self) -> OutputLayout:
        return self.layout.staging(self.run_id)

    @property
    def root(self) -> str:
        return self.area.root

    @property
    def counts_path(self) -> str:
        return self.area.counts_file()

    @property
    def manifest_path(self) -> str:
        return self.layout.manifest(self.run_id)

    @classmethod
    def begin(cls, layout: OutputLayout, run_id: str) -> StagedRun:
        """Check the output is writable and the run id is new; clear leftovers of a failed try."""
        staged = cls(layout, run_id)
        if FileSystems.exists(staged.manifest_path):
            raise RunError(f"run {run_id} is already committed ({staged.manifest_path}); use another --run-id")
        try:
            layout.delete([staged.root])
            write_json(staged.area.join("_started.json"), {"run_id": run_id})
        except Exception as exc:  # any filesystem's error: the output cannot be written
            raise RunError(f"cannot write to output {layout.root}: {exc}") from exc
        return staged

    def abort(self) -> None:
        """Throw the staged files away; the tables stay as they were."""
        self.layout.delete([self.root])

    def final_path(self, staged_path: str) -> str:
        return self.area.rebase(staged_path, self.layout)

    def layout_marker(self) -> list[tuple[str, str]]:
        """The move that puts the layout's version marker in place, when the output has none yet."""
        if FileSystems.exists(self.layout.layout_file()):
            return []
        marker = self.area.layout_file()
        write_json(marker, {"version": LAYOUT_VERSION, "partition_values": "escaped as Hive and Spark do"})
        return [(marker, self.layout.layout_file())]


@dataclass
class Journal:
    """One run's commit: moves into the tables, files retired, and the manifest written last."""

    layout: OutputLayout
    run_id: str
    moves: list[tuple[str, str]] = field(default_factory=list)
    deletes: list[str] = field(default_factory=list)
    manifest: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of_staged(cls, staging: StagedRun, staged: Sequence[str], retired: Sequence[str],
                  manifest: dict[str, Any]) -> Journal:
        """The commit of the files a pipeline staged and the earlier files they retire."""
        moves = [(path, staging.final_path(path)) for path in sorted(staged)]
        return cls(staging.layout, staging.run_id, moves, sorted(set(retired)), manifest)

    @property
    def path(self) -> str:
        return self.layout.journal(self.run_id)

    def commit(self) -> str:
        """Write the journal (the commit point), then apply it; returns the manifest's path."""
        for source, destination in self.moves:  # refuse before the commit point, not half-way
            self.layout.relative(source)
            self.layout.relative(destination)
        for path in self.deletes:
            self.layout.relative(path)
        steps = _CrashCounter()
        steps.tick()
        write_json(self.path, {"run_id": self.run_id, "moves": self.moves, "deletes": self.deletes,
                               "manifest": self.manifest})
        steps.tick()
        return self.apply(steps)

    def apply(self, steps: _CrashCounter | None = None) -> str:
        """Finish the commit; safe to repeat after a crash at any point."""
        steps = steps or _CrashCounter(disabled=True)
        staged = self.layout.staging(self.run_id)
        mirrored = {source for source, destination in self.moves
                    if staged.contains(source) and staged.rebase(source, self.layout) == destination}
        moved = set(staged.movable_folders(mirrored, self.layout))
        for folder in sorted(moved):
            self.layout.rename(folder, staged.rebase(folder, self.layout))
            steps.tick()
        for source, destination in self.moves:
            if _inside(source, moved):
                continue  # its folder moved whole
            if FileSystems.exists(source):
                self.layout.rename(source, destination)
            elif not FileSystems.exists(destination):
                raise DamagedOutput(f"commit {self.run_id}: {source} is neither staged nor in place; "
                                    f"the journal {self.path} cannot be finished")
            steps.tick()
        for path in self.deletes:
            self.layout.delete([path])
            steps.tick()
        target = self.layout.manifest(self.run_id)
        write_json(target, self.manifest)
        steps.tick()
        self.layout.delete([self.layout.staging(self.run_id).root])
        self.layout.delete([self.path])
        return target

    @classmethod
    def load(cls, path: str, layout: OutputLayout) -> Journal | None:
        """The journal at ``path``, or None when it is torn (the crash came before the commit point)."""
        try:
            data = read_json(path)
            return cls(layout, data["run_id"], [tuple(m) for m in data["moves"]], list(data["deletes"]),
                       data["manifest"])
        except (DamagedFile, ValueError, KeyError, TypeError):
            return None


def _inside(path: str, folders: set[str]) -> bool:
    """Whether ``path`` lies under one of ``folders``."""
    parent = posixpath.dirname(path)
    while parent not in folders:
        up = posixpath.dirname(parent)
        if up == parent:
            return False
        parent = up
    return True


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


def recover(layout: OutputLayout) -> list[str]:
    """Finish or roll back what a crashed run left; returns a line per action, for the operator.

    Only the holder of the output's lock may call this: another run's staging is not a leftover.
    """
    actions = []
    for path in list_files(layout.journals()):
        journal = Journal.load(path, layout)
        name = FileSystems.split(path)[1][: -len(".json")]
        if journal is None:
            try:
                layout.delete([layout.staging(name).root])
            except ValueError:  # a journal whose name is no run id was never ours to stage
                pass
            layout.delete([path])
            actions.append(f"rolled back run {name} (its commit journal was incomplete)")
        else:
            journal.apply()
            actions.append(f"finished the commit of run {journal.run_id}")
    prefix = layout.staging_root().rstrip("/") + "/"
    leftovers = sorted({path[len(prefix):].split("/", 1)[0] for path in list_files(layout.staging_root() + "/**")})
    for run_id in leftovers:
        layout.delete([FileSystems.join(layout.staging_root(), run_id)])
        actions.append(f"rolled back uncommitted run {run_id}")
    return actions


@dataclass(frozen=True)
class LedgerEntry:
    """One ingested file: where, what (checksum), by which run, and where its rows went."""

    path: str
    sha256: str
    run_id: str
    partitions: tuple[tuple[str, str], ...] = ()


_REPAIR = "run `throughput verify --output {root}` to see what is wrong, and `throughput repair --output {root}`"


@dataclass
class Ledger:
    """The ingested files of an output (``DIR/_ledger/ledger-<n>.json``, the highest n current).

    ``index_files`` are the key index's files as the last commit left them (None for a ledger
    written before the ledger listed them).
    """

    layout: OutputLayout
    entries: dict[str, LedgerEntry] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    index_files: list[str] | None = None

    @classmethod
    def load(cls, layout: OutputLayout, check_index: bool = True) -> Ledger:
        """The current ledger; ``DamagedOutput`` naming the file for anything it cannot trust."""
        files = list_files(layout.ledger_files())
        for path in files:
            if layout.ledger_number(path) is None:
                raise DamagedOutput(f"{path} is not a ledger file of this tool (ledger-<10 digits>.json); "
                                    "move it out of the _ledger folder")
        files.sort(key=lambda p: layout.ledger_number(p) or 0)
        if not files:
            ledger = cls(layout)
            ledger._check_not_lost()
            return ledger
        current = files[-1]
        try:
            data = read_json(current)
        except DamagedFile as exc:
            raise DamagedOutput(f"{exc}; restore it from a backup, or move it away to fall back to the "
                                "ledger before it") from None
        items, index_files = (data, None) if isinstance(data, list) else (data.get("entries"), data.get("index_files"))
        entries: dict[str, LedgerEntry] = {}
        try:
            for item in items:
                entries[item["path"]] = LedgerEntry(item["path"], item["sha256"], item["run_id"],
                                                    tuple((str(w), str(d)) for w, d in item["partitions"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise DamagedOutput(f"{current} is damaged (an entry lacks {exc}); restore it from a backup") from None
        ledger = cls(layout, entries, files, None if index_files is None else [layout.join(p) for p in index_files])
        if check_index:
            ledger._check_index()
        return ledger

    def _check_not_lost(self) -> None:
        """No ledger, yet runs committed ingested files: the ledger was lost."""
        for path in list_files(self.layout.manifests()):
            manifest = read_json(path)
            if isinstance(manifest, dict) and manifest.get("inputs"):
                raise DamagedOutput(f"the ledger of {self.layout.root} is missing, but run {manifest.get('run_id')} "
                                    "ingested files; without it every file would be ingested again. Restore "
                                    f"{self.layout.join('_ledger')} from a backup, or {_REPAIR.format(root=self.layout.root)}"
                                    " to rebuild it from the manifests")

    def _check_index(self) -> None:
        if self.index_files is None:
            return
        found = set(list_files(self.layout.index_files()))
        expected = set(self.index_files)
        if expected - found:
            raise DamagedOutput(f"the key index of {self.layout.root} lost {len(expected - found)} file(s), e.g. "
                                f"{sorted(expected - found)[0]}; duplicates could slip in. "
                                + _REPAIR.format(root=self.layout.root) + " to rebuild the index")
        if found - expected:
            raise DamagedOutput(f"{sorted(found - expected)[0]} is in the key index of {self.layout.root} but no "
                                "commit wrote it (a stray copy?); move it away, or "
                                + _REPAIR.format(root=self.layout.root) + " to rebuild the index")

    def stage_next(self, staging: StagedRun, new: Sequence[LedgerEntry], staged: Sequence[str],
                   retired: Sequence[str]) -> tuple[str, str]:
        """Write the next ledger into staging: ``new`` entries in place, and the key index's files
        as this commit leaves them (those listed now, less the retired, plus the staged ones).
        Returns (staged path, final path), the move for the journal."""
        index_now = self.index_files if self.index_files is not None else list_files(self.layout.index_files())
        gone = set(retired)
        index_after = [p for p in index_now if p not in gone]
        index_after += [staging.final_path(p) for p in staged if staging.area.relative(p).startswith(f"{INDEX}/")]
        path = staging.area.join(LEDGER, "ledger.json")
        write_json(path, self.updated(new, index_after))
        return path, self.next_path()

    def next_path(self) -> str:
        number = (self.layout.ledger_number(self.files[-1]) or 0) + 1 if self.files else 1
        return self.layout.ledger_file(number)

    def ingested(self, path: str, sha256: str) -> bool:
        entry = self.entries.get(path)
        return entry is not None and entry.sha256 == sha256

    def same_content(self, sha256: str) -> LedgerEntry | None:
        """An entry of another path holding exactly these bytes, if any."""
        for entry in self.entries.values():
            if entry.sha256 == sha256:
                return entry
        return None

    def updated(self, new: Sequence[LedgerEntry], index_files: Sequence[str]) -> dict[str, Any]:
        """The next ledger document: the entries with ``new`` in place, and the index's files."""
        merged = dict(self.entries)
        for entry in new:
            merged[entry.path] = entry
        return {
            "version": 2,
            "entries": [{"path": e.path, "sha256": e.sha256, "run_id": e.run_id,
                         "partitions": [list(p) for p in e.partitions]}
                        for e in sorted(merged.values(), key=lambda e: e.path)],
            "index_files": sorted(self.layout.relative(p) for p in index_files),
        }
