"""Write the output tables as Hive-partitioned Parquet under a staging root.

Rows are grouped by partition (workstream, completed date) as Arrow tables, sorted inside the
partition by (task_completed_at, input order) so the files are identical whatever the runner,
and written one file per partition per run. ``throughput_daily`` is aggregated from the very
table written beside it, so the two always agree. Partition columns live in the path only.
Each writer emits counts, including the files it staged, for the commit to move into place.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any
from urllib.parse import quote

import apache_beam as beam
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from schemas.tables import REJECTS, TASK_COMPLETED, THROUGHPUT_DAILY, TableSpec

__all__ = ["WriteRejects", "WriteTables", "daily_throughput", "partition_path", "write_parquet"]

_DAILY_GROUP = ["use_case_id", "task_definition_id", "worker_id"]


class WriteTables(beam.PTransform):
    """Kept batches -> task_completed and throughput_daily files; emits counts."""

    def __init__(self, staging_root: str, run_id: str) -> None:
        super().__init__()
        self._root = staging_root
        self._run_id = run_id

    def expand(self, batches: beam.PCollection[pa.RecordBatch]) -> beam.PCollection[dict[str, Any]]:
        return (
            batches
            | "SplitByPartition" >> beam.FlatMap(_split_by_partition)
            | "GroupPartitions" >> beam.GroupByKey()
            | "WritePartition" >> beam.Map(_write_partition, root=self._root, run_id=self._run_id)
        )


class WriteRejects(beam.PTransform):
    """Rejects batches -> one rejects file of the run, in input order; emits counts."""

    def __init__(self, staging_root: str, run_id: str) -> None:
        super().__init__()
        self._root = staging_root
        self._run_id = run_id

    def expand(self, batches: beam.PCollection[pa.RecordBatch]) -> beam.PCollection[dict[str, Any]]:
        return (
            batches
            | "OneGroup" >> beam.Map(_keyed_by, self._run_id)
            | "GatherRejects" >> beam.GroupByKey()
            | "WriteRejectsFile" >> beam.Map(_write_rejects, root=self._root)
        )


def partition_path(root: str, table: TableSpec, values: Iterable[str]) -> str:
    """``root/<table>/<col>=<value>/...``; values URL-quoted as Hive and pyarrow expect."""
    segments = [f"{name}={quote(str(value), safe='')}" for name, value in zip(table.partition_by, values)]
    return FileSystems.join(root, table.name, *segments)


def write_parquet(table: pa.Table, path: str) -> None:
    """Write one Parquet file through Beam's FileSystems (local, gs://, s3://...)."""
    with FileSystems.create(path) as handle:
        pq.write_table(table, handle, compression="zstd")


def daily_throughput(rows: pa.Table) -> pa.Table:
    """Aggregate one partition of task_completed into throughput_daily rows (file schema)."""
    grouped = rows.group_by(_DAILY_GROUP, use_threads=False).aggregate([
        ("worker_id", "count"),
        ("task_count", "sum"),
        ("subtask_count", "sum"),
        ("duration", "sum"),
        ("task_completed_at", "min"),
        ("task_completed_at", "max"),
    ])
    renamed = grouped.rename_columns({
        "worker_id_count": "records", "task_count_sum": "task_count", "subtask_count_sum": "subtask_count",
        "duration_sum": "duration", "task_completed_at_min": "first_completed_at",
        "task_completed_at_max": "last_completed_at",
    })
    return renamed.select(THROUGHPUT_DAILY.file_schema.names).sort_by([(c, "ascending") for c in _DAILY_GROUP]) \
        .cast(THROUGHPUT_DAILY.file_schema)


def _split_by_partition(batch: pa.RecordBatch) -> Iterator[tuple[tuple[str, str], pa.Table]]:
    dates = pc.cast(batch.column("task_completed_at"), pa.date32())
    table = pa.Table.from_batches([batch]).append_column("completed_date", dates)
    keys = pa.table({"w": table.column("workstream_id"), "d": dates}).group_by(["w", "d"]).aggregate([])
    for workstream, day in zip(keys.column("w").to_pylist(), keys.column("d").to_pylist()):
        mask = pc.and_(pc.equal(table.column("workstream_id"), workstream), pc.equal(dates, pa.scalar(day, pa.date32())))
        yield (workstream, day.isoformat()), table.filter(mask)


def _write_partition(group: tuple[tuple[str, str], Iterable[pa.Table]], root: str, run_id: str) -> dict[str, Any]:
    key, tables = group
    rows = pa.concat_tables(tables).sort_by([("task_completed_at", "ascending"), ("_seq", "ascending")])
    rows = rows.append_column("run_id", pa.array([run_id] * rows.num_rows, pa.string()))
    rows = rows.select(TASK_COMPLETED.file_schema.names).cast(TASK_COMPLETED.file_schema)
    daily = daily_throughput(rows)
    name = f"part-{run_id}.parquet"
    written = []
    for spec, table in ((TASK_COMPLETED, rows), (THROUGHPUT_DAILY, daily)):
        path = FileSystems.join(partition_path(root, spec, key), name)
        write_parquet(table, path)
        written.append(path)
    return {
        "written": rows.num_rows,
        "tables": {TASK_COMPLETED.name: {"rows": rows.num_rows, "files": 1},
                   THROUGHPUT_DAILY.name: {"rows": daily.num_rows, "files": 1}},
        "staged_files": written,
    }


def _keyed_by(batch: pa.RecordBatch, key: str) -> tuple[str, pa.Table]:
    return key, pa.Table.from_batches([batch])


def _write_rejects(group: tuple[str, Iterable[pa.Table]], root: str) -> dict[str, Any]:
    run_id, tables = group
    rows = pa.concat_tables(tables).sort_by("_seq").select(REJECTS.file_schema.names).cast(REJECTS.file_schema)
    path = FileSystems.join(partition_path(root, REJECTS, [run_id]), "part-00000.parquet")
    write_parquet(rows, path)
    return {"tables": {REJECTS.name: {"rows": rows.num_rows, "files": 1}}, "staged_files": [path]}
