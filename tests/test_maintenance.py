"""Backfills in committed chunks (resumable), and compaction that changes no row."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from pipelines.commit import RunError
from pipelines.maintenance import backfill, compact, plan_chunks
from pipelines.run import RunOptions
from tests.conftest import record, write_jsonl


def _rows(out: Path) -> list[tuple]:
    return duckdb.sql(f"select workstream_id, completed_date, worker_id, unique_id, source_file, source_line "
                      f"from read_parquet('{out}/task_completed/**/*.parquet', hive_partitioning=true) "
                      f"order by all").fetchall()


def _daily(out: Path) -> list[tuple]:
    return duckdb.sql(f"select * from read_parquet('{out}/throughput_daily/**/*.parquet', hive_partitioning=true) "
                      f"order by all").fetchall()


def test_plan_chunks_keeps_file_order_and_size() -> None:
    sizes = [("a", 40), ("b", 40), ("c", 100), ("d", 10), ("e", 10)]
    assert plan_chunks(sizes, 90) == [["a", "b"], ["c"], ["d", "e"]]
    assert plan_chunks(sizes, 1) == [["a"], ["b"], ["c"], ["d"], ["e"]]


def _history(tmp_path: Path) -> list[Path]:
    """Four monthly exports; a key corrected in a later month."""
    files = []
    for month in range(1, 5):
        rows = [record(worker_id=f"m{month}-{i}", task_completed_at=f"2020-0{month}-1{i}T10:00:00Z",
                       task_started_at=f"2020-0{month}-1{i}T09:00:00Z", unique_id=f"u{month}-{i}")
                for i in range(3)]
        if month == 3:
            rows.append(record(worker_id="correction", unique_id="u1-0"))
        files.append(write_jsonl(tmp_path / "history" / f"2020-0{month}.jsonl", rows))
    return files


def test_backfill_in_chunks_equals_one_run(tmp_path: Path, config_file: Path) -> None:
    _history(tmp_path)
    pattern = str(tmp_path / "history" / "*.jsonl")
    chunked = backfill(RunOptions(inputs=(pattern,), output=str(tmp_path / "chunked"), workstreams=str(config_file)),
                       chunk_bytes=1)
    assert len(chunked) == 4
    assert sum(r.manifest["counts"]["replaced_existing"] for r in chunked) == 1
    whole = backfill(RunOptions(inputs=(pattern,), output=str(tmp_path / "whole"), workstreams=str(config_file)),
                     chunk_bytes=1 << 30)
    assert len(whole) == 1
    assert _rows(tmp_path / "chunked") == [
        (w, d, wk, u, f.replace("chunked", "whole"), line) for w, d, wk, u, f, line in _rows(tmp_path / "whole")]
    assert len(_rows(tmp_path / "whole")) == 12


def test_backfill_resumes_after_a_failed_chunk(tmp_path: Path, config_file: Path) -> None:
    files = _history(tmp_path)
    files[2].write_text("bad\n" * 3)  # chunk 3 is all rejects: over the limit below, the backfill stops
    options = RunOptions(inputs=(str(tmp_path / "history" / "*.jsonl"),), output=str(tmp_path / "out"),
                         workstreams=str(config_file), max_reject_rate=0.5)
    with pytest.raises(RunError, match="reject rate"):
        backfill(options, chunk_bytes=1)
    assert len(_rows(tmp_path / "out")) == 6  # the first two chunks are committed
    _history(tmp_path)  # the export is fixed
    resumed = backfill(options, chunk_bytes=1)
    assert [r.manifest["counts"]["read"] for r in resumed] == [0, 0, 4, 3]  # done chunks are skipped
    assert len(_rows(tmp_path / "out")) == 12


def test_compaction_merges_files_and_changes_no_row(tmp_path: Path, config_file: Path) -> None:
    out = tmp_path / "out"
    for night in range(3):
        path = write_jsonl(tmp_path / "in" / f"n{night}.jsonl",
                           [record(worker_id=f"w{night}-{i}", unique_id=f"n{night}-{i}") for i in range(2)])
        backfill(RunOptions(inputs=(str(path),), output=str(out), workstreams=str(config_file)))
    partition = out / "task_completed" / "workstream_id=ws-ner" / "completed_date=2020-12-22"
    assert len(list(partition.glob("*.parquet"))) == 3
    rows, daily = _rows(out), _daily(out)
    manifest = compact(str(out))
    assert manifest["partitions_compacted"] == 1
    assert len(list(partition.glob("*.parquet"))) == 1
    assert _rows(out) == rows
    assert _daily(out) == daily
    assert compact(str(out))["partitions_compacted"] == 0
