"""The output folder's layout: the one home of every folder and file name the tool writes.

```
DIR/task_completed/workstream_id=<id>/completed_date=<YYYY-MM-DD>/part-<run>.parquet
DIR/throughput_daily/workstream_id=<id>/completed_date=<YYYY-MM-DD>/part-<run>.parquet
DIR/rejects/run_id=<run>/part-00000.parquet
DIR/_runs/<run>.json            the manifests
DIR/_ledger/ledger-<n>.json     the ingested files (the highest n is current)
DIR/_index/bucket=NN/keys-<run>.parquet   the dedupe key index
DIR/_commits/<run>.json         a commit journal, while a commit is applied
DIR/_staging/<run>/...          a run's files before its commit (the same layout below it)
DIR/_failed_runs/<run>/rejects.parquet   the rejects of a run refused by --max-reject-rate
DIR/_lock.json                  who holds the output (one writer at a time)
DIR/_layout.json                the layout's version (partition-name escaping)
```

Every path the tool writes, renames or deletes is built here, and every delete and rename
goes through ``OutputLayout.delete``/``rename``, which refuse a target that is not strictly
under the output. A name that a user typed (``--run-id``, an id in a record) is never
trusted as a path: run ids are checked by ``check_run_id``, partition values are escaped.
"""

from __future__ import annotations

import os
import posixpath
import re
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from urllib.parse import unquote

from apache_beam.io.filesystems import FileSystems

from schemas.tables import REJECTS, TASK_COMPLETED, THROUGHPUT_DAILY, TableSpec
from transforms import files

__all__ = [
    "INDEX",
    "LAYOUT_VERSION",
    "LEDGER",
    "TABLES",
    "LayoutError",
    "OutputLayout",
    "check_run_id",
    "escape_partition_value",
    "is_local",
    "new_run_id",
    "unescape_partition_value",
]

TABLES: tuple[TableSpec, ...] = (TASK_COMPLETED, THROUGHPUT_DAILY, REJECTS)
LAYOUT_VERSION = 2  # 1: partition values URL-quoted (every non-ASCII byte); 2: escaped as Hive and Spark do
STAGING, RUNS, LEDGER, INDEX, COMMITS, FRAGMENTS = "_staging", "_runs", "_ledger", "_index", "_commits", "_fragments"
FAILED_RUNS = "_failed_runs"
LOCK_FILE, LAYOUT_FILE = "_lock.json", "_layout.json"
_OWN_FOLDERS = (STAGING, RUNS, LEDGER, INDEX, COMMITS, FAILED_RUNS)

_RUN_ID = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}")
_GLOB = re.compile(r"[*?\[\]{}]")
# The characters Hive's FileUtils.escapePathName and Spark's ExternalCatalogUtils escape.
_HIVE_ESCAPED = frozenset([chr(c) for c in range(0x00, 0x20)] + list("\"#%'*/:=?\\\x7f{[]^"))
_LEDGER_NAME = re.compile(r"ledger-(\d{10})\.json")


class LayoutError(ValueError):
    """An output path or name that would put a file outside the output, or is not a valid name."""


def check_run_id(run_id: str) -> str:
    """A run id is a name, not a path: letters, digits, ``.``, ``_``, ``-``, not starting with ``.``."""
    if not _RUN_ID.fullmatch(run_id):
        raise LayoutError(f"--run-id {run_id!r} is not a valid run id: use up to 128 letters, digits, '.', '_' "
                          "or '-', not starting with '.'")
    return run_id


def new_run_id(prefix: str = "") -> str:
    """A fresh run id: the UTC time and a random suffix (``compact-`` runs get a prefix)."""
    return f"{prefix}{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"


def is_local(path: str) -> bool:
    """True for a path of the local filesystem (no ``scheme://``)."""
    return "://" not in path


def escape_partition_value(value: str) -> str:
    """A partition value as Hive and Spark write it in a path: only their special characters as %XX."""
    return "".join(f"%{ord(c):02X}" if c in _HIVE_ESCAPED else c for c in value)


def unescape_partition_value(text: str) -> str:
    """The value of an escaped path segment (``%XX`` decoded, as Hive, Spark and pyarrow read it)."""
    return unquote(text)


@dataclass(frozen=True)
class OutputLayout:
    """Where everything of one output folder lives; ``root`` is canonical (absolute when local)."""

    root: str

    @classmethod
    def at(cls, output: str) -> OutputLayout:
        """The layout of ``output`` as a user typed it: checked and made canonical."""
        if not output or not output.strip():
            raise LayoutError("--output is empty; name the folder of the tables")
        if _GLOB.search(output):
            raise LayoutError(f"--output {output!r} holds a glob character (* ? [ ] {{ }}); "
                              "choose a folder name without them")
        if is_local(output):
            output = os.path.realpath(os.path.abspath(os.path.expanduser(output)))
            if os.path.exists(output) and not os.path.isdir(output):
                raise LayoutError(f"--output {output} exists and is not a folder")
            if _GLOB.search(output):
                raise LayoutError(f"--output {output!r} holds a glob character (* ? [ ] {{ }}) in its absolute path")
        return cls(output.rstrip("/") or "/")

    # -- names ------------------------------------------------------------------------------

    def join(self, *parts: str) -> str:
        for part in parts:
            for piece in part.split("/"):
                if piece in ("..", "."):
                    raise LayoutError(f"{part!r} is not a plain name under the output")
        return FileSystems.join(self.root, *parts)

    def table(self, table: TableSpec) -> str:
        return self.join(table.name)

    def partition(self, table: TableSpec, values: Sequence[str]) -> str:
        """``root/<table>/<col>=<value>/...`` with values escaped as Hive and Spark do."""
        segments = [f"{name}={escape_partition_value(str(value))}" for name, value in zip(table.partition_by, values)]
        return self.join(table.name, *segments)

    def part_file(self, table: TableSpec, values: Sequence[str], run_id: str, suffix: str = "") -> str:
        return FileSystems.join(self.partition(table, values), f"part-{check_run_id(run_id)}{suffix}.parquet")

    def table_files(self, table: TableSpec) -> str:
        """Glob of every Parquet file of a table."""
        return FileSystems.join(self.table(table), "**.parquet")

    def partition_files(self, table: TableSpec, values: Sequence[str]) -> str:
        return FileSystems.join(self.partition(table, values), "*.parquet")

    def rejects_file(self, run_id: str) -> str:
        return FileSystems.join(self.partition(REJECTS, [check_run_id(run_id)]), "part-00000.parquet")

    def manifest(self, run_id: str) -> str:
        return self.join(RUNS, f"{check_run_id(run_id)}.json")

    def manifests(self) -> str:
        return self.join(RUNS, "*.json")

    def journal(self, run_id: str) -> str:
        return self.join(COMMITS, f"{check_run_id(run_id)}.json")

    def journals(self) -> str:
        return self.join(COMMITS, "*.json")

    def staging(self, run_id: str) -> OutputLayout:
        """The run's staging folder, laid out like the output itself."""
        return OutputLayout(self.join(STAGING, check_run_id(run_id)))

    def staging_root(self) -> str:
        return self.join(STAGING)

    def counts_file(self) -> str:
        """In a staging layout: the counts the pipeline hands to the driver."""
        return self.join("_counts.json")

    def fragment(self, name: str) -> str:
        """In a staging layout: a spilled batch file."""
        return self.join(FRAGMENTS, name)

    def ledger_files(self) -> str:
        return self.join(LEDGER, "ledger-*.json")

    def ledger_file(self, number: int) -> str:
        return self.join(LEDGER, f"ledger-{number:010d}.json")

    @staticmethod
    def ledger_number(path: str) -> int | None:
        """The n of ``ledger-<n>.json``; None for any other name (a stray file)."""
        found = _LEDGER_NAME.fullmatch(posixpath.basename(path))
        return int(found.group(1)) if found else None

    def index_bucket(self, bucket: int) -> str:
        return self.join(INDEX, f"bucket={bucket:02d}")

    def index_file(self, bucket: int, run_id: str) -> str:
        return FileSystems.join(self.index_bucket(bucket), f"keys-{check_run_id(run_id)}.parquet")

    def index_files(self) -> str:
        return self.join(INDEX, "**.parquet")

    def failed_rejects(self, run_id: str) -> str:
        """Where the rejects of a run refused by ``--max-reject-rate`` are kept for the operator."""
        return self.join(FAILED_RUNS, check_run_id(run_id), "rejects.parquet")

    def lock_file(self) -> str:
        return self.join(LOCK_FILE)

    def layout_file(self) -> str:
        return self.join(LAYOUT_FILE)

    # -- where a path lies ------------------------------------------------------------------

    def relative(self, path: str) -> str:
        """``path`` relative to the root; refuses a path that is not strictly under it."""
        prefix = self.root.rstrip("/") + "/"
        normalized = posixpath.normpath(path) if is_local(path) else path
        if not normalized.startswith(prefix) or ".." in normalized[len(prefix):].split("/"):
            raise LayoutError(f"refusing to touch {path}: it is not inside the output {self.root}")
        rest = normalized[len(prefix):]
        if not rest or rest in (".",):
            raise LayoutError(f"refusing to touch {path}: it is the output folder itself")
        return rest

    def contains(self, path: str) -> bool:
        try:
            self.relative(path)
        except LayoutError:
            return False
        return True

    def is_own_file(self, path: str) -> bool:
        """A file of the tool's own folders (``_staging``, ``_ledger``, ...): never an input."""
        if not self.contains(path):
            return False
        return self.relative(path).split("/", 1)[0] in _OWN_FOLDERS or self.relative(path) in (LOCK_FILE, LAYOUT_FILE)

    def partition_of(self, path: str) -> dict[str, str]:
        """The partition values of a table file, from its folder names (unescaped), by column."""
        segments = self.relative(posixpath.dirname(path)).split("/")[1:]
        return {name: unescape_partition_value(value) for name, _, value in (s.partition("=") for s in segments)}

    def rebase(self, path: str, onto: OutputLayout) -> str:
        """The same relative path under another layout (a staged file's place in the output)."""
        return onto.join(self.relative(path))

    def movable_folders(self, sources: set[str], onto: OutputLayout) -> list[str]:
        """Folders of this (staging) layout that can move to their place under ``onto`` whole.

        A folder qualifies when every file under it is one of ``sources`` and its place under
        ``onto`` does not exist yet: a new partition then takes one rename, not a folder made
        and a rename for each file (a first night of 600 partitions made 1,200 of each). The
        outermost such folders, in walk order. Local only: an object store has no folders.
        """
        if not is_local(self.root) or not os.path.isdir(self.root):
            return []
        whole: dict[str, bool] = {}
        inner: dict[str, list[str]] = {}
        for folder, subfolders, names in os.walk(self.root, topdown=False):  # one listing, deepest first
            inner[folder] = [os.path.join(folder, name) for name in subfolders]
            whole[folder] = bool(subfolders or names) and all(whole.get(path, False) for path in inner[folder]) \
                and all(os.path.join(folder, name) in sources for name in names)
        movable, pending = [], list(reversed(inner[self.root]))
        while pending:  # from the top: a folder that moves whole is not looked into
            path = pending.pop()
            if whole.get(path, False) and not FileSystems.exists(self.rebase(path, onto)):
                movable.append(path)
            else:
                pending.extend(reversed(inner.get(path, [])))
        return movable

    # -- guarded changes --------------------------------------------------------------------

    def delete(self, paths: Iterable[str]) -> None:
        """Delete what exists of ``paths`` (folders recursively); every one must lie under the output."""
        targets = list(paths)
        for path in targets:
            self.relative(path)
        files.delete(targets)

    def rename(self, source: str, destination: str) -> None:
        """Move one file within the output."""
        self.relative(source)
        self.relative(destination)
        files.ensure_parent(destination)
        FileSystems.rename([source], [destination])

    def legacy_partition_folders(self) -> list[str]:
        """Partition folders that layout 1 named differently from layout 2 (need migrating): the
        outermost folder of each whose name differs."""
        stale = set()
        for table in (TASK_COMPLETED, THROUGHPUT_DAILY):
            for path in files.list_files(self.table_files(table)):
                segments = self.relative(posixpath.dirname(path)).split("/")[1:]
                for depth, segment in enumerate(segments):
                    name, _, value = segment.partition("=")
                    if f"{name}={escape_partition_value(unescape_partition_value(value))}" != segment:
                        stale.add(self.join(table.name, *segments[: depth + 1]))
                        break
        return sorted(stale)
