"""``throughput verify`` and ``throughput repair``: check every invariant of an output, and
rebuild what can be derived again from ``task_completed``.

The invariants:
- no two rows of ``task_completed`` share a dedupe key;
- ``throughput_daily`` equals the aggregate of ``task_completed``, partition by partition;
- the key index holds exactly the keys of ``task_completed`` (with their partition and file),
  and exactly the files the ledger lists;
- the ledger agrees with the manifests (every entry's run committed that file with those bytes);
- every file of the tables and of the index is readable;
- nothing is left in ``_staging`` or ``_commits``.

``repair`` rebuilds the index, ``throughput_daily`` and (when it is lost) the ledger from
``task_completed`` and the manifests, and commits them through the journal like a run.
Both read the whole table's key columns into memory: they are tools for a damaged output,
not for every night.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from pipelines.commit import Journal, Ledger, LedgerEntry, StagedRun, recover
from pipelines.errors import DamagedOutput, RunError
from pipelines.lock import hold_output
from schemas.tables import TASK_COMPLETED, THROUGHPUT_DAILY
from transforms.dedupe import INDEX_BUCKETS, INDEX_REPEATING, INDEX_SCHEMA, bucket_of, dedupe_key
from transforms.files import DamagedFile, exists, list_files, read_json, read_parquet, write_parquet
from transforms.layout import OutputLayout, new_run_id
from transforms.write import daily_throughput

__all__ = ["Finding", "repair", "repair_main", "verify", "verify_main"]

_KEY_COLUMNS = ["use_case_id", "task_definition_id", "unique_id", "source_file"]
_DAILY_INPUT = ["use_case_id", "task_definition_id", "worker_id", "task_count", "subtask_count", "duration",
                "task_completed_at"]


@dataclass(frozen=True)
class Finding:
    """One invariant checked: its name, whether it holds, and what was found."""

    check: str
    ok: bool
    detail: str = ""

    def line(self) -> str:
        return f"{'ok  ' if self.ok else 'FAIL'} {self.check}{': ' + self.detail if self.detail else ''}"


def verify(output: str) -> list[Finding]:
    """Every invariant of the output, checked while holding it (no writer changes it meanwhile)."""
    layout = OutputLayout.at(output)
    with hold_output(layout, new_run_id("verify-")):
        return _verify(layout)


def _verify(layout: OutputLayout) -> list[Finding]:
    findings = [_nothing_pending(layout)]
    rows, damaged = _partition_rows(layout, TASK_COMPLETED, _KEY_COLUMNS + _DAILY_INPUT[2:])
    daily, damaged_daily = _partition_rows(layout, THROUGHPUT_DAILY, None)
    index, damaged_index = _index_rows(layout)
    unreadable = damaged + damaged_daily + damaged_index
    findings.append(Finding("every table and index file is readable", not unreadable,
                            "; ".join(unreadable[:3]) + (f" (and {len(unreadable) - 3} more)" if len(unreadable) > 3 else "")))
    findings.append(_unique_keys(rows))
    findings.append(_daily_matches(rows, daily))
    findings.append(_index_matches(rows, index))
    findings += _ledger_agrees(layout)
    return findings


def repair(output: str) -> dict[str, Any]:
    """Rebuild the key index, ``throughput_daily`` and a lost ledger from ``task_completed``; commit."""
    layout = OutputLayout.at(output)
    run_id = new_run_id("repair-")
    with hold_output(layout, run_id):
        recover(layout)
        rows, damaged = _partition_rows(layout, TASK_COMPLETED, _KEY_COLUMNS + _DAILY_INPUT[2:])
        if damaged:
            raise DamagedOutput(f"{damaged[0]}; task_completed itself cannot be rebuilt: restore that file from "
                                "a backup, or move it away and ingest its source files again with --reprocess")
        duplicates = _unique_keys(rows)
        if not duplicates.ok:
            raise DamagedOutput(f"task_completed holds {duplicates.detail}; repair cannot choose between them")
        staging = StagedRun.begin(layout, run_id)
        staged = _stage_index(staging, rows) + _stage_daily(staging, rows)
        retired = list_files(layout.index_files()) + list_files(layout.table_files(THROUGHPUT_DAILY))
        # the rebuilt index replaces every earlier index file, listed or not
        ledger = dataclasses.replace(_ledger_or_rebuilt(layout, rows), index_files=[])
        manifest = {"run_id": run_id, "status": "committed", "kind": "repair", "index_keys": int(rows.num_rows),
                    "ledger_rebuilt": not ledger.files, "files_added": len(staged), "files_retired": len(retired)}
        journal = Journal.of_staged(staging, staged, retired + ledger.files, manifest)
        journal.moves.append(ledger.stage_next(staging, [], staged, retired))
        journal.commit()
    return manifest


# -- reading ------------------------------------------------------------------------------------


def _partition_rows(layout: OutputLayout, table: Any, columns: list[str] | None) -> tuple[pa.Table, list[str]]:
    """Every row of a partitioned table (selected columns) with its partition values, and the damaged files."""
    parts, damaged = [], []
    for path in list_files(layout.table_files(table)):
        values = layout.partition_of(path)
        try:
            part = read_parquet(path, columns)
        except DamagedFile as exc:
            damaged.append(str(exc))
            continue
        part = part.append_column("workstream_id", pa.array([values["workstream_id"]]
                                                             * part.num_rows, pa.string()))
        part = part.append_column("completed_date", pa.array([values["completed_date"]] * part.num_rows, pa.string())
                                  .cast(pa.date32()))
        parts.append(part)
    return (pa.concat_tables(parts, promote_options="default") if parts else pa.table({})), damaged


def _index_rows(layout: OutputLayout) -> tuple[pa.Table, list[str]]:
    parts, damaged = [], []
    for path in list_files(layout.index_files()):
        try:
            parts.append(read_parquet(path).cast(INDEX_SCHEMA))
        except DamagedFile as exc:
            damaged.append(str(exc))
        except (pa.ArrowInvalid, ValueError) as exc:
            damaged.append(f"{path} is damaged (not an index file: {exc})")
    return (pa.concat_tables(parts) if parts else INDEX_SCHEMA.empty_table()), damaged


def _keyed(rows: pa.Table) -> pa.Table:
    if not rows.num_rows:
        return INDEX_SCHEMA.empty_table()
    keyed = rows.filter(pc.is_valid(rows.column("unique_id")))
    return pa.table({"key": dedupe_key(keyed), "workstream_id": keyed.column("workstream_id"),
                     "completed_date": keyed.column("completed_date"),
                     "source_file": keyed.column("source_file")}, schema=INDEX_SCHEMA)


# -- the checks -------------------------------------------------------------------------------


def _nothing_pending(layout: OutputLayout) -> Finding:
    pending = list_files(layout.journals()) + list_files(layout.staging_root() + "/**")
    return Finding("nothing is left in _staging or _commits", not pending,
                   f"{len(pending)} file(s), e.g. {pending[0]}; the next run finishes or rolls it back" if pending else "")


def _unique_keys(rows: pa.Table) -> Finding:
    keyed = _keyed(rows)
    counts = keyed.group_by("key").aggregate([("key", "count")])
    twice = counts.filter(pc.greater(counts.column("key_count"), 1))
    return Finding("no two rows of task_completed share a dedupe key", twice.num_rows == 0,
                   f"{twice.num_rows} key(s) on more than one row" if twice.num_rows else f"{keyed.num_rows} keyed rows")


def _daily_matches(rows: pa.Table, daily: pa.Table) -> Finding:
    expected = _daily_of(rows)
    group = ["workstream_id", "completed_date", "use_case_id", "task_definition_id", "worker_id"]
    if not daily.num_rows and not expected.num_rows:
        return Finding("throughput_daily equals the aggregate of task_completed", True, "both empty")
    found = daily.select(expected.schema.names).cast(expected.schema).sort_by([(c, "ascending") for c in group]) \
        if daily.num_rows else expected.schema.empty_table()
    expected = expected.sort_by([(c, "ascending") for c in group])
    same = found.num_rows == expected.num_rows and found.equals(expected)
    return Finding("throughput_daily equals the aggregate of task_completed", same,
                   "" if same else f"{found.num_rows} daily rows, {expected.num_rows} expected; "
                   "`throughput repair` recomputes it")


def _daily_of(rows: pa.Table) -> pa.Table:
    parts = []
    if rows.num_rows:
        for (workstream, day), part in _by_partition(rows):
            daily = daily_throughput(part.select(_DAILY_INPUT))
            daily = daily.append_column("workstream_id", pa.array([workstream] * daily.num_rows, pa.string()))
            parts.append(daily.append_column("completed_date", pa.array([day] * daily.num_rows, pa.date32())))
    if not parts:
        return pa.schema([*THROUGHPUT_DAILY.file_schema, pa.field("workstream_id", pa.string()),
                          pa.field("completed_date", pa.date32())]).empty_table()
    return pa.concat_tables(parts)


def _by_partition(rows: pa.Table) -> list[tuple[tuple[str, Any], pa.Table]]:
    keys = rows.select(["workstream_id", "completed_date"]).group_by(["workstream_id", "completed_date"]) \
        .aggregate([]).to_pylist()
    return [((k["workstream_id"], k["completed_date"]),
             rows.filter(pc.and_(pc.equal(rows.column("workstream_id"), k["workstream_id"]),
                                 pc.equal(rows.column("completed_date"), pa.scalar(k["completed_date"], pa.date32())))))
            for k in keys]


def _index_matches(rows: pa.Table, index: pa.Table) -> Finding:
    expected = _keyed(rows).sort_by("key")
    found = index.sort_by("key")
    same = found.equals(expected)
    return Finding("the key index holds exactly the keys of task_completed", same,
                   "" if same else f"{found.num_rows} index entries, {expected.num_rows} keyed rows; "
                   "`throughput repair` rebuilds it")


def _ledger_agrees(layout: OutputLayout) -> list[Finding]:
    try:
        ledger = Ledger.load(layout)
    except (DamagedOutput, DamagedFile) as exc:
        return [Finding("the ledger is readable and agrees with the index", False, str(exc))]
    committed: dict[tuple[str, str], str] = {}
    for path in list_files(layout.manifests()):
        try:
            manifest = read_json(path)
        except DamagedFile as exc:
            return [Finding("the ledger agrees with the manifests", False, str(exc))]
        for item in manifest.get("inputs", []) if isinstance(manifest, dict) else []:
            committed[(item["path"], item["sha256"])] = str(manifest.get("run_id"))
    wrong = [e.path for e in ledger.entries.values() if committed.get((e.path, e.sha256)) != e.run_id]
    return [Finding("the ledger is readable and agrees with the index", True, f"{len(ledger.entries)} file(s)"),
            Finding("the ledger agrees with the manifests", not wrong,
                    f"{len(wrong)} entry(ies) no manifest committed, e.g. {wrong[0]}" if wrong else "")]


# -- rebuilding -------------------------------------------------------------------------------


def _stage_index(staging: StagedRun, rows: pa.Table) -> list[str]:
    keyed = _keyed(rows)
    buckets = pa.array(bucket_of(keyed.column("key").to_pylist(), INDEX_BUCKETS), pa.int32())
    staged = []
    for bucket in range(INDEX_BUCKETS):
        part = keyed.filter(pc.equal(buckets, bucket)).sort_by("key")
        if part.num_rows:
            path = staging.area.index_file(bucket, staging.run_id)
            write_parquet(part, path, INDEX_REPEATING)
            staged.append(path)
    return staged


def _stage_daily(staging: StagedRun, rows: pa.Table) -> list[str]:
    staged = []
    if rows.num_rows:
        for (workstream, day), part in _by_partition(rows):
            path = staging.area.part_file(THROUGHPUT_DAILY, [workstream, day.isoformat()], staging.run_id)
            write_parquet(daily_throughput(part.select(_DAILY_INPUT)), path, THROUGHPUT_DAILY.repeating)
            staged.append(path)
    return staged


def _ledger_or_rebuilt(layout: OutputLayout, rows: pa.Table) -> Ledger:
    """The ledger as it is, or, when it is lost, rebuilt from the manifests and the table's rows."""
    if list_files(layout.ledger_files()):
        return Ledger.load(layout, check_index=False)  # the index is what is being rebuilt
    partitions: dict[str, set[tuple[str, str]]] = {}
    if rows.num_rows:
        for item in rows.select(["source_file", "workstream_id", "completed_date"]).group_by(
                ["source_file", "workstream_id", "completed_date"]).aggregate([]).to_pylist():
            partitions.setdefault(item["source_file"], set()).add((item["workstream_id"], item["completed_date"].isoformat()))
    entries: dict[str, LedgerEntry] = {}
    manifests = [read_json(p) for p in list_files(layout.manifests())]
    for manifest in sorted((m for m in manifests if isinstance(m, dict)), key=lambda m: str(m.get("finished_at"))):
        for item in manifest.get("inputs", []):
            entries[item["path"]] = LedgerEntry(item["path"], item["sha256"], str(manifest["run_id"]),
                                                tuple(sorted(partitions.get(item["path"], set()))))
    if not exists(layout.root):
        raise RunError(f"{layout.root} is not an output folder")
    return Ledger(layout, entries)


def verify_main(argv: Sequence[str]) -> int:
    """``throughput verify --output DIR``: exit 0 when every invariant holds, 1 when one fails."""
    parser = argparse.ArgumentParser(prog="throughput verify", description="check every invariant of an output folder",
                                     epilog="exit codes: 0 every check holds, 1 a check fails or the output cannot be "
                                            "read, 2 usage")
    parser.add_argument("--output", required=True, metavar="DIR", help="output folder of the tables")
    known = parser.parse_args(argv)
    try:
        findings = verify(known.output)
    except (RunError, ValueError, OSError) as exc:
        print(f"throughput: verify failed: {exc}", file=sys.stderr)
        return 1
    for finding in findings:
        print(finding.line())
    failed = [f for f in findings if not f.ok]
    if failed:
        print(f"throughput: {len(failed)} check(s) failed; `throughput repair --output {known.output}` rebuilds "
              "the index, throughput_daily and a lost ledger from task_completed", file=sys.stderr)
    return 1 if failed else 0


def repair_main(argv: Sequence[str]) -> int:
    """``throughput repair --output DIR``: rebuild the index, throughput_daily and a lost ledger."""
    parser = argparse.ArgumentParser(prog="throughput repair",
                                     description="rebuild the key index, throughput_daily and a lost ledger from "
                                                 "task_completed and the manifests",
                                     epilog="exit codes: 0 repaired, 1 cannot repair, 2 usage")
    parser.add_argument("--output", required=True, metavar="DIR", help="output folder of the tables")
    known = parser.parse_args(argv)
    try:
        manifest = repair(known.output)
    except (RunError, ValueError, OSError) as exc:
        print(f"throughput: repair failed: {exc}", file=sys.stderr)
        return 1
    print(f"repair {manifest['run_id']}: index rebuilt ({manifest['index_keys']} rows read), throughput_daily "
          f"recomputed, ledger {'rebuilt from the manifests' if manifest['ledger_rebuilt'] else 'kept'}")
    return 0
