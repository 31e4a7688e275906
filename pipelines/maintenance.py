"""``throughput backfill`` and ``throughput compact``: the other two jobs an operator runs.

A backfill is a sequence of ordinary runs over the inputs cut into chunks (in SPEC 2.4's file
order), each committed before the next starts. The ledger makes it resumable: run the same
command again after a crash and the chunks already committed are skipped file by file.

Compaction rewrites each partition that holds several files (one per nightly run) into one
file, sorted, through the same commit journal as a run, so readers never see a row twice or
lose one.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any

import apache_beam as beam
import pyarrow as pa
from apache_beam.io.filesystems import FileSystems

from pipelines.commit import Journal, StagedRun, recover
from pipelines.run import Progress, RunOptions, RunResult, _quiet, pipeline_options_from, resolve_inputs, run
from schemas.tables import TASK_COMPLETED, THROUGHPUT_DAILY, TableSpec
from transforms.counts import WriteCounts
from transforms.files import list_files, read_json, read_parquet, write_parquet

__all__ = ["backfill", "compact", "plan_chunks"]

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
             progress: Progress = _quiet,
             on_chunk: Callable[[int, int, RunResult], None] | None = None) -> list[RunResult]:
    """Ingest many files as a sequence of committed runs of about ``chunk_bytes`` each.

    ``progress`` hears "chunk i/n" before each chunk and then the chunk's own steps;
    ``on_chunk(i, n, result)`` is called as each chunk commits.
    """
    files = resolve_inputs(options.inputs, options.file_format)
    sizes = [(f.path, FileSystems.match([f.path])[0].metadata_list[0].size_in_bytes) for f in files]
    base = options.run_id or f"{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"
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
    """Rewrite every partition with more than one file into one file; commits like a run."""
    for action in recover(output):
        print(action, file=sys.stderr)
    run_id = f"compact-{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"
    work = []
    for table in tables:
        by_partition: dict[str, list[str]] = {}
        for path in list_files(FileSystems.join(output, table.name, "**.parquet")):
            by_partition.setdefault(FileSystems.split(path)[0], []).append(path)
        work += [(table.name, folder, files) for folder, files in sorted(by_partition.items()) if len(files) > 1]
    staging = StagedRun.begin(output, run_id)
    counts: dict[str, Any] = {}
    if work:
        with beam.Pipeline(options=pipeline_options_from(beam_args)) as pipeline:
            (
                pipeline
                | "Partitions" >> beam.Create(work)
                | "CompactPartition" >> beam.Map(_compact_partition, output=output, staging=staging)
                | "WriteCounts" >> WriteCounts(staging.counts_path)
            )
        counts = read_json(staging.counts_path)
    manifest = {"run_id": run_id, "status": "committed", "kind": "compaction",
                "partitions_compacted": len(work), "files_retired": len(counts.get("retired_files", [])),
                "rows": counts.get("rows", 0)}
    Journal.of_staged(staging, counts, manifest).commit()
    return manifest


def _compact_partition(item: tuple[str, str, list[str]], output: str, staging: StagedRun) -> dict[str, Any]:
    table_name, folder, files = item
    rows = pa.concat_tables([read_parquet(path) for path in files]).sort_by(_SORT[table_name])
    relative = folder[len(output.rstrip("/")) + 1:]
    target = FileSystems.join(staging.root, relative, f"part-{staging.run_id}.parquet")
    write_parquet(rows, target)
    return {"staged_files": [target], "retired_files": list(files), "rows": rows.num_rows}
