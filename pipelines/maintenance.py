"""``throughput backfill`` and ``throughput compact``: the other two jobs an operator runs.

A backfill is a sequence of ordinary runs over the inputs cut into chunks (in SPEC 2.4's file
order), each committed before the next starts. The ledger makes it resumable: run the same
command again after a crash and the chunks already committed are skipped file by file.

Compaction rewrites each partition that holds several files (one per nightly run) into one
file, sorted, through the same commit journal as a run, so readers never see a row twice or
lose one.
"""

from __future__ import annotations

import logging
import posixpath
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from typing import Any

import apache_beam as beam
import pyarrow as pa
from apache_beam.io.filesystems import FileSystems

from pipelines.commit import Journal, StagedRun, recover
from pipelines.errors import RunError
from pipelines.lock import hold_output
from pipelines.run import Progress, RunOptions, RunResult, pipeline_options_from, quiet, resolve_inputs, run
from schemas.tables import TASK_COMPLETED, THROUGHPUT_DAILY, TableSpec
from transforms.counts import CommitFiles, StageReport, WriteCounts
from transforms.files import list_files, read_json, read_parquet, write_parquet
from transforms.layout import LayoutError, OutputLayout, check_run_id, new_run_id

__all__ = ["backfill", "compact", "plan_chunks"]

_LOG = logging.getLogger("throughput")
_SORT = {
    TASK_COMPLETED.name: [("task_completed_at", "ascending"), ("source_file", "ascending"), ("source_line", "ascending")],
    THROUGHPUT_DAILY.name: [("use_case_id", "ascending"), ("task_definition_id", "ascending"), ("worker_id", "ascending")],
}


def plan_chunks(sizes: Sequence[tuple[str, int]], chunk_bytes: int) -> list[list[str]]:
    """Consecutive files grouped up to ``chunk_bytes`` each (a larger file is a chunk alone)."""
    chunks: list[list[str]] = []
    current: list[str] = []
    used = 0
    for path, size in sizes:
        if current and used + size > chunk_bytes:
            chunks.append(current)
            current, used = [], 0
        current.append(path)
        used += size
    if current:
        chunks.append(current)
    return chunks


def backfill(options: RunOptions, beam_args: Sequence[str] = (), chunk_bytes: int = 256 << 20,
             progress: Progress = quiet,
             on_chunk: Callable[[int, int, RunResult], None] | None = None) -> list[RunResult]:
    """Ingest many files as a sequence of committed runs of about ``chunk_bytes`` each.

    ``progress`` hears "chunk i/n" before each chunk and then the chunk's own steps;
    ``on_chunk(i, n, result)`` is called as each chunk commits.
    """
    files = resolve_inputs(options.inputs, options.file_format)
    sizes = [(f.path, FileSystems.match([f.path])[0].metadata_list[0].size_in_bytes) for f in files]
    try:
        base = check_run_id(options.run_id) if options.run_id is not None else new_run_id()
    except LayoutError as exc:
        raise RunError(str(exc)) from None
    results = []
    chunks = plan_chunks(sizes, chunk_bytes)
    for number, chunk in enumerate(chunks, start=1):
        progress(f"chunk {number}/{len(chunks)}")
        chunk_options = replace(options, inputs=tuple(chunk), run_id=f"{base}-chunk{number:04d}")
        results.append(run(chunk_options, beam_args, progress))
        if on_chunk is not None:
            on_chunk(number, len(chunks), results[-1])
    return results


def compact(output: str, tables: Iterable[TableSpec] = (TASK_COMPLETED, THROUGHPUT_DAILY),
            beam_args: Sequence[str] = ()) -> dict[str, Any]:
    """Rewrite every partition with more than one file into one file; commits like a run.

    It also migrates an output whose partition folders were named the old way (every
    non-ASCII byte URL-quoted) to the names Hive and Spark write.
    """
    try:
        layout = OutputLayout.at(output)
    except LayoutError as exc:
        raise RunError(str(exc)) from None
    run_id = new_run_id("compact-")
    with hold_output(layout, run_id):
        for action in recover(layout):
            _LOG.warning("%s", action)
        work, renames = _compaction_work(layout, tables)
        staging = StagedRun.begin(layout, run_id)
        report = StageReport()
        if work:
            with beam.Pipeline(options=pipeline_options_from(beam_args)) as pipeline:
                (
                    pipeline
                    | "Partitions" >> beam.Create(work)
                    | "CompactPartition" >> beam.Map(_compact_partition, staging=staging)
                    | "WriteCounts" >> WriteCounts(staging.counts_path)
                )
            report = StageReport.from_json(read_json(staging.counts_path))
        manifest = {"run_id": run_id, "status": "committed", "kind": "compaction",
                    "partitions_compacted": len(work), "partition_folders_renamed": len({dst for _, dst in renames}),
                    "files_retired": len(report.files.retired), "rows": report.counts.rows}
        journal = Journal.of_staged(staging, report.files.staged, report.files.retired, manifest)
        journal.moves += renames
        journal.deletes += layout.legacy_partition_folders()  # emptied by the moves and merges above
        journal.moves += staging.layout_marker()
        journal.commit()
    return manifest


def _compaction_work(layout: OutputLayout, tables: Iterable[TableSpec]
                     ) -> tuple[list[tuple[str, tuple[str, ...], list[str]]], list[tuple[str, str]]]:
    """Partitions to merge (table, values, files), and single files to move to their partition's new name."""
    work: list[tuple[str, tuple[str, ...], list[str]]] = []
    renames: list[tuple[str, str]] = []
    for table in tables:
        by_partition: dict[tuple[str, ...], list[str]] = {}
        for path in list_files(layout.table_files(table)):
            found = layout.partition_of(path)
            values = tuple(found[column] for column in table.partition_by)
            by_partition.setdefault(values, []).append(path)
        for values, paths in sorted(by_partition.items()):
            folder = layout.partition(table, values)
            if len(paths) > 1:
                work.append((table.name, values, paths))
            elif posixpath.dirname(paths[0]) != folder:
                renames.append((paths[0], FileSystems.join(folder, posixpath.basename(paths[0]))))
    return work, renames


def _compact_partition(item: tuple[str, tuple[str, ...], list[str]], staging: StagedRun) -> StageReport:
    table_name, values, files = item
    table = TASK_COMPLETED if table_name == TASK_COMPLETED.name else THROUGHPUT_DAILY
    rows = pa.concat_tables([read_parquet(path) for path in files]).sort_by(_SORT[table_name])
    target = staging.area.part_file(table, values, staging.run_id)
    write_parquet(rows, target, table.repeating)
    return StageReport.of(rows=rows.num_rows, files=CommitFiles([target], list(files)))
