"""Write the output tables as Hive-partitioned Parquet under a staging root.

Rows are spilled to Arrow IPC files by partition (workstream, completed date) and only
references cross the shuffle. Each partition writer applies the run's dedupe changes, sorts
the rows by (task_completed_at, input order) so files are identical whatever the runner, and
writes one new file per partition per run; an earlier file is rewritten only when it loses
rows. ``throughput_daily`` is recomputed (or, when the run only adds rows, merged) from what the
partition holds, so the two tables always agree. Partition columns live in the path only.
Each writer emits counts, including the files it staged and retired, for the commit.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import apache_beam as beam
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from schemas.tables import REJECTS, TASK_COMPLETED, THROUGHPUT_DAILY, TableSpec
from transforms.changes import Partition, PartitionChange, PartitionChanges, RemoveFiles, SpilledRows
from transforms.coders import register_arrow_coders
from transforms.counts import CommitFiles, StageReport, TableCounts
from transforms.dedupe import has_key_in
from transforms.files import created, list_files, read_parquet, write_parquet
from transforms.gather import GatherRows
from transforms.layout import OutputLayout

__all__ = ["WriteRejects", "WriteTables", "daily_throughput", "merge_daily", "prune_rejects"]

register_arrow_coders()  # rejects cross the shuffle as Arrow IPC, not pickles

_DAILY_GROUP = ["use_case_id", "task_definition_id", "worker_id"]
_DAILY_COLUMNS = [*_DAILY_GROUP, "task_count", "subtask_count", "duration", "task_completed_at"]
_PROBE_COLUMNS = [*_DAILY_COLUMNS, "unique_id", "source_file"]  # an earlier file's rows: which leave, and daily


class WriteTables(beam.PTransform):
    """New rows, plus removals of earlier rows -> rewritten task_completed/throughput_daily partitions.

    Input: ``{"rows": accepted batches, "changes": DedupeByKey's changes}`` (typed messages of
    ``transforms.changes``). ``reprocessed`` maps a partition to the files whose earlier rows
    leave it. Every touched partition gets the run's surviving rows
    as a new file, has only the files that lose rows rewritten, and its throughput_daily
    recomputed from what the partition then holds.
    """

    def __init__(self, staging: OutputLayout, run_id: str, output: OutputLayout | None = None,
                 reprocessed: Mapping[Partition, Sequence[str]] | None = None, spill_rows: int = 100_000) -> None:
        super().__init__()
        self._spill_rows = spill_rows
        self._root = staging
        self._run_id = run_id
        self._output = output
        self._reprocessed = sorted((key, RemoveFiles(tuple(sorted(files)))) for key, files in (reprocessed or {}).items())

    def expand(self, inputs: dict[str, beam.PCollection] | beam.PCollection) -> beam.PCollection[StageReport]:
        if isinstance(inputs, beam.PCollection):  # new rows only: nothing earlier to remove
            inputs = {"rows": inputs}
        parts = [inputs["rows"] | "SpillByPartition" >> beam.ParDo(_SpillFn(self._root, self._spill_rows))]
        if "changes" in inputs:
            parts.append(inputs["changes"])
        if self._reprocessed:
            parts.append(inputs["rows"].pipeline | "ReprocessedPartitions" >> beam.Create(self._reprocessed))
        return (
            parts
            | "AllChanges" >> beam.Flatten()
            | "GroupPartitions" >> beam.GroupByKey()
            | "RewritePartition" >> beam.Map(_rewrite_partition, root=self._root, run_id=self._run_id,
                                             output=self._output)
        )


class WriteRejects(beam.PTransform):
    """Rejects batches -> one rejects file of the run, in input order; emits counts."""

    def __init__(self, staging: OutputLayout, run_id: str) -> None:
        super().__init__()
        self._root = staging
        self._run_id = run_id

    def expand(self, batches: beam.PCollection[pa.RecordBatch]) -> beam.PCollection[StageReport]:
        return (
            batches
            | "OneGroup" >> beam.Map(_keyed_by, self._run_id).with_output_types(tuple[str, pa.Table])
            | "GatherRejects" >> beam.GroupByKey()
            | "WriteRejectsFile" >> beam.Map(_write_rejects, root=self._root)
        )


def daily_throughput(rows: pa.Table) -> pa.Table:
    """Aggregate one partition of task_completed into throughput_daily rows (file schema)."""
    return _aggregate_daily(rows, _FROM_ROWS)


def merge_daily(parts: list[pa.Table]) -> pa.Table:
    """Combine throughput_daily rows of one partition (e.g. earlier rows and a run's new ones)."""
    return _aggregate_daily(pa.concat_tables([p.cast(THROUGHPUT_DAILY.file_schema) for p in parts]), _FROM_DAILY)


# (input column, aggregate, throughput_daily column): from task_completed rows, and from daily rows
_FROM_ROWS = [("worker_id", "count", "records"), ("task_count", "sum", "task_count"),
              ("subtask_count", "sum", "subtask_count"), ("duration", "sum", "duration"),
              ("task_completed_at", "min", "first_completed_at"), ("task_completed_at", "max", "last_completed_at")]
_FROM_DAILY = [("records", "sum", "records"), ("task_count", "sum", "task_count"),
               ("subtask_count", "sum", "subtask_count"), ("duration", "sum", "duration"),
               ("first_completed_at", "min", "first_completed_at"), ("last_completed_at", "max", "last_completed_at")]


def _aggregate_daily(table: pa.Table, spec: list[tuple[str, str, str]]) -> pa.Table:
    grouped = table.group_by(_DAILY_GROUP, use_threads=False).aggregate([(column, op) for column, op, _ in spec])
    renamed = grouped.rename_columns({f"{column}_{op}": target for column, op, target in spec})
    for name in ("task_count", "subtask_count"):
        # Counts are >= 0 and at most 10**12 each, so a 64-bit sum that wrapped is negative: fail, never wrap.
        if (pc.min(renamed.column(name)).as_py() or 0) < 0:
            raise OverflowError(f"throughput_daily.{name} would exceed 2**63-1 for one worker and day; "
                                "the input counts are implausible")
    return renamed.select(THROUGHPUT_DAILY.file_schema.names).sort_by([(c, "ascending") for c in _DAILY_GROUP]) \
        .cast(THROUGHPUT_DAILY.file_schema)


class _SpillFn(GatherRows):
    """Write rows to Arrow IPC files in staging, one record batch per partition per file.

    Only (path, batch number) crosses the shuffle to the partition writers, so memory holds
    ``spill_rows`` rows here and one partition there, never the run's rows (an in-process runner
    keeps a shuffle in memory). Batches are gathered up to ``spill_rows`` before a file is
    written, so a partition writer opens few files, however small the chunks. The default is
    100,000, not more: gathering and sorting 250,000 full rows held about 130 MB more per
    worker for no gain in time (1M records, two workers: peak 1.55 -> 1.29 GB).
    """

    def __init__(self, root: OutputLayout, spill_rows: int) -> None:
        super().__init__(spill_rows)
        self._root = root

    def gathered(self, table: pa.Table) -> Iterator[tuple[Partition, SpilledRows]]:
        dates = pc.cast(table.column("task_completed_at"), pa.date32())
        keyed = pa.table({"w": table.column("workstream_id"), "d": dates})
        order = pc.sort_indices(keyed, sort_keys=[("w", "ascending"), ("d", "ascending")])
        table, keyed = table.take(order), keyed.take(order)
        # runs of equal (workstream, date) in the sorted rows, in order: the partitions' slices
        runs = pc.run_end_encode(pc.binary_join_element_wise(
            keyed.column("w"), pc.cast(keyed.column("d"), pa.string()), "\x1f").combine_chunks())
        ends = runs.run_ends.to_pylist()
        firsts = pa.array([0, *ends[:-1]], pa.int64())
        partitions = list(zip(keyed.column("w").take(firsts).to_pylist(),
                              (d.isoformat() for d in keyed.column("d").take(firsts).to_pylist())))
        path = self._root.fragment(f"rows-{pc.min(table.column('_seq')).as_py():020d}.arrow")
        offset = number = 0
        with created(path) as stream, pa.ipc.new_file(stream, table.schema) as writer:
            for partition, end in zip(partitions, ends):
                for batch in table.slice(offset, end - offset).combine_chunks().to_batches():
                    writer.write_batch(batch)
                    yield partition, SpilledRows(path, number)
                    number += 1
                offset = end


def _read_spilled(references: Iterable[tuple[str, int]]) -> Iterator[pa.RecordBatch]:
    by_path: dict[str, list[int]] = {}
    for path, number in references:
        by_path.setdefault(path, []).append(number)
    for path, numbers in sorted(by_path.items()):
        with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
            reader = pa.ipc.open_file(handle)
            for number in sorted(numbers):
                yield reader.get_batch(number)


def _rewrite_partition(group: tuple[Partition, Iterable[PartitionChange]], root: OutputLayout, run_id: str,
                       output: OutputLayout | None) -> StageReport:
    """Bring one (workstream, date) partition of both tables to its state after this run."""
    partition, messages = group
    changes = PartitionChanges.gather(messages)
    earlier = _prune_earlier(partition, changes, root, run_id, output)
    new_rows = _new_rows(changes, run_id)
    staged = list(earlier.staged)
    file_partitions: dict[str, list[tuple[str, str]]] = {}
    if new_rows.num_rows:
        target = root.part_file(TASK_COMPLETED, partition, run_id)
        write_parquet(new_rows, target, TASK_COMPLETED.repeating)
        staged.append(target)
        file_partitions = {path: [partition] for path in pc.unique(new_rows.column("source_file")).to_pylist()}
    daily, earlier_daily = _daily_after(partition, earlier, new_rows, changes, output)
    if daily.num_rows:
        target = root.part_file(THROUGHPUT_DAILY, partition, run_id)
        write_parquet(daily, target, THROUGHPUT_DAILY.repeating)
        staged.append(target)
    written = new_rows.num_rows
    return StageReport.of(
        written=written,
        tables={TASK_COMPLETED.name: TableCounts(written, int(bool(written)), earlier.removed),
                THROUGHPUT_DAILY.name: TableCounts(daily.num_rows, int(bool(daily.num_rows)))},
        files=CommitFiles(staged, earlier.retired + earlier_daily, file_partitions),
    )


@dataclass
class _Earlier:
    """The partition's earlier task_completed files after pruning: what stays (daily columns
    only), the rewritten files staged, the files retired and the rows removed."""

    kept: list[pa.Table] = field(default_factory=list)
    staged: list[str] = field(default_factory=list)
    retired: list[str] = field(default_factory=list)
    removed: int = 0


def _prune_earlier(partition: Partition, changes: PartitionChanges, root: OutputLayout, run_id: str,
                   output: OutputLayout | None) -> _Earlier:
    """Rewrite only the earlier files that lose rows. Without removals the earlier files stay as
    they are and are not even read: the cost follows the night's rows, not the partition's history."""
    earlier = _Earlier()
    if output is None or not changes.removes_earlier_rows:
        return earlier
    for number, path in enumerate(list_files(output.partition_files(TASK_COMPLETED, partition))):
        probe = read_parquet(path, _PROBE_COLUMNS)  # one read: what decides, and what a kept file adds to daily
        doomed = _rows_to_remove(probe, partition[0], changes.remove_keys, changes.remove_files)
        dropped = pc.sum(doomed).as_py() or 0
        if not dropped:
            earlier.kept.append(probe.select(_DAILY_COLUMNS))
            continue
        target = root.part_file(TASK_COMPLETED, partition, run_id, f"-r{number}")
        rows = _rewrite_without(path, doomed, target, TASK_COMPLETED)
        earlier.removed += dropped
        earlier.retired.append(path)
        if rows.num_rows:
            earlier.staged.append(target)
            earlier.kept.append(rows.select(_DAILY_COLUMNS))
    return earlier


def _rewrite_without(path: str, doomed: pa.Array, target: str, table: TableSpec) -> pa.Table:
    """An earlier file's rows less the doomed ones, staged at ``target`` unless none are left."""
    kept = read_parquet(path).filter(pc.invert(doomed))
    if kept.num_rows:
        write_parquet(kept, target, table.repeating)
    return kept


def _new_rows(changes: PartitionChanges, run_id: str) -> pa.Table:
    """This run's surviving rows of the partition, sorted, in the table's file schema."""
    if not changes.spilled:
        return TASK_COMPLETED.file_schema.empty_table()
    rows = pa.Table.from_batches(list(_read_spilled(changes.spilled)))
    if changes.drop:
        rows = rows.filter(pc.invert(pc.is_in(rows.column("_seq"), value_set=pa.array(sorted(changes.drop), pa.int64()))))
    rows = rows.sort_by([("task_completed_at", "ascending"), ("_seq", "ascending")])
    rows = rows.append_column("run_id", pa.repeat(pa.scalar(run_id, pa.string()), rows.num_rows))
    return rows.select(TASK_COMPLETED.file_schema.names).cast(TASK_COMPLETED.file_schema)


def _daily_after(partition: Partition, earlier: _Earlier, new_rows: pa.Table, changes: PartitionChanges,
                 output: OutputLayout | None) -> tuple[pa.Table, list[str]]:
    """The partition's throughput_daily after this run, and the earlier daily files it retires.

    When rows leave, it is recomputed from the rows that stay; when the run only adds rows, the
    new rows' aggregate is merged into the earlier daily rows."""
    earlier_daily = list_files(output.partition_files(THROUGHPUT_DAILY, partition)) if output else []
    current = [*earlier.kept, new_rows.select(_DAILY_COLUMNS)] if new_rows.num_rows else list(earlier.kept)
    daily = daily_throughput(pa.concat_tables(current)) if current else THROUGHPUT_DAILY.file_schema.empty_table()
    if not changes.removes_earlier_rows and earlier_daily:
        daily = merge_daily([read_parquet(path) for path in earlier_daily] + [daily])
    return daily, earlier_daily


def _rows_to_remove(probe: pa.Table, workstream: str, keys: set[str], files: set[str]) -> pa.Array:
    drop = pc.is_in(probe.column("source_file"), value_set=pa.array(sorted(files), pa.string()))
    if keys:
        drop = pc.or_(drop, has_key_in({"workstream_id": pa.repeat(pa.scalar(workstream, pa.string()), probe.num_rows),
                                        "use_case_id": probe.column("use_case_id"),
                                        "task_definition_id": probe.column("task_definition_id"),
                                        "unique_id": probe.column("unique_id")}, keys))
    return drop


def prune_rejects(output: OutputLayout, staging: OutputLayout, run_id: str, files: Sequence[str] = (),
                  rows: Sequence[tuple[str, int]] = ()) -> StageReport:
    """Earlier rejects leave the rejects table: every one of reprocessed ``files``, and the retried
    ``rows`` (file, line). The table shows the problems that stand today, not every attempt.
    Only the rejects files holding such rows are rewritten."""
    if not files and not rows:
        return StageReport()
    leaving_files = pa.array(sorted(files), pa.string())
    leaving_rows = pa.array(sorted(f"{line}\x1f{path}" for path, line in rows), pa.string())
    staged: list[str] = []
    retired: list[str] = []
    removed = 0
    for number, path in enumerate(list_files(output.table_files(REJECTS))):
        probe = read_parquet(path, ["source_file", "source_line"])
        line = pc.cast(probe.column("source_line"), pa.string())
        where = pc.binary_join_element_wise(line, probe.column("source_file"), "\x1f")
        doomed = pc.or_(pc.is_in(probe.column("source_file"), value_set=leaving_files),
                        pc.is_in(where, value_set=leaving_rows))
        dropped = pc.sum(doomed).as_py() or 0
        if not dropped:
            continue
        target = staging.part_file(REJECTS, [output.partition_of(path)["run_id"]], run_id, f"-r{number}")
        removed += dropped
        retired.append(path)
        if _rewrite_without(path, doomed, target, REJECTS).num_rows:
            staged.append(target)
    return StageReport.of(tables={REJECTS.name: TableCounts(rows_removed=removed)}, files=CommitFiles(staged, retired))


def _keyed_by(batch: pa.RecordBatch, key: str) -> tuple[str, pa.Table]:
    return key, pa.Table.from_batches([batch])


def _write_rejects(group: tuple[str, Iterable[pa.Table]], root: OutputLayout) -> StageReport:
    run_id, tables = group
    rows = pa.concat_tables(tables).sort_by("_seq").select(REJECTS.file_schema.names).cast(REJECTS.file_schema)
    path = root.rejects_file(run_id)
    write_parquet(rows, path, REJECTS.repeating)
    return StageReport.of(tables={REJECTS.name: TableCounts(rows.num_rows, 1)}, files=CommitFiles([path]))
