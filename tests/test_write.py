"""WriteTables / WriteRejects / daily_throughput: Hive-partitioned Parquet of SPEC 5."""

from __future__ import annotations

import json
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

import apache_beam as beam
import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to

from schemas.config import WorkstreamConfig
from schemas.tables import REJECTS, TASK_COMPLETED, THROUGHPUT_DAILY
from tests.conftest import TD, TD2, UC, record
from transforms.counts import StageReport, SumCounts
from transforms.durations import derive_durations
from transforms.layout import OutputLayout
from transforms.read import RawChunk
from transforms.validate import validate_chunk
from transforms.write import WriteRejects, WriteTables, daily_throughput

RUN = "run-1"
UTC = timezone.utc


def _validated(config: WorkstreamConfig, rows: list[Any], file_index: int, source: str) -> tuple[pa.RecordBatch, pa.RecordBatch]:
    lines = list(range(1, len(rows) + 1))
    raws = [r if isinstance(r, bytes) else json.dumps(r).encode() for r in rows]
    chunk = RawChunk(source, file_index, "jsonl", None, lines=lines, raws=raws,
                     cells=[None] * len(rows), problems=[None] * len(rows))
    accepted, rejects, _ = validate_chunk(chunk, config)
    return derive_durations(accepted), rejects


def _times(completed: str, started: str | None = None) -> dict[str, str]:
    return {"task_started_at": started or "2020-12-20T00:00:00Z", "task_completed_at": completed}


AUDIO = {"workstream_id": "ws-audio", "use_case_id": "uc-audio", "task_definition_id": "td-transcribe"}

FILE_A = [
    record(worker_id="w1", task_count=2, subtask_count=3, duration=10, task_metadata={"k": 1},
           **_times("2020-12-22T10:00:00Z")),                                     # a:1 ws-ner 12-22
    record(worker_id="w1", **_times("2020-12-22T08:00:00Z", "2020-12-22T07:00:00Z")),  # a:2 derived 3600
    b"not json",                                                                  # a:3 reject
    record(worker_id="w2", task_definition_id=TD2, duration=1.5,
           **_times("2020-12-22T23:30:00-01:00")),                                # a:4 ws-ner 12-23 (UTC date)
    record(worker_id="w3", duration=2, **AUDIO, **_times("2020-12-22T12:00:00Z")),  # a:5 ws-audio 12-22
]
FILE_B = [
    record(worker_id="w1", task_count=5, subtask_count=4, duration=20.25,
           **_times("2020-12-22T10:00:00Z")),                                     # b:1 same instant as a:1
    record(worker_id="w4", duration=7, **_times("2020-12-22T09:00:00Z")),         # b:2
    record(worker_id="w3", duration=3, **AUDIO, **_times("2020-12-21T12:00:00Z")),  # b:3 ws-audio 12-21
    record(task_count=-1),                                                        # b:4 reject
    record(worker_id=""),                                                         # b:5 reject
]

PARTITIONS = [("ws-ner", "2020-12-22"), ("ws-ner", "2020-12-23"), ("ws-audio", "2020-12-22"), ("ws-audio", "2020-12-21")]


def _expected_paths(root: Path) -> list[str]:
    paths = [str(root / t / f"workstream_id={w}" / f"completed_date={d}" / f"part-{RUN}.parquet")
             for t in ("task_completed", "throughput_daily") for w, d in PARTITIONS]
    return sorted([*paths, str(root / "rejects" / f"run_id={RUN}" / "part-00000.parquet")])


def _sorted_staged(report: StageReport) -> str:
    """A report as comparable text: files sorted, partitions of each input once and sorted."""
    counts = {k: v for k, v in report.to_json()["counts"].items() if v}
    files = report.files
    partitions = {path: sorted(map(list, set(found))) for path, found in files.file_partitions.items()}
    return json.dumps({**counts, "staged_files": sorted(files.staged), "retired_files": sorted(files.retired),
                       "file_partitions": partitions}, sort_keys=True)


def test_write_tables_and_rejects(config: WorkstreamConfig, tmp_path: Path) -> None:
    accepted_a, rejects_a = _validated(config, FILE_A, 0, "in/a.jsonl")
    accepted_b, rejects_b = _validated(config, FILE_B, 1, "in/b.jsonl")
    assert (accepted_a.num_rows, accepted_b.num_rows, rejects_a.num_rows, rejects_b.num_rows) == (4, 3, 1, 2)
    root = tmp_path / "staging"
    expected_counts = {
        "written": 7,
        "tables": {"task_completed": {"rows": 7, "files": 4, "rows_removed": 0},
                   "throughput_daily": {"rows": 5, "files": 4, "rows_removed": 0},
                   "rejects": {"rows": 3, "files": 1, "rows_removed": 0}},
        "staged_files": _expected_paths(root),
        "retired_files": [],
        "file_partitions": {  # where each input file's rows went: the ledger keeps it for --reprocess
            "in/a.jsonl": [["ws-audio", "2020-12-22"], ["ws-ner", "2020-12-22"], ["ws-ner", "2020-12-23"]],
            "in/b.jsonl": [["ws-audio", "2020-12-21"], ["ws-ner", "2020-12-22"]],
        },
    }

    with BeamTestPipeline(runner="FnApiRunner") as pipeline:
        written = pipeline | "Accepted" >> beam.Create([accepted_b, accepted_a]) | WriteTables(OutputLayout(str(root)), RUN)
        rejected = pipeline | "Rejects" >> beam.Create([rejects_b, rejects_a]) | WriteRejects(OutputLayout(str(root)), RUN)
        total = (written, rejected) | beam.Flatten() | beam.CombineGlobally(SumCounts()) | beam.Map(_sorted_staged)
        assert_that(total, equal_to([json.dumps(expected_counts, sort_keys=True)]))

    # exactly the table files staged (beside the rows spilled for the partition writers)
    assert sorted(str(p) for p in root.rglob("*") if p.is_file() and "_fragments" not in p.parts) \
        == _expected_paths(root)

    # partition columns live in the path only
    for path in root.glob("task_completed/*/*/*.parquet"):
        assert pq.read_schema(path).names == TASK_COMPLETED.file_schema.names
        assert "workstream_id" not in pq.read_schema(path).names and "completed_date" not in pq.read_schema(path).names
    for path in root.glob("throughput_daily/*/*/*.parquet"):
        assert pq.read_schema(path).names == THROUGHPUT_DAILY.file_schema.names
    [rejects_file] = root.glob("rejects/*/*.parquet")
    assert pq.read_schema(rejects_file).names == REJECTS.file_schema.names

    # only the columns whose values repeat are dictionary-encoded: an id unique per row is not
    for table, paths in ((TASK_COMPLETED, root.glob("task_completed/*/*/*.parquet")),
                         (THROUGHPUT_DAILY, root.glob("throughput_daily/*/*/*.parquet")), (REJECTS, [rejects_file])):
        for path in paths:
            row_group = pq.ParquetFile(path).metadata.row_group(0)
            encoded = {row_group.column(i).path_in_schema.split(".")[0] for i in range(row_group.num_columns)
                       if any("DICTIONARY" in e for e in row_group.column(i).encodings)}
            assert encoded == set(table.repeating), (table.name, path)

    # inside a partition: sorted by task_completed_at, then input order
    ner_day = pq.read_table(root / "task_completed" / "workstream_id=ws-ner" / "completed_date=2020-12-22")
    assert list(zip(ner_day.column("source_file").to_pylist(), ner_day.column("source_line").to_pylist())) == [
        ("in/a.jsonl", 2), ("in/b.jsonl", 2), ("in/a.jsonl", 1), ("in/b.jsonl", 1)]

    # read back as an analyst would: every accepted row, values intact, partition values from the path
    table = ds.dataset(root / "task_completed", format="parquet", partitioning="hive").to_table()
    got = {(r["source_file"], r["source_line"]): r for r in table.to_pylist()}
    assert len(got) == table.num_rows == 7
    for batch in (accepted_a, accepted_b):
        for row in batch.to_pylist():
            out = got[(row["source_file"], row["source_line"])]
            assert out["run_id"] == RUN
            assert str(out["workstream_id"]) == row["workstream_id"]
            assert str(out["completed_date"]) == row["task_completed_at"].astimezone(UTC).date().isoformat()
            for name in TASK_COMPLETED.file_schema.names:
                if name == "run_id":
                    continue
                expected = row[name]
                actual = out[name]
                if name in ("task_metadata", "task_measurements") and expected is not None:
                    expected, actual = dict(expected), dict(actual)
                assert actual == expected, name
    assert got[("in/a.jsonl", 4)]["completed_date"] in ("2020-12-23", date(2020, 12, 23))
    assert got[("in/a.jsonl", 2)]["duration"] == 3600.0 and got[("in/a.jsonl", 2)]["duration_derived"] is True
    assert dict(got[("in/a.jsonl", 1)]["task_metadata"]) == {"k": "1"}

    # throughput_daily is exactly task_completed aggregated (DuckDB, reading the Hive tables)
    def q(sql: str) -> list[tuple]:
        return sorted(duckdb.sql(sql).fetchall(), key=repr)

    tc = f"read_parquet('{root}/task_completed/**/*.parquet', hive_partitioning = true)"
    td = f"read_parquet('{root}/throughput_daily/**/*.parquet', hive_partitioning = true)"
    from_rows = q(f"""
        SELECT workstream_id, completed_date::VARCHAR, use_case_id, task_definition_id, worker_id,
               count(*), sum(task_count), sum(subtask_count), round(sum(duration), 9),
               epoch_us(min(task_completed_at)), epoch_us(max(task_completed_at))
        FROM {tc} GROUP BY ALL""")
    daily = q(f"""
        SELECT workstream_id, completed_date::VARCHAR, use_case_id, task_definition_id, worker_id,
               records, task_count, subtask_count, round(duration, 9),
               epoch_us(first_completed_at), epoch_us(last_completed_at)
        FROM {td}""")
    assert daily == from_rows
    assert len(daily) == 5

    def us(text: str) -> int:
        return int(datetime.fromisoformat(text).timestamp() * 1_000_000)

    assert ("ws-ner", "2020-12-22", UC, TD, "w1", 3, 8, 7, 3630.25,
            us("2020-12-22T08:00:00+00:00"), us("2020-12-22T10:00:00+00:00")) in daily
    assert ("ws-ner", "2020-12-22", UC, TD, "w4", 1, 1, None, 7.0,
            us("2020-12-22T09:00:00+00:00"), us("2020-12-22T09:00:00+00:00")) in daily

    # the rejects table: one file, input order, run_id from the path
    rejects = ds.dataset(root / "rejects", format="parquet", partitioning="hive").to_table().to_pylist()
    assert [(r["source_file"], r["source_line"], r["error_code"]) for r in rejects] == [
        ("in/a.jsonl", 3, "malformed_json"), ("in/b.jsonl", 4, "invalid_value"), ("in/b.jsonl", 5, "missing_field")]
    assert {str(r["run_id"]) for r in rejects} == {RUN}
    assert rejects[0]["raw"] == "not json"


def test_daily_throughput_alone() -> None:
    t = [datetime(2020, 12, 22, h, tzinfo=UTC) for h in range(24)]
    rows = pa.table({
        "use_case_id": ["uc-b", "uc-a", "uc-a", "uc-a", "uc-a"],
        "task_definition_id": ["td", "td", "td", "td", "td"],
        "worker_id": ["w1", "w2", "w1", "w1", "w2"],
        "task_count": pa.array([1, 2, 3, 4, 5], pa.int64()),
        "subtask_count": pa.array([None, None, 1, None, None], pa.int64()),
        "duration": [1.0, 2.0, 0.5, 0.25, 10.0],
        "task_completed_at": pa.array([t[5], t[9], t[3], t[1], t[7]], pa.timestamp("us", tz="UTC")),
    })
    daily = daily_throughput(rows)
    assert daily.schema.equals(THROUGHPUT_DAILY.file_schema)
    assert daily.to_pylist() == [
        {"use_case_id": "uc-a", "task_definition_id": "td", "worker_id": "w1", "records": 2, "task_count": 7,
         "subtask_count": 1, "duration": 0.75, "first_completed_at": t[1], "last_completed_at": t[3]},
        {"use_case_id": "uc-a", "task_definition_id": "td", "worker_id": "w2", "records": 2, "task_count": 7,
         "subtask_count": None, "duration": 12.0, "first_completed_at": t[7], "last_completed_at": t[9]},
        {"use_case_id": "uc-b", "task_definition_id": "td", "worker_id": "w1", "records": 1, "task_count": 1,
         "subtask_count": None, "duration": 1.0, "first_completed_at": t[5], "last_completed_at": t[5]},
    ]


def test_rows_land_in_their_own_partition_whatever_the_order(config: WorkstreamConfig, tmp_path: Path) -> None:
    """Many partitions, rows in shuffled order, spilled in files of a few rows: none strays."""
    import random

    rng = random.Random(3)
    rows = [record(workstream_id=ws, use_case_id=uc, task_definition_id=td, worker_id=f"w{i}",
                   task_started_at=f"2020-12-{day:02d}T00:00:00Z", task_completed_at=f"2020-12-{day:02d}T12:00:00Z")
            for i, (ws, uc, td, day) in enumerate(
                (rng.choice([("ws-ner", UC, TD), ("ws-audio", "uc-audio", "td-transcribe")]) + (rng.randrange(1, 28),))
                for _ in range(120))]
    batches = [_validated(config, rows[i:i + 20], i // 20, f"in/{i:03d}.jsonl")[0] for i in range(0, 120, 20)]
    root = tmp_path / "staging"
    with BeamTestPipeline(runner="FnApiRunner") as pipeline:
        _ = pipeline | beam.Create(batches) | WriteTables(OutputLayout(str(root)), RUN, spill_rows=7)
    found = duckdb.sql(f"select workstream_id, completed_date, worker_id, task_completed_at from "
                       f"read_parquet('{root}/task_completed/**/*.parquet', hive_partitioning=true)").fetchall()
    assert len(found) == 120
    expected = {r["worker_id"]: (r["workstream_id"], date(2020, 12, int(r["task_completed_at"][8:10]))) for r in rows}
    assert {worker: (ws, day) for ws, day, worker, _ in found} == expected


def test_daily_sums_never_wrap(config: WorkstreamConfig) -> None:
    from transforms.write import merge_daily

    batch = _validated(config, [record(task_count=10**12), record(task_count=10**12)], 0, "in/a.jsonl")[0]
    daily = daily_throughput(pa.Table.from_batches([batch]).append_column(
        "duration_derived", pa.array([False] * batch.num_rows)))
    huge = daily.set_column(daily.schema.get_field_index("task_count"), "task_count", pa.array([2**63 - 1], pa.int64()))
    with pytest.raises(OverflowError, match="task_count would exceed"):
        merge_daily([huge, huge])
